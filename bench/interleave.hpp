// Interleaved step timing for the executables of one configuration (f, g): each runner is one
// library at one thread setting; after a warm-up they take turns in rounds of about 50 ms
// (rotating which goes first, so drifts in the machine's load hit all alike), and a runner's
// time is the median of its single-step timings.
#pragma once

#include "configs.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
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
        openblas_set_num_threads(blas);
        set_intra(intra);
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

}  // namespace bench
