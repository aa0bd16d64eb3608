// What an optimiser's update costs on two cores, after the other core's GEMM threads have read
// the weights or written the gradients: w += -lr g over 200,704 floats (config c's first layer),
// timed on thread 0 after thread 1 of the same OpenMP pool
//   - did nothing              (every line in this core's cache),
//   - wrote g                  (g's lines are modified in the other core's cache),
//   - read w                   (w's lines are shared with the other core: each store first
//                               invalidates the other copy).
// This is the part of config c's update phase at two threads that GEMM alone does not pay: its
// weights are never written (ad_bench_profile c 3000 1 against ... 2 gives the phases).
//
//   ad_bench_shared_lines     needs two OpenMP threads (OMP_NUM_THREADS unset or >= 2)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

// Microseconds for the update on the calling thread after `before` ran, median of many tries.
template <class F>
double update_us(std::vector<float>& w, const std::vector<float>& g, F before)
{
    std::vector<double> runs;
    for (int r = 0; r < 2001; ++r) {
        before();
        const auto t0 = std::chrono::steady_clock::now();
        float* wp = w.data();
        const float* gp = g.data();
        for (std::size_t k = 0; k < w.size(); ++k) wp[k] += -1e-6f * gp[k];
        runs.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(runs.begin(), runs.begin() + 1000, runs.end());
    return runs[1000];
}

}  // namespace

int main()
{
    if (omp_get_max_threads() < 2) {
        std::fprintf(stderr, "ad_bench_shared_lines: needs two OpenMP threads\n");
        return 2;
    }
    const std::size_t n = 784 * 256;
    std::vector<float> w(n, 1.0f), g(n, 0.5f);
    float sink = 0;
    // On thread 1 of a two-thread region, as a GEMM split over the pool runs its half.
    auto on_other_core = [](auto f) {
#pragma omp parallel num_threads(2)
        if (omp_get_thread_num() == 1) f();
    };
    const double local = update_us(w, g, [&] {
        on_other_core([] {});
        for (std::size_t k = 0; k < n; ++k) g[k] += 1e-9f;
    });
    const double g_written = update_us(w, g, [&] { on_other_core([&] { for (auto& v : g) v += 1e-9f; }); });
    const double w_read = update_us(w, g, [&] {
        on_other_core([&] {
            float s = 0;
            for (float v : w) s += v;
            sink += s;
        });
    });
    std::printf("w += -lr g over %zu floats on thread 0, median us: this core's lines %.1f; g written by the "
                "other core %.1f (%.1fx); w read by the other core %.1f (%.1fx)%s\n",
                n, local, g_written, g_written / local, w_read, w_read / local, sink == 1 ? " " : "");
    return 0;
}
