// This engine's training step alone, for profilers (valgrind --tool=callgrind, perf record), and
// beside it the same step written by hand without a tape (handwritten.cpp), the floor a tape
// could reach. One thread unless asked for more.
//
//   ad_bench_profile CONFIG STEPS          e.g. ad_bench_profile e 200
//       this engine's step: time per step, time per phase (zero grads, forward and loss,
//       backward, update), then the hand-written step's time and its loss beside ours
//   ad_bench_profile CONFIG STEPS hand     only the hand-written step (to profile it)
//   ad_bench_profile CONFIG STEPS ours     only this engine's step (to profile it)
//   ... [THREADS]                          a last number: run at that many threads (default 1)
//   ad_bench_profile chain STEPS           this engine's op chain of 100,000 ops (chain.hpp),
//       recorded and swept STEPS times: ns per op of the record and of the sweep
#include "chain.hpp"
#include "configs.hpp"

#include <chrono>
#include <cstdio>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <exception>

extern "C" void openblas_set_num_threads(int);

namespace {

// Microseconds per step over `steps` steps, after five warm-up steps.
double time_steps(bench::Trainer& t, long steps)
{
    for (int s = 0; s < 5; ++s) t.step();
    const auto t0 = std::chrono::steady_clock::now();
    for (long s = 0; s < steps; ++s) t.step();
    const std::chrono::duration<double, std::micro> dt = std::chrono::steady_clock::now() - t0;
    return dt.count() / double(steps);
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        if (argc == 3 && std::strcmp(argv[1], "chain") == 0) {
            const std::size_t n = 100000;
            auto chain = bench::make_chain_ours(n);
            chain->step();
            double record = 0, sweep = 0;
            const long steps = std::atol(argv[2]);
            for (long s = 0; s < steps; ++s) {
                const auto t0 = std::chrono::steady_clock::now();
                chain->record();
                const auto t1 = std::chrono::steady_clock::now();
                chain->sweep();
                const auto t2 = std::chrono::steady_clock::now();
                record += std::chrono::duration<double, std::nano>(t1 - t0).count();
                sweep += std::chrono::duration<double, std::nano>(t2 - t1).count();
            }
            std::printf("op chain: record %.1f ns per op, sweep %.1f ns per op\n", record / double(steps * n),
                        sweep / double(steps * n));
            return 0;
        }
        int threads = 1;  // a trailing number: the thread count
        if (argc >= 4 && std::isdigit(static_cast<unsigned char>(argv[argc - 1][0]))) threads = std::atoi(argv[--argc]);
        const bool only_hand = argc == 4 && std::strcmp(argv[3], "hand") == 0;
        const bool only_ours = argc == 4 && std::strcmp(argv[3], "ours") == 0;
        if ((argc != 3 && !only_hand && !only_ours) || threads < 1) {
            std::fprintf(stderr, "usage: %s CONFIG (a..e) STEPS [hand|ours] [THREADS]\n", argv[0]);
            return 2;
        }
        openblas_set_num_threads(threads);
        const bench::Config& c = bench::config(argv[1][0]);
        const bench::Init init = bench::make_init(c);
        const long steps = std::atol(argv[2]);
        if (only_ours) {
            auto ours = bench::make_ours(c, init);
            std::printf("(%c) ours: %.2f us per step\n", c.name, time_steps(*ours, steps));
            return 0;
        }
        if (only_hand) {
            auto hand = bench::make_handwritten(c, init);
            std::printf("(%c) hand-written: %.2f us per step\n", c.name, time_steps(*hand, steps));
            return 0;
        }
        auto ours = bench::make_ours(c, init);
        std::printf("(%c) %.2f us per step over %ld steps\n", c.name, time_steps(*ours, steps), steps);
        const auto phase = bench::ours_phase_us(c, init, steps);
        std::printf("    by phase (us): zero grads %.2f, forward and loss %.2f, backward %.2f, update %.2f\n",
                    phase[0], phase[1], phase[2], phase[3]);

        auto hand = bench::make_handwritten(c, init);
        auto fresh = bench::make_ours(c, init);
        hand->step();
        fresh->step();
        std::printf("    first loss: ours %.7g, hand-written %.7g;", fresh->loss(), hand->loss());
        hand->step();
        fresh->step();
        std::printf(" after one SGD step: %.7g, %.7g\n", fresh->loss(), hand->loss());
        std::printf("    hand-written step without a tape: %.2f us\n", time_steps(*hand, steps));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench_profile: %s\n", e.what());
        return 1;
    }
}
