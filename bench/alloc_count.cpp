// Counts heap allocations by replacing the C allocation functions in the benchmark executable
// (operator new and xsimd's aligned allocator both end in these). Each forwards to glibc's own
// implementation, so memory behaves exactly as without the count.
#include "alloc_count.hpp"

#include <atomic>
#include <cerrno>
#include <cstddef>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<std::uint64_t> count{0};
inline void counted() { count.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

namespace bench {
std::uint64_t allocations() { return count.load(std::memory_order_relaxed); }
}  // namespace bench

extern "C" {

void* malloc(std::size_t n) noexcept
{
    counted();
    return __libc_malloc(n);
}

void* calloc(std::size_t n, std::size_t size) noexcept
{
    counted();
    return __libc_calloc(n, size);
}

void* realloc(void* p, std::size_t n) noexcept
{
    counted();
    return __libc_realloc(p, n);
}

void free(void* p) noexcept { __libc_free(p); }

void* memalign(std::size_t alignment, std::size_t n) noexcept
{
    counted();
    return __libc_memalign(alignment, n);
}

void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept
{
    counted();
    return __libc_memalign(alignment, n);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept
{
    if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    counted();
    void* p = __libc_memalign(alignment, n);
    if (!p && n != 0) return ENOMEM;
    *out = p;
    return 0;
}

void* valloc(std::size_t n) noexcept
{
    counted();
    return __libc_memalign(4096, n);
}

void* pvalloc(std::size_t n) noexcept
{
    counted();
    return __libc_memalign(4096, (n + 4095) & ~std::size_t(4095));
}

}  // extern "C"
