// Loops over independent items on the OpenMP threads that OpenBLAS's GEMMs run on: one pool for
// the matrix products and the engine's own kernels, never two that oversubscribe the cores.
//
// parallel_for(n, cost, f) calls f(begin, end) on disjoint ranges covering [0, n). Each item is
// computed by one thread in the same order as a serial loop, so the results do not depend on the
// number of threads. Small loops stay on the calling thread, without entering a parallel region:
// waking the pool costs microseconds. Built without OpenMP (AD_OPENMP=OFF), every loop is serial.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ad::kernels {

// Below this much work (items x cost, about a nanosecond a unit) a loop stays serial.
inline constexpr std::size_t parallel_min_work = std::size_t(1) << 15;

template <class F>
void parallel_for(std::size_t n, std::size_t cost, F&& f)
{
#ifdef _OPENMP
    if (n > 1 && n * cost >= parallel_min_work && !omp_in_parallel()) {
        const int threads = int(std::min<std::size_t>(std::size_t(omp_get_max_threads()), n));
        if (threads > 1) {
            // The threads share one copy of f (its call operator must be const).
            const std::decay_t<F> shared = f;
#pragma omp parallel num_threads(threads)
            {
                const std::size_t t = std::size_t(omp_get_thread_num()), k = std::size_t(omp_get_num_threads());
                const std::size_t begin = n * t / k, end = n * (t + 1) / k;
                if (begin < end) shared(begin, end);
            }
            return;
        }
    }
#else
    (void)cost;
#endif
    if (n > 0) f(std::size_t(0), n);
}

}  // namespace ad::kernels
