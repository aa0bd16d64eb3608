// What the examples share: checks printed as they run and counted, number formatting, the
// common command line (--small, --out DIR, --no-plot), numeric options parsed with their ranges,
// their output files, and running gnuplot and dot. A directory or file that cannot be made ends
// the program with a message naming the path, rather than a plot step that silently finds no
// data.
//
// External programs run without a shell: run_program() forks and execs an argument vector, in
// the output directory, so no file or directory name is ever interpreted by a shell. The gnuplot
// scripts name their data and images relative to that directory (fixed names, no user text), so
// a directory called `Bob's runs` or `$(rm -rf ~)` is only ever a path.
#pragma once

#include "autodiff/tape.hpp"
#include "nn/loss.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace examples {

inline int failures = 0;

// Prints "[ok] what" or "[FAILED] what"; main returns non-zero if any check failed.
inline void check(bool ok, const std::string& what)
{
    std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what.c_str());
    if (!ok) ++failures;
}

// One number through a printf format, e.g. num("%.2e", x).
inline std::string num(const char* format, double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

inline void make_output_dir(const std::string& dir, const char* program)
{
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir)) {
        std::fprintf(stderr, "%s: cannot create the output directory %s: %s\n", program, dir.c_str(),
                     ec ? ec.message().c_str() : "a file of that name is in the way");
        std::exit(1);
    }
}

inline std::ofstream open_output(const std::string& path, const char* program)
{
    std::ofstream f(path);
    if (!f) {
        std::fprintf(stderr, "%s: cannot write %s: %s\n", program, path.c_str(), std::strerror(errno));
        std::exit(1);
    }
    return f;
}

// Makes `dir` (and its parents) and checks that a file can be created in it, by creating and
// removing one: an unusable --out is reported before any work, not after it.
inline void make_writable_output_dir(const std::string& dir, const char* program)
{
    make_output_dir(dir, program);
    std::string probe = (std::filesystem::path(dir) / ".write-test-XXXXXX").string();
    const int fd = ::mkstemp(probe.data());
    if (fd < 0) {
        std::fprintf(stderr, "%s: cannot write in the output directory %s: %s\n", program, dir.c_str(),
                     std::strerror(errno));
        std::exit(1);
    }
    ::close(fd);
    ::unlink(probe.c_str());
}

// Runs argv[0] (looked up in PATH) with the arguments argv[1..] in directory `dir`, without a
// shell, and waits for it. `quiet` sends its output to /dev/null. Returns its exit status, or -1
// if it could not be started or did not exit normally (127 from the child: not found).
inline int run_program(const std::vector<std::string>& argv, const std::string& dir, bool quiet = false)
{
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::fflush(nullptr);  // the child must not print this process's buffered output again
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        // Only async-signal-safe calls between fork and exec: the parent may have other threads.
        if (!dir.empty() && ::chdir(dir.c_str()) != 0) ::_exit(126);
        if (quiet) {
            const int null = ::open("/dev/null", O_WRONLY);
            if (null >= 0) {
                ::dup2(null, 1);
                ::dup2(null, 2);
            }
        }
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// gnuplot SCRIPT run in `dir` (the script's relative names resolve there). True on success.
inline bool run_gnuplot(const std::string& dir, const std::string& script)
{
    return run_program({"gnuplot", script}, dir) == 0;
}

// "42 s" or "3 min 05 s": a time left, for progress lines.
inline std::string duration(double s)
{
    char buf[32];
    if (s < 60) std::snprintf(buf, sizeof buf, "%.0f s", s);
    else std::snprintf(buf, sizeof buf, "%d min %02d s", int(s) / 60, int(s) % 60);
    return buf;
}

// How many rows of a [rows, classes] tensor of logits have their largest entry (the first, at a
// tie) at the row's label.
template <class Logits, class Labels>
std::size_t correct_predictions(const Logits& logits, const Labels& labels)
{
    std::size_t correct = 0;
    const std::size_t classes = logits.shape()[1];
    for (std::size_t i = 0; i < logits.shape()[0]; ++i) {
        std::size_t best = 0;
        for (std::size_t k = 1; k < classes; ++k)
            if (logits(i, k) > logits(i, best)) best = k;
        correct += static_cast<std::int64_t>(best) == labels[i];
    }
    return correct;
}

struct EvalResult {
    double loss = 0, accuracy = 0;  // mean cross-entropy, fraction classified right
};

// A classifier's mean cross-entropy and accuracy over `data`, in evaluation mode and without
// recording gradients, `chunk` examples at a time; input(s, e, x) puts examples [s, e) into x in
// the model's input layout.
template <class Model, class Data, class Input>
EvalResult evaluate(Model& model, const Data& data, std::size_t chunk, Input input)
{
    model.eval();
    ad::NoGrad no_grad;
    ad::Tape<float> tape;
    ad::Tensor<float> x;
    EvalResult r;
    std::size_t correct = 0;
    for (std::size_t s = 0; s < data.size(); s += chunk) {
        const std::size_t e = std::min(s + chunk, data.size());
        tape.clear();
        input(s, e, x);
        const auto logits = model(tape.constant(x));
        const std::vector<std::int64_t> y(data.labels.begin() + static_cast<std::ptrdiff_t>(s),
                                          data.labels.begin() + static_cast<std::ptrdiff_t>(e));
        r.loss += ad::nn::cross_entropy_loss(logits, y, ad::nn::Reduction::sum).item();
        correct += correct_predictions(logits.value(), y);
    }
    model.train();
    r.loss /= double(data.size());
    r.accuracy = double(correct) / double(data.size());
    return r;
}

// The training curves of a run that wrote NAME_loss.csv (epoch, loss, running mean) and
// NAME_epochs.csv (epoch, train loss, test loss, test accuracy, seconds) in `dir`: loss and test
// accuracy side by side in NAME_curves.png, drawn by gnuplot in `dir` from NAME_curves.gp. The
// script names only those fixed relative files, so the directory's name never enters it.
inline bool plot_training_curves(const std::string& dir, const std::string& name, const std::string& title)
{
    std::ofstream f(dir + "/" + name + "_curves.gp");
    f << "# Plots the curves " << name << " wrote. Run from their directory: gnuplot " << name << "_curves.gp\n"
      << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1100,420 font 'sans,10' } "
         "else { set terminal png size 1100,420 }\n"
      << "set output '" << name << "_curves.png'\n"
      << "set datafile separator ','\n"
      << "set key top right\n"
      << "set grid\n"
      << "set multiplot layout 1,2 title '" << title << "'\n"
      << "set xlabel 'epoch'\nset ylabel 'cross-entropy'\nset title 'loss'\n"
      << "set yrange [0:1]  # the first steps, near log(10) = 2.3, are cut off\n"
      << "plot '" << name << "_loss.csv' skip 1 using 1:2 with lines lw 1 lc rgb '#9ecae1' title 'training (per step)', \\\n"
      << "     '' skip 1 using 1:3 with lines lw 2 lc rgb '#08519c' title 'training (running mean)', \\\n"
      << "     '" << name << "_epochs.csv' skip 1 using 1:3 with linespoints lw 2 pt 7 lc rgb '#e6550d' title 'test'\n"
      << "set ylabel 'accuracy (%)'\nset title 'test accuracy'\nset key bottom right\nset yrange [*:*]\n"
      << "plot '" << name << "_epochs.csv' skip 1 using 1:($4*100) with linespoints lw 2 pt 7 lc rgb '#31a354' "
         "title 'test accuracy'\n"
      << "unset multiplot\n";
    f.close();
    return f && run_gnuplot(dir, name + "_curves.gp");
}

// Whether `program` can be run (e.g. "dot" with "-V").
inline bool have_program(const std::vector<std::string>& probe)
{
    return run_program(probe, "", true) == 0;
}

// A whole number option: decimal digits only (no sign, exponent or fraction), within [lo, hi];
// anything else prints the option, the value and the allowed range, and exits with status 2.
inline std::uint64_t parse_whole(const char* program, const std::string& option, const std::string& text,
                                 std::uint64_t lo, std::uint64_t hi)
{
    bool ok = !text.empty() && text.size() <= 20;
    std::uint64_t v = 0;
    for (char c : text) {
        if (!ok) break;
        if (c < '0' || c > '9') ok = false;
        else if (v > (UINT64_MAX - std::uint64_t(c - '0')) / 10) ok = false;  // past 2^64 - 1
        else v = v * 10 + std::uint64_t(c - '0');
    }
    if (!ok || v < lo || v > hi) {
        std::fprintf(stderr, "%s: %s %s: expected a whole number in [%" PRIu64 ", %" PRIu64 "]\n",
                     program, option.c_str(), text.c_str(), lo, hi);
        std::exit(2);
    }
    return v;
}

// A real number option within [lo, hi] (finite); otherwise a message and exit status 2.
inline double parse_real(const char* program, const std::string& option, const std::string& text, double lo,
                         double hi)
{
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v) || v < lo || v > hi) {
        std::fprintf(stderr, "%s: %s %s: expected a number in [%g, %g]\n", program, option.c_str(),
                     text.c_str(), lo, hi);
        std::exit(2);
    }
    return v;
}

struct LabOptions {
    bool small = false;  // the size CI runs
    bool plot = true;
    std::string out = ".";
};

// Parses --small, --out DIR and --no-plot, and makes the output directory. Anything else prints
// the usage (`small` says what --small changes, `outputs` what --out receives) and exits: with 0
// for --help or -h, 2 otherwise.
inline LabOptions parse_lab_options(int argc, char** argv, const char* program, const char* small,
                                    const char* outputs)
{
    LabOptions o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--small") o.small = true;
        else if (a == "--no-plot") o.plot = false;
        else if (a == "--out" && i + 1 < argc) o.out = argv[++i];
        else {
            std::printf("usage: %s [--small] [--out DIR] [--no-plot]\n"
                        "  --small    %s (CI)\n"
                        "  --out DIR  where %s go (default: .)\n"
                        "  --no-plot  do not run gnuplot\n",
                        program, small, outputs);
            std::exit(a == "--help" || a == "-h" ? 0 : 2);
        }
    }
    make_writable_output_dir(o.out, program);
    return o;
}

}  // namespace examples
