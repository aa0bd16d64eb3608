// Loops over independent items on the OpenMP threads that OpenBLAS's GEMMs run on: one pool for
// the matrix products and the engine's own kernels, never two that oversubscribe the cores.
//
// parallel_for(n, cost, f) calls f(begin, end) on disjoint ranges covering [0, n). Each item is
// computed by one thread in the same order as a serial loop, so the results do not depend on the
// number of threads. Small loops stay on the calling thread, without entering a parallel region:
// waking the pool costs microseconds. Whether a loop may be split depends on its size alone, and
// a loop that may be split runs the same compiled code at any thread count (detail::run_range).
// Built without OpenMP (AD_OPENMP=OFF), every loop is serial.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ad::kernels {

// Below this much work (items x cost, about a nanosecond a unit) a loop stays serial.
inline constexpr std::size_t parallel_min_work = std::size_t(1) << 15;

namespace detail {
// f(begin, end), compiled once for both the serial call and the threads of a parallel region.
// Were f inlined into each, the compiler could contract a * b + c into a fused multiply-add
// in one copy and not the other, and the bits would depend on the thread count. f is taken by
// value: a stack copy whose members a store through its pointers cannot change, so its loop
// vectorises.
template <class F>
[[gnu::noinline]] void run_range(F f, std::size_t begin, std::size_t end)
{
    f(begin, end);
}
}  // namespace detail

template <class F>
void parallel_for(std::size_t n, std::size_t cost, F&& f)
{
    if (n == 0) return;
    if (n < 2 || n * cost < parallel_min_work) {  // never split, at any thread count
        f(std::size_t(0), n);
        return;
    }
#ifdef _OPENMP
    const int threads = omp_in_parallel() ? 1 : int(std::min<std::size_t>(std::size_t(omp_get_max_threads()), n));
    if (threads > 1) {
        const std::decay_t<F>& shared = f;
#pragma omp parallel num_threads(threads)
        {
            const std::size_t t = std::size_t(omp_get_thread_num()), k = std::size_t(omp_get_num_threads());
            const std::size_t begin = n * t / k, end = n * (t + 1) / k;
            if (begin < end) detail::run_range(shared, begin, end);
        }
        return;
    }
#else
    (void)cost;
#endif
    detail::run_range<std::decay_t<F>>(f, std::size_t(0), n);
}

// f() and g(), two independent tasks, at once on two threads of the pool when `split` and the
// pool has exactly two threads; otherwise one after the other on the calling thread. A task that
// calls BLAS there runs it on its own thread (OpenBLAS's OpenMP build does not split a call made
// inside a parallel region), so two mid-sized products side by side beat each split over both
// cores in turn (kernels/blas.hpp, concurrent_gemm_min), and two halves of a layer's gradients
// keep each weight row on one core (affine's VJP). On a larger pool each task keeps the
// whole pool: these machines have two cores, and that case is not measured. An exception from
// either task is rethrown here once both have finished.
template <class F, class G>
void parallel_invoke(bool split, F&& f, G&& g)
{
#ifdef _OPENMP
    if (split && !omp_in_parallel() && omp_get_max_threads() == 2) {
        std::exception_ptr failed[2];
#pragma omp parallel num_threads(2)
        {
            const int t = omp_get_thread_num();
            try {
                if (omp_get_num_threads() == 1) {  // the runtime gave one thread: it does both
                    f();
                    g();
                } else if (t == 0) {
                    f();
                } else {
                    g();
                }
            } catch (...) {
                failed[t] = std::current_exception();
            }
        }
        for (const auto& e : failed)
            if (e) std::rethrow_exception(e);
        return;
    }
#else
    (void)split;
#endif
    f();
    g();
}

}  // namespace ad::kernels
