// Memory per recorded op and the cost of a first recording, for one library in a process of
// its own: record an n-op chain (chain.hpp) on a fresh tape (cold), sweep it, then record it
// again on the same tape (warm: cleared, or retaped under the same tag) and sweep again.
// Prints one line of "key value" pairs (peak resident memory above the process's own before the
// first recording, per op, after the recording and after the sweep; the three times), and for
// ADOL-C a second line with its tape statistics.
//
//   ad_bench_op_memory ours|adolc N
#include "chain.hpp"

#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace {

// Seconds of the thread's CPU time (user and system: page faults count) that f takes; on a
// shared machine the wall clock would add the waits for a core.
template <class F>
double timed(F f)
{
    auto now = [] {
        timespec t{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
    };
    const double t0 = now();
    f();
    return now() - t0;
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        const std::string lib = argc == 3 ? argv[1] : "";
        if (lib != "ours" && lib != "adolc") {
            std::fprintf(stderr, "usage: %s ours|adolc N\n", argv[0]);
            return 2;
        }
        const std::size_t n = std::size_t(std::atoll(argv[2]));
        auto chain = lib == "ours" ? bench::make_chain_ours(n) : bench::make_chain_adolc(n);
        const double base = bench::peak_rss_mb();
        const double cold = timed([&] { chain->record(); });
        const double after_record = bench::peak_rss_mb();
        const double sweep = timed([&] { chain->sweep(); });
        const double after_sweep = bench::peak_rss_mb();
        const double warm = timed([&] { chain->record(); });
        chain->sweep();
        const bench::ChainResult ref = bench::chain_reference(n);
        const auto& r = chain->last;
        const bool agree = std::abs(r.da - ref.da) <= 1e-10 * std::abs(ref.da) &&
                           std::abs(r.db - ref.db) <= 1e-10 * std::abs(ref.db);
        const double mib = 1024.0 * 1024.0;
        std::printf("record_bytes_per_op %.2f sweep_bytes_per_op %.2f cold_record_s %.4f warm_record_s %.4f "
                    "sweep_s %.4f peak_rss_mb %.1f baseline_rss_mb %.1f derivatives_agree %d\n",
                    (after_record - base) * mib / double(n), (after_sweep - base) * mib / double(n), cold, warm,
                    sweep, after_sweep, base, agree ? 1 : 0);
        const std::string stats = chain->tape_stats();
        if (!stats.empty()) std::printf("%s\n", stats.c_str());
        return agree ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench_op_memory: %s\n", e.what());
        return 1;
    }
}
