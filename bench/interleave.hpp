// Interleaved step timing for the executables of one configuration (f, g): each runner is one
// library at one thread setting; after a warm-up they take turns in rounds of about 50 ms
// (rotating which goes first, so drifts in the machine's load hit all alike), and a runner's
// time is the median of its single-step timings.
#pragma once

#include "configs.hpp"

#include "autodiff/threads.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace bench {

inline double median(std::vector<double> v)
{
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Runner {
    const char* name;
    Trainer* trainer;
    int intra = 1, blas = 1;  // the peer's intra-op threads, OpenBLAS's threads while it runs
    std::function<void(int)> set_intra = [](int) {};
    std::vector<double> us;
    std::size_t per_round = 1;
    void run(std::size_t steps)
    {
        using Clock = std::chrono::steady_clock;
        set_intra(intra);  // first: with OpenBLAS's OpenMP build, the BLAS setting is the pool's
        openblas_set_num_threads(blas);
        for (std::size_t i = 0; i < steps; ++i) {
            const auto t0 = Clock::now();
            trainer->step();
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        }
    }
};

// Warm-up, then rounds until `budget` seconds have passed and each runner has at least
// `min_steps` timed steps.
inline void measure(std::vector<Runner>& runners, double budget, std::size_t min_steps = 20)
{
    using Clock = std::chrono::steady_clock;
    for (auto& r : runners) {
        r.run(5);
        r.per_round = std::clamp<std::size_t>(std::size_t(50000.0 / std::max(median(r.us), 1.0)), 1, 500);
        r.us.clear();
    }
    const auto t0 = Clock::now();
    for (std::size_t round = 0;; ++round) {
        bool enough = std::chrono::duration<double>(Clock::now() - t0).count() >= budget;
        for (const auto& r : runners) enough = enough && r.us.size() >= min_steps;
        if (enough) break;
        for (std::size_t k = 0; k < runners.size(); ++k) {
            auto& r = runners[(round + k) % runners.size()];
            r.run(r.per_round);
        }
    }
}

// "1,2" -> {1, 2}; an empty list or a count below 1 is refused through `fail`.
template <class Fail>
std::vector<int> parse_threads(const std::string& v, Fail fail)
{
    std::vector<int> threads;
    for (std::size_t p = 0; p < v.size();) {
        const std::size_t q = v.find(',', p);
        threads.push_back(std::atoi(v.substr(p, q - p).c_str()));
        if (q == std::string::npos) break;
        p = q + 1;
    }
    if (threads.empty()) fail("--threads needs a list of counts, e.g. 1,2");
    for (int t : threads)
        if (t < 1) fail("--threads needs positive counts");
    return threads;
}

// The command line of a single-configuration bench: PROGRAM [--json FILE] [--threads 1,2]
// [--seconds S]. Anything else prints the usage and exits with status 2.
struct Options {
    std::string json;
    std::vector<int> threads{1, 2};
    double seconds;
};
inline Options parse_options(int argc, char** argv, const char* program, double seconds)
{
    auto fail = [program](const std::string& what) {
        std::fprintf(stderr, "%s: %s\nusage: %s [--json FILE] [--threads 1,2] [--seconds S]\n", program, what.c_str(),
                     program);
        std::exit(2);
    };
    Options o{{}, {1, 2}, seconds};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a != "--json" && a != "--seconds" && a != "--threads") fail("unknown option " + a);
        if (i + 1 >= argc) fail(a + " needs a value");
        const std::string v = argv[++i];
        if (a == "--json") o.json = v;
        else if (a == "--seconds") o.seconds = std::atof(v.c_str());
        else o.threads = parse_threads(v, fail);
    }
    return o;
}

// Both libraries' losses at the first step and after one update agree to 1e-4 relative (float32
// sums in different orders differ in the 6th digit); prints them either way.
inline bool agree(Trainer& ours, Trainer& torch, const char* update)
{
    ours.step(), torch.step();
    const double o0 = ours.loss(), t0 = torch.loss();
    ours.step(), torch.step();
    const double o1 = ours.loss(), t1 = torch.loss();
    const bool ok = std::abs(o0 - t0) <= 1e-4 * std::abs(t0) && std::abs(o1 - t1) <= 1e-4 * std::abs(t1);
    std::printf("agreement: loss %.6f (ours) / %.6f (libtorch); after one %s step %.6f / %.6f: %s\n", o0, t0, update,
                o1, t1, ok ? "ok" : "DIFFERENT");
    return ok;
}

// PROGRAM --profile STEPS [THREADS]: this engine's step alone at THREADS threads (default 1),
// timed over STEPS steps after five warm-up steps, for perf. Whether argv asked for it.
template <class Make>
bool profile_mode(int argc, char** argv, Make make_ours)
{
    if (argc < 3 || std::string(argv[1]) != "--profile") return false;
    const long steps = std::atol(argv[2]);
    ad::set_num_threads(argc >= 4 ? std::atoi(argv[3]) : 1);
    auto ours = make_ours();
    for (int s = 0; s < 5; ++s) ours->step();
    const auto t0 = std::chrono::steady_clock::now();
    for (long s = 0; s < steps; ++s) ours->step();
    const std::chrono::duration<double, std::micro> dt = std::chrono::steady_clock::now() - t0;
    std::printf("this engine's step: %.1f us (mean of %ld), loss %.6f\n", dt.count() / double(steps), steps,
                ours->loss());
    return true;
}

}  // namespace bench
