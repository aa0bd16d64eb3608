// The benchmark: one training step (zero grads, forward, loss, backward, SGD update) of five
// models in this engine and in libtorch, the same step written by hand without a tape, and the
// step's matrix products alone through BLAS, interleaved in one process, float32, with 1 and 2
// threads. Prints a table and writes JSON.
//
//   ad_bench [--json FILE] [--configs abcde] [--threads 1,2] [--seconds S]
//            [--libraries ours,libtorch,handwritten,gemm] [--anomaly ce]
//
// For the configurations named by --anomaly (c and e unless told), this engine's step is also
// timed with anomaly mode on (ad::DetectAnomaly), in the same rounds: off is the plain "ours".
//
// Each library's time is the median of many single-step timings taken after a warm-up, in
// rounds that alternate them (and rotate which goes first), so that a drift in the
// machine's speed reaches all of them alike. Before timing, every configuration checks that
// both libraries compute the same loss from the same weights, before and after one SGD step.
//
// Threads: OpenBLAS (shared by both libraries: one libopenblas.so.0 in the process) and
// libtorch's intra-op pool are set to the same count; libtorch's inter-op pool is set to 1 once
// at start (it can be set only before any work, and these models never use it).
//
// Also measured: peak resident memory for (d), each library in a process of its own (this
// executable with --peak-rss-libtorch d, and ad_bench_peak_rss_ours d which does not link
// libtorch), and this engine's heap allocations per step in steady state (alloc_count.cpp).
#include "alloc_count.hpp"
#include "configs.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_config();
extern "C" char* openblas_get_corename();

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v)
{
    if (v.empty()) return 0;
    const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    if (v.size() % 2) return *mid;
    return 0.5 * (*mid + *std::max_element(v.begin(), mid));
}

void set_threads(int n)
{
    openblas_set_num_threads(n);
    set_libtorch_threads(n);
}

struct Runner {
    const char* name;
    Trainer* trainer;
    std::vector<double> us;  // one entry per timed step
    std::size_t per_round = 1;

    void run(std::size_t steps)
    {
        for (std::size_t i = 0; i < steps; ++i) {
            const auto t0 = Clock::now();
            trainer->step();
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        }
    }
};

// Warm-up, then rounds of about 20 ms per library until `budget` seconds have passed and every
// library has at least 20 timed steps.
void measure(std::vector<Runner>& runners, double budget)
{
    for (auto& r : runners) {
        const auto t0 = Clock::now();
        std::size_t n = 0;
        while (n < 3 || (n < 50 && seconds_since(t0) < 0.25)) {
            r.run(1);
            ++n;
        }
        const double est = median(r.us);
        r.per_round = std::clamp<std::size_t>(std::size_t(20000.0 / std::max(est, 0.01)), 1, 2000);
        r.us.clear();
    }
    const auto t0 = Clock::now();
    for (std::size_t round = 0;; ++round) {
        bool enough = seconds_since(t0) >= budget;
        for (const auto& r : runners) enough = enough && r.us.size() >= 20;
        if (enough) break;
        for (std::size_t k = 0; k < runners.size(); ++k) {
            auto& r = runners[(round + k) % runners.size()];
            r.run(r.per_round);
        }
    }
}

// Heap allocations per step of this engine in steady state, over n1 and then n2 steps; the two
// rates must agree if nothing grows with the number of steps.
struct AllocCount {
    double per_step_n1 = 0, per_step_n2 = 0;
    std::size_t n1 = 0, n2 = 0;
};

AllocCount count_allocations(Trainer& t, std::size_t n1, std::size_t n2)
{
    for (int i = 0; i < 5; ++i) t.step();
    AllocCount out;
    out.n1 = n1;
    out.n2 = n2;
    const auto a0 = allocations();
    for (std::size_t i = 0; i < n1; ++i) t.step();
    const auto a1 = allocations();
    for (std::size_t i = 0; i < n2; ++i) t.step();
    const auto a2 = allocations();
    out.per_step_n1 = double(a1 - a0) / double(n1);
    out.per_step_n2 = double(a2 - a1) / double(n2);
    return out;
}

struct Agreement {
    double ours0, torch0, ours1, torch1;
    bool ok;
};

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// The loss at the initial weights and after one SGD step, in both libraries from the same
// numbers. float32 sums in different orders: agreement to a relative 1e-4.
Agreement check_agreement(const Config& c, const Init& init)
{
    auto ours = make_ours(c, init);
    auto torch = make_libtorch(c, init);
    Agreement a{};
    ours->step();
    torch->step();
    a.ours0 = ours->loss();
    a.torch0 = torch->loss();
    ours->step();
    torch->step();
    a.ours1 = ours->loss();
    a.torch1 = torch->loss();
    a.ok = rel_diff(a.ours0, a.torch0) < 1e-4 && rel_diff(a.ours1, a.torch1) < 1e-4 &&
           a.ours1 != a.ours0;
    return a;
}

std::string executable_dir()
{
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return ".";
    std::string path(buf, std::size_t(n));
    return path.substr(0, path.rfind('/'));
}

// Runs a command that prints "peak_rss_mb X baseline_rss_mb Y" and returns {X, Y}.
std::pair<double, double> peak_rss_of(const std::string& command)
{
    FILE* p = popen(command.c_str(), "r");
    if (!p) return {-1, -1};
    char line[256] = {};
    double peak = -1, base = -1;
    while (std::fgets(line, sizeof line, p))
        std::sscanf(line, "peak_rss_mb %lf baseline_rss_mb %lf", &peak, &base);
    pclose(p);
    return {peak, base};
}

std::string cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

struct Row {
    char config;
    int threads;
    double ours_us, libtorch_us, handwritten_us, gemm_us;
    double anomaly_us;  // ours with anomaly mode on; 0 if not measured
};

int run(int argc, char** argv)
{
    std::string json = "results.json", which = "abcde";
    std::vector<int> threads = {1, 2};
    std::string libraries = "ours,libtorch,handwritten,gemm";
    std::string anomaly = "ce";
    double budget = 3.0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--json" && has_value) json = argv[++i];
        else if (a == "--configs" && has_value) which = argv[++i];
        else if (a == "--seconds" && has_value) budget = std::atof(argv[++i]);
        else if (a == "--libraries" && has_value) libraries = argv[++i];
        else if (a == "--anomaly" && has_value) anomaly = argv[++i];
        else if (a == "--openblas-core") {
            std::printf("%s\n", openblas_get_corename());
            return 0;
        }
        else if (a == "--threads" && has_value) {
            threads.clear();
            std::stringstream s(argv[++i]);
            for (std::string t; std::getline(s, t, ',');) threads.push_back(std::atoi(t.c_str()));
        } else if (a == "--peak-rss-libtorch" && has_value) {
            // One library in a process of its own: build the model, take a few steps, report.
            set_libtorch_interop_threads(1);
            set_threads(1);
            const double base = peak_rss_mb();
            const Config& c = config(argv[++i][0]);
            auto t = make_libtorch(c, make_init(c));
            for (int s = 0; s < 5; ++s) t->step();
            std::printf("peak_rss_mb %.1f baseline_rss_mb %.1f\n", peak_rss_mb(), base);
            return 0;
        } else {
            std::fprintf(stderr, "usage: %s [--json FILE] [--configs abcde] [--threads 1,2] [--seconds S] "
                                 "[--libraries ours,libtorch,handwritten,gemm] [--anomaly ce]\n",
                         argv[0]);
            return 2;
        }
    }

    set_libtorch_interop_threads(1);
    std::printf("machine: %s, %ld cores; OpenBLAS: %s; libtorch %s\n", cpu_model().c_str(),
                sysconf(_SC_NPROCESSORS_ONLN), openblas_get_config(), libtorch_version().c_str());
    std::printf("float32; median of single-step times after warm-up; about %.1f s per configuration "
                "and thread count\n\n", budget);

    std::vector<Row> rows;
    std::map<char, AllocCount> allocs;
    std::map<char, Agreement> agreement;
    bool all_agree = true;
    for (char name : which) {
        const Config& c = config(name);
        const Init init = make_init(c);
        set_threads(1);
        const Agreement a = check_agreement(c, init);
        agreement[name] = a;
        all_agree = all_agree && a.ok;
        std::printf("(%c) %s\n    same step in both: loss %.7g (ours) %.7g (libtorch); after one SGD "
                    "step %.7g %.7g: %s\n", name, c.title.c_str(), a.ours0, a.torch0, a.ours1, a.torch1,
                    a.ok ? "agree" : "DISAGREE");

        auto ours = make_ours(c, init);
        auto torch = make_libtorch(c, init);
        auto hand = make_handwritten(c, init);
        auto gemm = make_gemm_only(c);
        const bool with_anomaly = anomaly.find(name) != std::string::npos;
        auto ours_anomaly = with_anomaly ? make_ours_anomaly(c, init) : nullptr;
        const std::size_t n1 = name == 'd' ? 5 : 100;
        allocs[name] = count_allocations(*ours, n1, 4 * n1);
        std::printf("    heap allocations per step (ours, steady state): %.2f over %zu steps, %.2f over "
                    "%zu steps\n", allocs[name].per_step_n1, allocs[name].n1, allocs[name].per_step_n2,
                    allocs[name].n2);
        for (int t : threads) {
            set_threads(t);
            std::vector<Runner> all = {{"ours", ours.get(), {}}, {"libtorch", torch.get(), {}},
                                       {"handwritten", hand.get(), {}}, {"gemm", gemm.get(), {}}},
                                runners;
            for (auto& r : all)
                if (libraries.find(r.name) != std::string::npos) runners.push_back(r);
            if (with_anomaly) runners.push_back({"ours_anomaly", ours_anomaly.get(), {}});
            measure(runners, budget);
            std::map<std::string, Runner*> by_name;
            for (auto& r : runners) by_name[r.name] = &r;
            auto us = [&](const char* n) { return by_name.count(n) ? median(by_name[n]->us) : 0.0; };
            auto steps = [&](const char* n) { return by_name.count(n) ? by_name[n]->us.size() : std::size_t(0); };
            Row row{name, t, us("ours"), us("libtorch"), us("handwritten"), us("gemm"), us("ours_anomaly")};
            rows.push_back(row);
            std::printf("    %d thread%s: ours %10.1f us  libtorch %10.1f us  hand-written %10.1f us  gemm "
                        "alone %10.1f us   (%zu / %zu / %zu / %zu steps)\n", t, t == 1 ? " " : "s",
                        row.ours_us, row.libtorch_us, row.handwritten_us, row.gemm_us, steps("ours"),
                        steps("libtorch"), steps("handwritten"), steps("gemm"));
            if (with_anomaly)
                std::printf("               ours with anomaly mode on %10.1f us (%zu steps): %.2f x off\n",
                            row.anomaly_us, steps("ours_anomaly"), row.anomaly_us / row.ours_us);
            std::fflush(stdout);
        }
    }

    std::pair<double, double> rss_ours{-1, -1}, rss_torch{-1, -1};
    if (which.find('d') != std::string::npos) {
        rss_ours = peak_rss_of("'" + executable_dir() + "/ad_bench_peak_rss_ours' d");
        rss_torch = peak_rss_of("'" + executable_dir() + "/ad_bench' --peak-rss-libtorch d");
        std::printf("\n(d) peak resident memory, one process per library, 1 thread: ours %.1f MiB "
                    "(%.1f before the model), libtorch %.1f MiB (%.1f before the model)\n",
                    rss_ours.first, rss_ours.second, rss_torch.first, rss_torch.second);
    }

    std::map<char, double> torch_best;
    std::map<char, int> torch_best_threads;
    for (const auto& r : rows)
        if (!torch_best.count(r.config) || r.libtorch_us < torch_best[r.config]) {
            torch_best[r.config] = r.libtorch_us;
            torch_best_threads[r.config] = r.threads;
        }

    std::printf("\n| config | threads | ours (us) | libtorch (us) | hand-written (us) | GEMM alone (us) "
                "| ours / libtorch best | ours / hand-written | ours / GEMM |\n"
                "|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& r : rows)
        std::printf("| %c | %d | %.1f | %.1f | %.1f | %.1f | %.3f | %.2f | %.2f |\n", r.config, r.threads,
                    r.ours_us, r.libtorch_us, r.handwritten_us, r.gemm_us, r.ours_us / torch_best[r.config],
                    r.ours_us / r.handwritten_us, r.ours_us / r.gemm_us);
    std::printf("\nlibtorch best:");
    for (const auto& [c, us] : torch_best)
        std::printf(" (%c) %.1f us at %d thread%s;", c, us, torch_best_threads[c],
                    torch_best_threads[c] == 1 ? "" : "s");
    std::printf("\n");

    std::ofstream out(json);
    out << "[\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        const auto& a = allocs[r.config];
        char buf[1024];
        std::snprintf(buf, sizeof buf,
                      "  {\"config\": \"%c\", \"threads\": %d, \"ours_us\": %.2f, \"libtorch_us\": %.2f, "
                      "\"gemm_us\": %.2f, \"handwritten_us\": %.2f, \"libtorch_best_us\": %.2f, "
                      "\"libtorch_best_threads\": %d, "
                      "\"ours_over_libtorch_best\": %.4f, \"ours_over_gemm\": %.4f, \"allocs_per_step\": %.2f, "
                      "\"allocs_grow\": %s, \"same_loss_as_libtorch\": %s",
                      r.config, r.threads, r.ours_us, r.libtorch_us, r.gemm_us, r.handwritten_us,
                      torch_best[r.config],
                      torch_best_threads[r.config], r.ours_us / torch_best[r.config], r.ours_us / r.gemm_us,
                      a.per_step_n2, a.per_step_n2 > a.per_step_n1 ? "true" : "false",
                      agreement[r.config].ok ? "true" : "false");
        out << buf;
        if (r.anomaly_us > 0) {
            std::snprintf(buf, sizeof buf, ", \"ours_anomaly_us\": %.2f, \"anomaly_over_off\": %.4f", r.anomaly_us,
                          r.anomaly_us / r.ours_us);
            out << buf;
        }
        if (r.config == 'd' && rss_ours.first > 0) {
            std::snprintf(buf, sizeof buf, ", \"peak_rss_mb\": {\"ours\": %.1f, \"libtorch\": %.1f}",
                          rss_ours.first, rss_torch.first);
            out << buf;
        }
        out << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "]\n";
    std::printf("wrote %s\n", json.c_str());
    if (!all_agree) {
        std::fprintf(stderr, "the two libraries disagree on the loss of some configuration (see above)\n");
        return 1;
    }
    return 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv)
{
    try {
        return bench::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench: %s\n", e.what());
        return 1;
    }
}
