// Peak resident memory of this engine's training step for one configuration, in a process that
// does not link libtorch: build the model, take a few steps, print VmHWM.
//
//   ad_bench_peak_rss_ours d
#include "configs.hpp"

#include <cstdio>
#include <exception>

extern "C" void openblas_set_num_threads(int);

int main(int argc, char** argv)
{
    try {
        if (argc != 2) {
            std::fprintf(stderr, "usage: %s CONFIG (a..e)\n", argv[0]);
            return 2;
        }
        openblas_set_num_threads(1);
        const double base = bench::peak_rss_mb();
        const bench::Config& c = bench::config(argv[1][0]);
        auto t = bench::make_ours(c, bench::make_init(c));
        for (int s = 0; s < 5; ++s) t->step();
        std::printf("peak_rss_mb %.1f baseline_rss_mb %.1f\n", bench::peak_rss_mb(), base);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench_peak_rss_ours: %s\n", e.what());
        return 1;
    }
}
