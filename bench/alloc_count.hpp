// Heap allocations made by this process (every thread) since it started, counted by the
// benchmark's replacement of malloc and friends (alloc_count.cpp), which forward to glibc.
#pragma once

#include <cstdint>

namespace bench {
std::uint64_t allocations();
}
