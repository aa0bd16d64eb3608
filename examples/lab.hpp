// What the labs share: checks printed as they run and counted, number formatting, the common
// command line (--small, --out DIR, --no-plot), and their output files. A directory or file
// that cannot be made ends the program with a message naming the path, rather than a plot step
// that silently finds no data.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
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
    make_output_dir(o.out, program);
    return o;
}

}  // namespace examples
