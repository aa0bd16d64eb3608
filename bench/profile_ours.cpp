// This engine's training step alone, for profilers (valgrind --tool=callgrind, perf record):
// builds one configuration, takes a few warm-up steps, then STEPS timed steps on one thread;
// then as many again with a clock read between the phases of the step.
//
//   ad_bench_profile CONFIG STEPS     e.g. ad_bench_profile e 200
#include "configs.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>

extern "C" void openblas_set_num_threads(int);

int main(int argc, char** argv)
{
    try {
        if (argc != 3) {
            std::fprintf(stderr, "usage: %s CONFIG (a..e) STEPS\n", argv[0]);
            return 2;
        }
        openblas_set_num_threads(1);
        const bench::Config& c = bench::config(argv[1][0]);
        const long steps = std::atol(argv[2]);
        auto t = bench::make_ours(c, bench::make_init(c));
        for (int s = 0; s < 5; ++s) t->step();
        const auto t0 = std::chrono::steady_clock::now();
        for (long s = 0; s < steps; ++s) t->step();
        const std::chrono::duration<double, std::micro> dt = std::chrono::steady_clock::now() - t0;
        std::printf("(%c) %.2f us per step over %ld steps, loss %.6g\n", c.name, dt.count() / double(steps),
                    steps, t->loss());
        const auto phase = bench::ours_phase_us(c, bench::make_init(c), steps);
        std::printf("    by phase (us): zero grads %.2f, forward and loss %.2f, backward %.2f, update %.2f\n",
                    phase[0], phase[1], phase[2], phase[3]);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench_profile: %s\n", e.what());
        return 1;
    }
}
