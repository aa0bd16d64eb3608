// Bench configuration g (gpt.hpp): one training step of the character transformer, batch 16,
// in this engine and in libtorch, interleaved in one process, float32, at 1 and 2 threads; each
// the median of many single-step timings after a warm-up. Before timing, both libraries must
// compute the same loss from the same numbers, before and after one AdamW step. Also counts this
// engine's heap allocations per step in steady state (at more than one thread, OpenBLAS's too).
//
//   ad_bench_gpt [--json FILE] [--threads 1,2] [--seconds S]
//   ad_bench_gpt --profile STEPS [THREADS]   this engine's step alone, for profilers
#include "alloc_count.hpp"
#include "gpt.hpp"
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
    if (profile_mode(argc, argv, [] { return gpt::make_gpt_ours(gpt::make_gpt_init()); })) return 0;
    const Options o = parse_options(argc, argv, "ad_bench_gpt", 5);
    const std::string& json = o.json;
    const std::vector<int>& threads = o.threads;
    const double seconds = o.seconds;
    gpt::set_torch_interop_threads(1);
    std::printf("configuration g: character transformer (vocabulary %zu, context %zu, width %zu, %zu heads, %zu "
                "blocks), batch %zu, float32, AdamW with clipping; OpenBLAS core %s, libtorch %s\n",
                gpt::vocab, gpt::context, gpt::width, gpt::heads, gpt::blocks, gpt::batch, openblas_get_corename(),
                gpt::torch_version().c_str());

    const gpt::GptInit init = gpt::make_gpt_init();
    if (!agree(*gpt::make_gpt_ours(init), *gpt::make_gpt_libtorch(init), "AdamW")) return 1;

    struct Row {
        int threads;
        double ours, torch;
        double torch_1xt;  // libtorch with one intra-op thread and OpenBLAS at `threads` (0: not run)
    };
    std::vector<Row> rows;
    auto ours = gpt::make_gpt_ours(init);
    auto torch = gpt::make_gpt_libtorch(init);
    for (int t : threads) {
        std::vector<Runner> runners{{"ours", ours.get(), 1, t}, {"libtorch", torch.get(), t, t, gpt::set_torch_threads}};
        if (t > 1) runners.push_back({"libtorch 1 x t", torch.get(), 1, t, gpt::set_torch_threads});
        measure(runners, seconds, 10);
        rows.push_back({t, median(runners[0].us), median(runners[1].us), t > 1 ? median(runners[2].us) : 0.0});
    }
    double torch_best = 1e300, ours_best = 1e300;
    for (const auto& r : rows) {
        torch_best = std::min(torch_best, r.torch);
        if (r.torch_1xt > 0) torch_best = std::min(torch_best, r.torch_1xt);
        ours_best = std::min(ours_best, r.ours);
    }

    std::vector<double> allocs;
    for (int t : threads) {
        openblas_set_num_threads(t);
        for (int i = 0; i < 3; ++i) ours->step();
        const auto a0 = allocations();
        for (int i = 0; i < 20; ++i) ours->step();
        allocs.push_back(double(allocations() - a0) / 20);
    }

    std::printf("\nlibtorch t x t: t intra-op threads and t OpenBLAS threads; 1 x t: one intra-op thread. At more than\n"
                "one thread the allocations include OpenBLAS's own (its threaded GEMM driver allocates per call).\n"
                "| model | threads | this engine (us) | libtorch t x t (us) | libtorch 1 x t (us) | ours / libtorch best | "
                "heap allocations per step (ours) |\n|---|---|---|---|---|---|---|\n");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        char one[32] = "-";
        if (r.torch_1xt > 0) std::snprintf(one, sizeof one, "%.0f", r.torch_1xt);
        std::printf("| g | %d | %.0f | %.0f | %s | %.2f | %.2f |\n", r.threads, r.ours, r.torch, one,
                    r.ours / torch_best, allocs[i]);
    }
    std::printf("\nours at its best thread count / libtorch's best setting: %.2f\n", ours_best / torch_best);

    if (!json.empty()) {
        std::ofstream f(json);
        f << "{\n  \"config\": \"g\",\n  \"openblas_core\": \"" << openblas_get_corename() << "\",\n  \"libtorch\": \""
          << gpt::torch_version() << "\",\n  \"ours_best_over_libtorch_best\": " << ours_best / torch_best
          << ",\n  \"rows\": [\n";
        for (std::size_t i = 0; i < rows.size(); ++i)
            f << "    {\"threads\": " << rows[i].threads << ", \"ours_us\": " << rows[i].ours
              << ", \"libtorch_us\": " << rows[i].torch << ", \"libtorch_1_intra_us\": " << rows[i].torch_1xt
              << ", \"ours_over_libtorch_best\": " << rows[i].ours / torch_best
              << ", \"allocations_per_step\": " << allocs[i] << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
        f << "  ]\n}\n";
        std::printf("wrote %s\n", json.c_str());
    }
    return 0;
}
