// The benchmark. Everything is interleaved in one process and compared with a peer measured in
// the same rounds; absolute times on a shared machine drift, the ratios are what to read.
//
// 1. One training step (zero grads, forward, loss, backward, SGD update) of five models in this
//    engine, in libtorch, written by hand without a tape (handwritten.cpp), and as its matrix
//    products alone through BLAS (gemm_only.cpp): float32 for a..e, float64 for c and e.
//    This engine, the hand-written step and GEMM alone run with OpenBLAS on 1 and on 2 threads;
//    libtorch at three settings, (intra-op threads x OpenBLAS threads) = 1x1, 1x2 and 2x2. All of
//    them are runners of the same rounds: each runner sets its own thread counts before its turn.
//    This engine's best thread count is compared with libtorch's best setting, and with the
//    hand-written step and GEMM alone at the same thread count.
// 2. The cost of one op (chain.hpp): a chain of 100,000 one-element ops recorded and swept, in
//    this engine, ADOL-C and libtorch, in ns per op of the thread's CPU time (all three run on
//    the calling thread; on a shared machine the wall clock would add the waits for a core).
// 3. Memory per recorded op and a cold against a warm recording: a long chain in a process of
//    its own per library (ad_bench_op_memory), the median of three processes each.
// Also: peak resident memory of (d) per library in a process of its own, and this engine's heap
// allocations per step in steady state (alloc_count.cpp).
//
//   ad_bench [--json FILE] [--configs abcde] [--float64 ce] [--threads 1,2]
//            [--libtorch-settings 1x1,1x2,2x2] [--seconds S] [--anomaly ce]
//            [--chain-ops N] [--memory-ops N] [--skip chain,memory]
//
// Each runner's time is the median of many step timings taken after a warm-up (a step under 20 us
// is timed as the mean of a batch of consecutive steps lasting about 20 us), in rounds
// that alternate the runners (and rotate which goes first), so that a drift in the machine's
// speed reaches all of them alike. Before timing, every configuration checks that this engine
// and libtorch compute the same loss from the same weights, before and after one SGD step, and
// the op chain checks all three libraries' derivatives against forward-mode accumulation.
//
// Threads: OpenBLAS is one libopenblas.so.0 shared by this engine and libtorch, set with
// openblas_set_num_threads; libtorch's intra-op pool (OpenMP) with torch::set_num_threads; its
// inter-op pool is set to 1 once at start (it can be set only before any work, and these models
// never use it). When that libopenblas is the OpenMP build (this engine's default, AD_OPENMP),
// OpenBLAS, this engine's loops and libtorch's intra-op pool are one pool of OpenMP threads, and
// libtorch's "1 x t" setting runs its intra-op loops on t threads too.
#include "alloc_count.hpp"
#include "chain.hpp"
#include "configs.hpp"
#include "steady_malloc.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vector>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_config();
extern "C" char* openblas_get_corename();
extern char** environ;

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

// libtorch's intra-op threads and OpenBLAS's, as one setting.
struct Threads {
    int intra = 1, blas = 1;
    std::string name() const { return std::to_string(intra) + "x" + std::to_string(blas); }
};

// libtorch's first: with OpenBLAS's OpenMP build both calls set OpenMP's threads, and the last
// one is what OpenBLAS, this engine's loops and libtorch's intra-op pool all use.
void set_threads(Threads t)
{
    set_libtorch_threads(t.intra);
    openblas_set_num_threads(t.blas);
}

// CPU time of the calling thread in microseconds: for single-threaded work on a loaded machine,
// it leaves out the time the thread waited for a core.
double thread_cpu_us()
{
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return double(t.tv_sec) * 1e6 + double(t.tv_nsec) * 1e-3;
}

// What the CPU-time bracket around a step costs by itself (reading the thread's CPU clock is a
// system call here, about a microsecond): the median over empty brackets, subtracted from
// every CPU-time sample.
double cpu_clock_overhead_us()
{
    static const double overhead = [] {
        std::vector<double> v;
        for (int i = 0; i < 2001; ++i) {
            const double c0 = thread_cpu_us();
            const auto t0 = Clock::now();
            const auto t1 = Clock::now();
            const double c1 = thread_cpu_us();
            v.push_back(c1 - c0 + 0 * std::chrono::duration<double>(t1 - t0).count());
        }
        return median(v);
    }();
    return overhead;
}

// Each step is timed with the wall clock and with the calling thread's CPU clock. With one
// thread (OpenBLAS and libtorch's intra-op pool both at 1) all the work runs on the calling
// thread, so its CPU time is the step's cost without the waits for a core on a loaded machine.
struct Runner {
    std::string name;
    Trainer* trainer;
    Threads threads;
    std::vector<double> us, cpu_us;  // one entry per sample: the time of a step
    std::size_t per_round = 1;       // samples per round
    std::size_t batch = 1;           // steps per sample, each sample their mean

    void run(std::size_t samples)
    {
        set_threads(threads);
        for (std::size_t i = 0; i < samples; ++i) {
            const double c0 = thread_cpu_us();
            const auto t0 = Clock::now();
            for (std::size_t j = 0; j < batch; ++j) trainer->step();
            const auto t1 = Clock::now();
            const double c1 = thread_cpu_us();
            us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / double(batch));
            cpu_us.push_back((c1 - c0 - cpu_clock_overhead_us()) / double(batch));
        }
    }
};

// Warm-up, then rounds of about 20 ms per runner until `budget` seconds have passed and every
// runner has at least `min_steps` timed steps.
void measure(std::vector<Runner>& runners, double budget, std::size_t min_steps = 20)
{
    for (auto& r : runners) {
        const auto t0 = Clock::now();
        std::size_t n = 0;
        while (n < 3 || (n < 50 && seconds_since(t0) < 0.25)) {
            r.run(1);
            ++n;
        }
        const double est = median(r.us);
        // A step under 20 us is timed in batches of consecutive steps lasting about 20 us: the
        // system call that reads the CPU clock between samples costs a microsecond and leaves
        // the next step to start cold (config a timed alone: this engine 1.6 us against 1.2 in
        // batches, the hand-written step 0.5 against 0.3; libtorch's 45 us either way).
        r.batch = est < 20 ? std::size_t(std::ceil(20 / std::max(est, 0.01))) : 1;
        r.per_round = std::clamp<std::size_t>(std::size_t(20000.0 / (std::max(est, 0.01) * double(r.batch))), 1, 2000);
        r.us.clear();
        r.cpu_us.clear();
    }
    const auto t0 = Clock::now();
    for (std::size_t round = 0;; ++round) {
        bool enough = seconds_since(t0) >= budget;
        for (const auto& r : runners) enough = enough && r.us.size() >= min_steps;
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
    double ours0 = 0, torch0 = 0, ours1 = 0, torch1 = 0;
    bool ok = false;
};

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// The loss at the initial weights and after one SGD step, in both libraries from the same
// numbers. Sums run in different orders: agreement to a relative 1e-4 in float32, 1e-9 in
// float64.
Agreement check_agreement(const Config& c, const Init& init, Precision p)
{
    auto ours = make_ours(c, init, p);
    auto torch = make_libtorch(c, init, p);
    const double tol = p == Precision::f64 ? 1e-9 : 1e-4;
    Agreement a;
    ours->step();
    torch->step();
    a.ours0 = ours->loss();
    a.torch0 = torch->loss();
    ours->step();
    torch->step();
    a.ours1 = ours->loss();
    a.torch1 = torch->loss();
    a.ok = rel_diff(a.ours0, a.torch0) < tol && rel_diff(a.ours1, a.torch1) < tol && a.ours1 != a.ours0;
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

// Runs a program (an argument vector, no shell) and returns what it printed on stdout.
std::string run_program(const std::vector<std::string>& argv)
{
    int fd[2];
    if (pipe(fd) != 0) return "";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fd[1], 1);
    posix_spawn_file_actions_addclose(&actions, fd[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fd[1]);
    std::string out;
    if (rc == 0) {
        char buf[4096];
        for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) > 0;) out.append(buf, std::size_t(n));
        int status = 0;
        waitpid(pid, &status, 0);
    }
    close(fd[0]);
    return out;
}

// "key value key value ..." (one line of a helper's output) into a map.
std::map<std::string, double> parse_pairs(const std::string& text)
{
    std::map<std::string, double> out;
    std::istringstream in(text);
    for (std::string key, value; in >> key >> value;) {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        if (end && *end == '\0') out[key] = v;
    }
    return out;
}

std::string cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

std::string fmt(const char* f, double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

// One configuration in one precision: every runner's median step time.
struct Row {
    char config;
    Precision precision;
    std::map<int, double> ours, hand, gemm;  // by OpenBLAS threads
    std::map<std::string, double> torch;      // by setting "intra x blas"
    double anomaly_us = 0;                    // ours with anomaly mode on, 1 thread; 0 if not run
    // At one thread (1x1): the thread's CPU time per step of ours, hand-written, GEMM alone, libtorch.
    double cpu_ours = 0, cpu_hand = 0, cpu_gemm = 0, cpu_torch = 0;
    AllocCount alloc;
    Agreement agree;

    int ours_best_threads() const
    {
        return std::min_element(ours.begin(), ours.end(),
                                [](auto& a, auto& b) { return a.second < b.second; })->first;
    }
    std::string torch_best_setting() const
    {
        return std::min_element(torch.begin(), torch.end(),
                                [](auto& a, auto& b) { return a.second < b.second; })->first;
    }
    double ours_best() const { return ours.at(ours_best_threads()); }
    double torch_best() const { return torch.at(torch_best_setting()); }
    // GEMM alone at libtorch's best setting's OpenBLAS thread count.
    double gemm_for_torch_best() const
    {
        const std::string s = torch_best_setting();
        const int blas = std::atoi(s.substr(s.find('x') + 1).c_str());
        return gemm.count(blas) ? gemm.at(blas) : 0;
    }
};

Row measure_config(const Config& c, Precision p, const std::vector<int>& blas_threads,
                   const std::vector<Threads>& torch_settings, bool with_anomaly, double budget)
{
    const Init init = make_init(c);
    Row row{c.name, p, {}, {}, {}, {}, 0, 0, 0, 0, 0, {}, {}};
    set_threads({1, 1});
    row.agree = check_agreement(c, init, p);
    const auto& a = row.agree;
    std::printf("(%c) %s, %s\n    same step in both: loss %.10g (ours) %.10g (libtorch); after one SGD "
                "step %.10g %.10g: %s\n", c.name, c.title.c_str(), precision_name(p), a.ours0, a.torch0,
                a.ours1, a.torch1, a.ok ? "agree" : "DISAGREE");

    auto ours = make_ours(c, init, p);
    auto torch = make_libtorch(c, init, p);
    auto hand = make_handwritten(c, init, p);
    auto gemm = make_gemm_only(c, p);
    auto anomaly = with_anomaly ? make_ours_anomaly(c, init, p) : nullptr;
    const std::size_t n1 = c.name == 'd' ? 5 : 100;
    row.alloc = count_allocations(*ours, n1, 4 * n1);
    std::printf("    heap allocations per step (ours, steady state): %.2f over %zu steps, %.2f over %zu "
                "steps\n", row.alloc.per_step_n1, row.alloc.n1, row.alloc.per_step_n2, row.alloc.n2);

    std::vector<Runner> runners;
    for (int t : blas_threads) {
        runners.push_back({"ours", ours.get(), {1, t}});
        runners.push_back({"hand", hand.get(), {1, t}});
        runners.push_back({"gemm", gemm.get(), {1, t}});
    }
    for (const Threads& s : torch_settings) runners.push_back({"libtorch", torch.get(), s});
    if (anomaly) runners.push_back({"anomaly", anomaly.get(), {1, 1}});
    measure(runners, budget);
    for (const auto& r : runners) {
        const double us = median(r.us);
        if (r.threads.intra == 1 && r.threads.blas == 1) {
            const double cpu = median(r.cpu_us);
            if (r.name == "ours") row.cpu_ours = cpu;
            else if (r.name == "hand") row.cpu_hand = cpu;
            else if (r.name == "gemm") row.cpu_gemm = cpu;
            else if (r.name == "libtorch") row.cpu_torch = cpu;
        }
        if (r.name == "ours") row.ours[r.threads.blas] = us;
        else if (r.name == "hand") row.hand[r.threads.blas] = us;
        else if (r.name == "gemm") row.gemm[r.threads.blas] = us;
        else if (r.name == "libtorch") row.torch[r.threads.name()] = us;
        else row.anomaly_us = us;
    }
    for (int t : blas_threads)
        std::printf("    %d BLAS thread%s: ours %10.1f us  hand-written %10.1f us  GEMM alone %10.1f us\n",
                    t, t == 1 ? " " : "s", row.ours[t], row.hand[t], row.gemm[t]);
    std::printf("    libtorch (intra-op x BLAS threads):");
    for (const auto& [s, us] : row.torch) std::printf("  %s %.1f us", s.c_str(), us);
    if (row.cpu_ours > 0 && row.cpu_hand > 0 && row.cpu_gemm > 0 && row.cpu_torch > 0)
        std::printf("\n    1 thread, thread CPU time: ours %.1f us  hand-written %.1f  GEMM alone %.1f  libtorch %.1f: "
                    "ours / hand-written %.2f, ours / GEMM %.2f, ours / libtorch %.3f", row.cpu_ours, row.cpu_hand,
                    row.cpu_gemm, row.cpu_torch, row.cpu_ours / row.cpu_hand, row.cpu_ours / row.cpu_gemm,
                    row.cpu_ours / row.cpu_torch);
    std::printf("\n    steps timed per runner: ");
    for (const auto& r : runners) std::printf("%zu ", r.us.size());
    std::printf("\n");
    if (anomaly)
        std::printf("    ours with anomaly mode on, 1 thread: %.1f us, %.2f x off\n", row.anomaly_us,
                    row.anomaly_us / row.ours[1]);
    std::fflush(stdout);
    return row;
}

// The op chain: ns per op of a record and a sweep in each library, interleaved; then the record
// and the sweep timed apart for this engine and ADOL-C.
struct ChainRow {
    std::size_t ops = 0;
    double ours_ns = 0, adolc_ns = 0, torch_ns = 0;
    double ours_record_ns = 0, ours_sweep_ns = 0, adolc_record_ns = 0, adolc_sweep_ns = 0;
    double ours_allocs = 0;  // heap allocations of one recording and sweep, steady state
    bool agree = false;
};

ChainRow measure_chain(std::size_t n, double budget)
{
    ChainRow out;
    out.ops = n;
    set_threads({1, 1});
    auto ours = make_chain_ours(n);
    auto adolc = make_chain_adolc(n);
    auto torch = make_chain_libtorch(n);
    const ChainResult ref = chain_reference(n);
    // Derivatives agree with forward-mode accumulation to a relative 1e-10 (dy/dx underflows in
    // all of them; it is compared absolutely).
    auto agrees = [&](const ChainResult& r) {
        return rel_diff(r.y, ref.y) < 1e-10 && rel_diff(r.da, ref.da) < 1e-10 &&
               rel_diff(r.db, ref.db) < 1e-10 && std::abs(r.dx - ref.dx) < 1e-200;
    };
    out.agree = true;
    std::printf("\nop chain: %zu one-element float64 ops (tanh, mul, add, sin, exp), recorded and swept\n", n);
    std::printf("    reference (forward accumulation): y %.12g  dy/da %.12g  dy/db %.12g  dy/dx %.3g\n", ref.y,
                ref.da, ref.db, ref.dx);
    for (auto [name, chain] : {std::pair<const char*, Chain*>{"ours", ours.get()}, {"ADOL-C", adolc.get()},
                               {"libtorch", torch.get()}}) {
        chain->step();
        const auto& r = chain->last;
        const bool ok = agrees(r);
        out.agree = out.agree && ok;
        std::printf("    %-8s          y %.12g  dy/da %.12g  dy/db %.12g  dy/dx %.3g: %s\n", name, r.y, r.da,
                    r.db, r.dx, ok ? "agree" : "DISAGREE");
    }
    std::printf("    ADOL-C tape: %s\n", adolc->tape_stats().c_str());
    // All three run on the calling thread (libtorch's autograd runs CPU work on the thread that
    // calls it), so the thread's CPU time is the measure: it leaves out waits for a core.
    std::vector<Runner> runners = {{"ours", ours.get(), {1, 1}}, {"adolc", adolc.get(), {1, 1}},
                                   {"libtorch", torch.get(), {1, 1}}};
    measure(runners, budget, 10);
    const double per_op = 1000.0 / double(n);  // us per step -> ns per op
    out.ours_ns = median(runners[0].cpu_us) * per_op;
    out.adolc_ns = median(runners[1].cpu_us) * per_op;
    out.torch_ns = median(runners[2].cpu_us) * per_op;

    // The two halves apart, alternating the two libraries, without libtorch's steps between them
    // (in the interleaved rounds, libtorch's large graphs are freed between the others' steps, so
    // memory that ADOL-C's trace_on allocates may have to be faulted in again).
    std::vector<double> rec[2], swp[2];
    Chain* both[2] = {ours.get(), adolc.get()};
    for (int rep = 0; rep < 21; ++rep)
        for (int k = 0; k < 2; ++k) {
            const double t0 = thread_cpu_us();
            both[k]->record();
            const double t1 = thread_cpu_us();
            both[k]->sweep();
            const double t2 = thread_cpu_us();
            rec[k].push_back(t1 - t0);
            swp[k].push_back(t2 - t1);
        }
    const auto a0 = allocations();
    ours->step();
    out.ours_allocs = double(allocations() - a0);
    out.ours_record_ns = median(rec[0]) * per_op;
    out.ours_sweep_ns = median(swp[0]) * per_op;
    out.adolc_record_ns = median(rec[1]) * per_op;
    out.adolc_sweep_ns = median(swp[1]) * per_op;
    std::printf("    ns per op (record and sweep): ours %.1f, ADOL-C %.1f, libtorch %.1f; ours / ADOL-C %.2f, "
                "ours / libtorch %.4f\n", out.ours_ns, out.adolc_ns, out.torch_ns, out.ours_ns / out.adolc_ns,
                out.ours_ns / out.torch_ns);
    std::printf("    record alone: ours %.1f, ADOL-C %.1f ns per op; sweep alone: ours %.1f, ADOL-C %.1f\n",
                out.ours_record_ns, out.adolc_record_ns, out.ours_sweep_ns, out.adolc_sweep_ns);
    std::printf("    heap allocations of one recording and sweep (ours, steady state): %.0f\n", out.ours_allocs);
    std::fflush(stdout);
    return out;
}

// Memory per recorded op and cold against warm recording, one process per library.
struct MemoryRow {
    std::size_t ops = 0;
    std::map<std::string, double> ours, adolc;  // ad_bench_op_memory's key/value output
    std::string adolc_stats;
};

// Each figure is the median of three processes per library, the three run back to back. A first
// recording's time is mostly the first touch of fresh pages, and on these virtual machines memory
// that was freed seconds before is handed back to the host (virtio_balloon's free page
// reporting), whose first touch then costs several times as much again: a first recording took
// 0.33-0.36 s after the machine sat idle for 30-60 s, and 0.09-0.13 s right after another run
// (the reused tape's 0.066). The first of the three usually pays for the host; the median does
// not.
MemoryRow measure_memory(std::size_t n)
{
    MemoryRow out;
    out.ops = n;
    const std::string exe = executable_dir() + "/ad_bench_op_memory";
    std::printf("\nmemory per recorded op: a %zu-op chain on a fresh tape, one process per library, the median "
                "of 3\n", n);
    std::fflush(stdout);
    constexpr int runs = 3;
    std::map<std::string, std::vector<std::map<std::string, double>>> all;
    for (const char* lib : {"ours", "adolc"})
        for (int run = 0; run < runs; ++run) {
            const std::string text = run_program({exe, lib, std::to_string(n)});
            const auto first_line = text.substr(0, text.find('\n'));
            auto pairs = parse_pairs(first_line);
            if (!pairs.empty()) all[lib].push_back(std::move(pairs));
            if (std::string(lib) == "adolc" && text.find('\n') != std::string::npos)
                out.adolc_stats = text.substr(text.find('\n') + 1);
        }
    for (const char* lib : {"ours", "adolc"}) {
        const auto& maps = all[lib];
        if (maps.size() != runs) continue;  // a failed run: reported below as a failed measurement
        auto& m = std::string(lib) == "ours" ? out.ours : out.adolc;
        for (const auto& [key, unused] : maps[0]) {
            std::vector<double> v;
            for (const auto& r : maps) v.push_back(r.at(key));
            std::sort(v.begin(), v.end());
            m[key] = v[runs / 2];
        }
        std::printf("    %s: cold recording in the three runs:", lib);
        for (const auto& r : maps) std::printf(" %.3f s", r.at("cold_record_s"));
        std::printf("\n");
    }
    while (!out.adolc_stats.empty() && out.adolc_stats.back() == '\n') out.adolc_stats.pop_back();
    for (auto [name, m] : {std::pair<const char*, std::map<std::string, double>*>{"ours", &out.ours},
                           {"ADOL-C", &out.adolc}}) {
        if (m->empty()) {
            std::printf("    %s: the measurement failed\n", name);
            continue;
        }
        auto& v = *m;
        std::printf("    %-6s: %.1f bytes per op after recording (%.1f after the sweep); recording %.3f s cold, "
                    "%.3f s warm (cold / warm %.2f); sweep %.3f s\n", name, v["record_bytes_per_op"],
                    v["sweep_bytes_per_op"], v["cold_record_s"], v["warm_record_s"],
                    v["cold_record_s"] / v["warm_record_s"], v["sweep_s"]);
    }
    if (!out.adolc_stats.empty()) std::printf("    ADOL-C tape: %s\n", out.adolc_stats.c_str());
    if (!out.ours.empty() && !out.adolc.empty())
        std::printf("    ours / ADOL-C bytes per op: %.1f\n",
                    out.ours["record_bytes_per_op"] / out.adolc["record_bytes_per_op"]);
    std::fflush(stdout);
    return out;
}

std::vector<int> parse_ints(const std::string& s)
{
    std::vector<int> out;
    std::stringstream in(s);
    for (std::string t; std::getline(in, t, ',');) out.push_back(std::atoi(t.c_str()));
    return out;
}

std::vector<Threads> parse_settings(const std::string& s)
{
    std::vector<Threads> out;
    std::stringstream in(s);
    for (std::string t; std::getline(in, t, ',');) {
        const auto x = t.find('x');
        if (x == std::string::npos) throw std::invalid_argument("--libtorch-settings: expected INTRAxBLAS, got " + t);
        out.push_back({std::atoi(t.substr(0, x).c_str()), std::atoi(t.substr(x + 1).c_str())});
    }
    return out;
}

int usage(const char* argv0)
{
    std::fprintf(stderr, "usage: %s [--json FILE] [--configs abcde] [--float64 ce] [--threads 1,2] "
                         "[--libtorch-settings 1x1,1x2,2x2] [--seconds S] [--anomaly ce] [--chain-ops N] "
                         "[--memory-ops N] [--skip chain,memory]\n", argv0);
    return 2;
}

int run(int argc, char** argv)
{
    std::string json = "results.json", which = "abcde", which64 = "ce", anomaly = "ce", skip;
    std::vector<int> blas_threads = {1, 2};
    std::vector<Threads> torch_settings = {{1, 1}, {1, 2}, {2, 2}};
    double budget = 3.0;
    std::size_t chain_ops = 100000, memory_ops = 1000000;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--openblas-core") {
            std::printf("%s\n", openblas_get_corename());
            return 0;
        }
        if (!has_value) return usage(argv[0]);
        const std::string v = argv[++i];
        if (a == "--json") json = v;
        else if (a == "--configs") which = v;
        else if (a == "--float64") which64 = v;
        else if (a == "--seconds") budget = std::atof(v.c_str());
        else if (a == "--anomaly") anomaly = v;
        else if (a == "--threads") blas_threads = parse_ints(v);
        else if (a == "--libtorch-settings") torch_settings = parse_settings(v);
        else if (a == "--chain-ops") chain_ops = std::size_t(std::atoll(v.c_str()));
        else if (a == "--memory-ops") memory_ops = std::size_t(std::atoll(v.c_str()));
        else if (a == "--skip") skip = v;
        else if (a == "--peak-rss-libtorch") {
            // One library in a process of its own: build the model, take a few steps, report.
            set_libtorch_interop_threads(1);
            set_threads({1, 1});
            const double base = peak_rss_mb();
            const Config& c = config(v[0]);
            auto t = make_libtorch(c, make_init(c));
            for (int s = 0; s < 5; ++s) t->step();
            std::printf("peak_rss_mb %.1f baseline_rss_mb %.1f\n", peak_rss_mb(), base);
            return 0;
        } else return usage(argv[0]);
    }
    if (which64 == "none") which64.clear();

    set_libtorch_interop_threads(1);
    std::printf("machine: %s, %ld cores; OpenBLAS: %s (core %s); libtorch %s\n", cpu_model().c_str(),
                sysconf(_SC_NPROCESSORS_ONLN), openblas_get_config(), openblas_get_corename(),
                libtorch_version().c_str());
    std::printf("median of step times after warm-up (steps under 20 us timed in batches); about %.1f s per configuration; OpenBLAS threads",
                budget);
    for (int t : blas_threads) std::printf(" %d", t);
    std::printf(" for ours, hand-written and GEMM alone; libtorch (intra-op x BLAS threads)");
    for (const auto& s : torch_settings) std::printf(" %s", s.name().c_str());
    std::printf("\n\n");

    std::vector<Row> rows;
    for (Precision p : {Precision::f32, Precision::f64})
        for (char name : (p == Precision::f32 ? which : which64))
            rows.push_back(measure_config(config(name), p, blas_threads, torch_settings,
                                          p == Precision::f32 && anomaly.find(name) != std::string::npos,
                                          budget));

    std::pair<double, double> rss_ours{-1, -1}, rss_torch{-1, -1};
    if (which.find('d') != std::string::npos) {
        auto a = parse_pairs(run_program({executable_dir() + "/ad_bench_peak_rss_ours", "d"}));
        auto b = parse_pairs(run_program({executable_dir() + "/ad_bench", "--peak-rss-libtorch", "d"}));
        rss_ours = {a["peak_rss_mb"], a["baseline_rss_mb"]};
        rss_torch = {b["peak_rss_mb"], b["baseline_rss_mb"]};
        std::printf("\n(d) peak resident memory, one process per library, 1 thread: ours %.1f MiB "
                    "(%.1f before the model), libtorch %.1f MiB (%.1f before the model)\n",
                    rss_ours.first, rss_ours.second, rss_torch.first, rss_torch.second);
    }

    ChainRow chain;
    const bool do_chain = skip.find("chain") == std::string::npos && chain_ops > 0;
    if (do_chain) chain = measure_chain(chain_ops, budget);
    MemoryRow memory;
    const bool do_memory = skip.find("memory") == std::string::npos && memory_ops > 0;
    if (do_memory) memory = measure_memory(memory_ops);

    // The table.
    std::printf("\n| config | dtype | ours best (us) | libtorch 1x1 / 1x2 / 2x2 (us) | hand-written (us) "
                "| GEMM alone (us) | ours / libtorch best | ours / hand-written | ours / GEMM | libtorch best / GEMM |\n"
                "|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& r : rows) {
        const int t = r.ours_best_threads();
        std::string torch;
        for (const auto& s : torch_settings) {
            const std::string k = s.name();
            if (!torch.empty()) torch += " / ";
            torch += fmt("%.1f", r.torch.at(k)) + (k == r.torch_best_setting() ? "*" : "");
        }
        std::printf("| %c | %s | %.1f (%d BLAS thread%s) | %s | %.1f | %.1f | %.3f | %.2f | %.2f | %.2f |\n", r.config,
                    r.precision == Precision::f64 ? "f64" : "f32", r.ours_best(), t, t == 1 ? "" : "s",
                    torch.c_str(), r.hand.at(t), r.gemm.at(t), r.ours_best() / r.torch_best(),
                    r.ours_best() / r.hand.at(t), r.ours_best() / r.gemm.at(t),
                    r.torch_best() / r.gemm_for_torch_best());
    }
    std::printf("(* libtorch's best setting; hand-written and GEMM alone at ours' best thread count; libtorch "
                "best / GEMM at that setting's BLAS threads)\n");
    std::printf("\nOne thread (OpenBLAS 1, libtorch 1x1), CPU time of the calling thread per step (leaves out the waits "
                "for a core; steps under 50 us left out, the thread clock costs about a microsecond to read):\n\n| config | dtype | ours (us) | hand-written (us) | GEMM alone (us) | libtorch (us) "
                "| ours / hand-written | ours / GEMM | ours / libtorch |\n|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& r : rows)
        if (r.cpu_ours > 50)
            std::printf("| %c | %s | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.3f |\n", r.config,
                        r.precision == Precision::f64 ? "f64" : "f32", r.cpu_ours, r.cpu_hand, r.cpu_gemm, r.cpu_torch,
                        r.cpu_ours / r.cpu_hand, r.cpu_ours / r.cpu_gemm, r.cpu_ours / r.cpu_torch);
    if (do_chain) {
        const double ours_apart = chain.ours_record_ns + chain.ours_sweep_ns;
        const double adolc_apart = chain.adolc_record_ns + chain.adolc_sweep_ns;
        std::printf("\nop chain (%zu ops, float64, thread CPU time): interleaved ours %.1f ns/op, ADOL-C %.1f, "
                    "libtorch %.1f: ours / ADOL-C %.2f, ours / libtorch %.4f; record + sweep timed apart: ours "
                    "%.1f, ADOL-C %.1f: ours / ADOL-C %.2f\n", chain.ops, chain.ours_ns, chain.adolc_ns,
                    chain.torch_ns, chain.ours_ns / chain.adolc_ns, chain.ours_ns / chain.torch_ns, ours_apart,
                    adolc_apart, ours_apart / adolc_apart);
    }
    if (do_memory && !memory.ours.empty() && !memory.adolc.empty())
        std::printf("memory (%zu-op chain): ours %.1f bytes/op, ADOL-C %.1f (ours / ADOL-C %.1f); cold / warm "
                    "recording: ours %.2f, ADOL-C %.2f\n", memory.ops, memory.ours["record_bytes_per_op"],
                    memory.adolc["record_bytes_per_op"],
                    memory.ours["record_bytes_per_op"] / memory.adolc["record_bytes_per_op"],
                    memory.ours["cold_record_s"] / memory.ours["warm_record_s"],
                    memory.adolc["cold_record_s"] / memory.adolc["warm_record_s"]);

    // JSON.
    std::ofstream out(json);
    out << "{\n  \"machine\": \"" << cpu_model() << "\", \"cores\": " << sysconf(_SC_NPROCESSORS_ONLN)
        << ", \"openblas_core\": \"" << openblas_get_corename() << "\", \"libtorch\": \"" << libtorch_version()
        << "\", \"seconds_per_configuration\": " << budget << ",\n  \"steps\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        const int t = r.ours_best_threads();
        out << "    {\"config\": \"" << r.config << "\", \"dtype\": \"" << precision_name(r.precision) << "\"";
        auto by_threads = [&](const char* key, const std::map<int, double>& m) {
            out << ", \"" << key << "\": {";
            bool first = true;
            for (const auto& [k, v] : m) {
                out << (first ? "" : ", ") << "\"" << k << "\": " << fmt("%.2f", v);
                first = false;
            }
            out << "}";
        };
        by_threads("ours_us_by_blas_threads", r.ours);
        by_threads("handwritten_us_by_blas_threads", r.hand);
        by_threads("gemm_us_by_blas_threads", r.gemm);
        out << ", \"libtorch_us_by_intra_x_blas\": {";
        bool first = true;
        for (const auto& [k, v] : r.torch) {
            out << (first ? "" : ", ") << "\"" << k << "\": " << fmt("%.2f", v);
            first = false;
        }
        out << "}, \"ours_best_us\": " << fmt("%.2f", r.ours_best()) << ", \"ours_best_blas_threads\": " << t
            << ", \"libtorch_best_us\": " << fmt("%.2f", r.torch_best()) << ", \"libtorch_best_setting\": \""
            << r.torch_best_setting() << "\", \"ours_over_libtorch_best\": " << fmt("%.4f", r.ours_best() / r.torch_best())
            << ", \"ours_over_handwritten\": " << fmt("%.4f", r.ours_best() / r.hand.at(t))
            << ", \"ours_over_gemm\": " << fmt("%.4f", r.ours_best() / r.gemm.at(t))
            << ", \"libtorch_best_over_gemm\": " << fmt("%.4f", r.torch_best() / r.gemm_for_torch_best())
            << ", \"allocs_per_step\": " << fmt("%.2f", r.alloc.per_step_n2)
            << ", \"allocs_grow\": " << (r.alloc.per_step_n2 > r.alloc.per_step_n1 ? "true" : "false")
            << ", \"same_loss_as_libtorch\": " << (r.agree.ok ? "true" : "false");
        if (r.cpu_ours > 0)
            out << ", \"thread_cpu_us_1x1\": {\"ours\": " << fmt("%.2f", r.cpu_ours) << ", \"handwritten\": "
                << fmt("%.2f", r.cpu_hand) << ", \"gemm\": " << fmt("%.2f", r.cpu_gemm) << ", \"libtorch\": "
                << fmt("%.2f", r.cpu_torch) << "}";
        if (r.anomaly_us > 0)
            out << ", \"ours_anomaly_us_1_thread\": " << fmt("%.2f", r.anomaly_us)
                << ", \"anomaly_over_off\": " << fmt("%.4f", r.anomaly_us / r.ours.at(1));
        if (r.config == 'd' && r.precision == Precision::f32 && rss_ours.first > 0)
            out << ", \"peak_rss_mb\": {\"ours\": " << fmt("%.1f", rss_ours.first)
                << ", \"libtorch\": " << fmt("%.1f", rss_torch.first) << "}";
        out << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "  ]";
    if (do_chain)
        out << ",\n  \"op_chain\": {\"ops\": " << chain.ops << ", \"dtype\": \"float64\", \"ns_per_op\": {\"ours\": "
            << fmt("%.2f", chain.ours_ns) << ", \"adolc\": " << fmt("%.2f", chain.adolc_ns) << ", \"libtorch\": "
            << fmt("%.2f", chain.torch_ns) << "}, \"record_ns_per_op\": {\"ours\": " << fmt("%.2f", chain.ours_record_ns)
            << ", \"adolc\": " << fmt("%.2f", chain.adolc_record_ns) << "}, \"sweep_ns_per_op\": {\"ours\": "
            << fmt("%.2f", chain.ours_sweep_ns) << ", \"adolc\": " << fmt("%.2f", chain.adolc_sweep_ns)
            << "}, \"ours_over_adolc\": " << fmt("%.4f", chain.ours_ns / chain.adolc_ns)
            << ", \"ours_over_adolc_timed_apart\": "
            << fmt("%.4f", (chain.ours_record_ns + chain.ours_sweep_ns) / (chain.adolc_record_ns + chain.adolc_sweep_ns))
            << ", \"ours_over_libtorch\": " << fmt("%.5f", chain.ours_ns / chain.torch_ns)
            << ", \"ours_allocs_per_step\": " << chain.ours_allocs << ", \"timing\": \"thread CPU time\""
            << ", \"derivatives_agree\": " << (chain.agree ? "true" : "false") << "}";
    if (do_memory) {
        out << ",\n  \"op_memory\": {\"ops\": " << memory.ops;
        for (auto [name, m] : {std::pair<const char*, std::map<std::string, double>*>{"ours", &memory.ours},
                               {"adolc", &memory.adolc}}) {
            out << ", \"" << name << "\": {";
            bool first = true;
            for (const auto& [k, v] : *m) {
                out << (first ? "" : ", ") << "\"" << k << "\": " << fmt("%.4g", v);
                first = false;
            }
            out << "}";
        }
        out << "}";
    }
    out << "\n}\n";
    std::printf("wrote %s\n", json.c_str());

    bool ok = true;
    for (const auto& r : rows) ok = ok && r.agree.ok;
    if (!ok) std::fprintf(stderr, "this engine and libtorch disagree on the loss of some configuration (see above)\n");
    if (do_chain && !chain.agree) {
        std::fprintf(stderr, "the op chain's derivatives disagree with the reference (see above)\n");
        ok = false;
    }
    return ok ? 0 : 1;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv)
{
    bench::steady_malloc();
    try {
        return bench::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench: %s\n", e.what());
        return 1;
    }
}
