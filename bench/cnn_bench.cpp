// Bench configuration f (cnn.hpp): one training step of a LeNet-like CNN, batch 64, in this
// engine, in libtorch and as the step's matrix products alone, interleaved in one process,
// float32, at 1 and 2 threads; each the median of many single-step timings after a warm-up.
// Before timing, both libraries must compute the same loss from the same numbers, before and
// after one SGD step. Also counts this engine's heap allocations per step in steady state.
//
//   ad_bench_cnn [--json FILE] [--threads 1,2] [--seconds S]
//   ad_bench_cnn --profile STEPS [THREADS]   this engine's step alone, for profilers
#include "alloc_count.hpp"
#include "cnn.hpp"
#include "interleave.hpp"
#include "steady_malloc.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

extern "C" char* openblas_get_corename();

using namespace bench;

int main(int argc, char** argv)
{
    bench::steady_malloc();
    if (profile_mode(argc, argv, [] { return cnn::make_cnn_ours(cnn::make_cnn_init()); })) return 0;
    const Options o = parse_options(argc, argv, "ad_bench_cnn", 3);
    const std::string& json = o.json;
    const std::vector<int>& threads = o.threads;
    const double seconds = o.seconds;
    cnn::set_torch_interop_threads(1);
    std::printf("configuration f: LeNet-like CNN (conv 5x5 1->16, pool, conv 5x5 16->32, pool, 512-128-10), batch 64, "
                "28x28, float32; OpenBLAS core %s, libtorch %s\n",
                openblas_get_corename(), cnn::torch_version().c_str());

    const cnn::CnnInit init = cnn::make_cnn_init();
    if (!agree(*cnn::make_cnn_ours(init), *cnn::make_cnn_libtorch(init), "SGD")) return 1;

    struct Row {
        int threads;
        double ours, torch, gemm;
        double torch_1xt;  // libtorch with one intra-op thread and OpenBLAS at `threads` (0: not run)
    };
    std::vector<Row> rows;
    auto ours = cnn::make_cnn_ours(init);
    auto torch = cnn::make_cnn_libtorch(init);
    auto gemm = cnn::make_cnn_gemm_only();
    for (int t : threads) {
        std::vector<Runner> runners{
            {"ours", ours.get(), 1, t}, {"libtorch", torch.get(), t, t, cnn::set_torch_threads}, {"gemm", gemm.get(), 1, t}};
        if (t > 1) runners.push_back({"libtorch 1 x t", torch.get(), 1, t, cnn::set_torch_threads});
        measure(runners, seconds);
        rows.push_back({t, median(runners[0].us), median(runners[1].us), median(runners[2].us),
                        t > 1 ? median(runners[3].us) : 0.0});
    }
    double torch_best = 1e300;
    for (const auto& r : rows) {
        torch_best = std::min(torch_best, r.torch);
        if (r.torch_1xt > 0) torch_best = std::min(torch_best, r.torch_1xt);
    }

    // Allocations per step in steady state, at each thread setting: this engine's, and those of
    // the GEMMs alone (OpenBLAS's threaded GEMM driver allocates its job table on the heap).
    std::vector<double> allocs, gemm_allocs;
    auto per_step = [](Trainer& t) {
        for (int i = 0; i < 5; ++i) t.step();
        const auto a0 = allocations();
        for (int i = 0; i < 50; ++i) t.step();
        return double(allocations() - a0) / 50;
    };
    for (int t : threads) {
        openblas_set_num_threads(t);
        allocs.push_back(per_step(*ours));
        gemm_allocs.push_back(per_step(*gemm));
    }

    std::printf("\nlibtorch t x t: t intra-op threads and t OpenBLAS threads; 1 x t: one intra-op thread.\n"
                "| model | threads | this engine (us) | libtorch t x t (us) | libtorch 1 x t (us) | GEMM alone (us) | "
                "ours / libtorch best | ours / GEMM alone |\n|---|---|---|---|---|---|---|---|\n");
    for (const auto& r : rows) {
        char one[32] = "-";
        if (r.torch_1xt > 0) std::snprintf(one, sizeof one, "%.1f", r.torch_1xt);
        std::printf("| f | %d | %.1f | %.1f | %s | %.1f | %.2f | %.2f |\n", r.threads, r.ours, r.torch, one, r.gemm,
                    r.ours / torch_best, r.ours / r.gemm);
    }
    for (std::size_t i = 0; i < threads.size(); ++i)
        std::printf("\nheap allocations per step in steady state (50 steps, %d threads): this engine %.2f, the GEMMs "
                    "alone %.2f",
                    threads[i], allocs[i], gemm_allocs[i]);
    std::printf("\n");

    if (!json.empty()) {
        std::ofstream f(json);
        f << "{\n  \"config\": \"f\",\n  \"openblas_core\": \"" << openblas_get_corename() << "\",\n  \"libtorch\": \""
          << cnn::torch_version() << "\",\n  \"rows\": [\n";
        for (std::size_t i = 0; i < rows.size(); ++i)
            f << "    {\"threads\": " << rows[i].threads << ", \"ours_us\": " << rows[i].ours
              << ", \"libtorch_us\": " << rows[i].torch << ", \"libtorch_1_intra_us\": " << rows[i].torch_1xt << ", \"gemm_us\": " << rows[i].gemm
              << ", \"ours_over_libtorch_best\": " << rows[i].ours / torch_best
              << ", \"ours_over_gemm\": " << rows[i].ours / rows[i].gemm
              << ", \"allocations_per_step\": " << allocs[i] << ", \"gemm_allocations_per_step\": " << gemm_allocs[i]
              << "}" << (i + 1 < rows.size() ? "," : "")
              << "\n";
        f << "  ]\n}\n";
        std::printf("wrote %s\n", json.c_str());
    }
    return 0;
}
