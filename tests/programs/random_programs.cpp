// Seeded random-program tester over the op table (see tester.hpp).
//
//   random_programs [--seed N] [--programs N | --seconds S] [--print-failures K] [--verbose]
//   random_programs --replay 'values=7 | x0:[2] | t0 = tanh(x0) | out = wsum(t0)'
//
// Exits 1 if any program fails (or the replayed one does), 2 on bad usage or a program that
// cannot run.
#include "tester.hpp"

#include <cstdlib>
#include <iostream>
#include <string>

namespace {

int usage(const std::string& problem)
{
    std::cerr << "random_programs: " << problem
              << "\nusage: random_programs [--seed N] [--programs N | --seconds S] [--print-failures K] [--verbose]\n"
                 "       random_programs --replay 'PROGRAM'\n";
    return 2;
}

int replay(const std::string& text, const programs::OpList& ops)
{
    programs::Program p;
    try {
        p = programs::parse(text);
    } catch (const programs::Invalid& e) {
        return usage(std::string("cannot read the program: ") + e.what());
    }
    std::cout << programs::to_text(p) << "\n";
    const auto r = programs::check(p, ops);
    std::cout << "verdict: " << programs::verdict_name(r.verdict)
              << (r.second_order ? " (first and second order checked)" : " (first order checked)") << "\n";
    if (!r.report.empty()) std::cout << r.report << "\n";
    if (r.verdict == programs::Verdict::invalid) return 2;
    return r.verdict == programs::Verdict::fail ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv)
{
    programs::RunOptions options;
    std::string replay_text;
    bool replaying = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--verbose") {
            options.verbose = true;
            continue;
        }
        if (i + 1 >= argc) return usage("missing a value after " + arg);
        const std::string value = argv[++i];
        char* end = nullptr;
        if (arg == "--seed") options.seed = std::strtoull(value.c_str(), &end, 10);
        else if (arg == "--programs") options.programs = std::strtoll(value.c_str(), &end, 10);
        else if (arg == "--seconds") options.seconds = std::strtod(value.c_str(), &end);
        else if (arg == "--print-failures") options.print_failures = int(std::strtol(value.c_str(), &end, 10));
        else if (arg == "--replay") {
            replay_text = value;
            replaying = true;
            continue;
        } else return usage("unknown option " + arg);
        if (value.empty() || *end) return usage("not a number after " + arg + ": " + value);
    }
    const programs::OpList ops = programs::table_ops();
    if (replaying) return replay(replay_text, ops);
    std::cout << "random_programs: seed " << options.seed << ", " << ops.size() << " ops from the op table:";
    for (const auto& op : ops) std::cout << " " << op.name;
    std::cout << "\n";
    const auto stats = programs::run(options, ops, std::cout);
    programs::print_summary(stats, std::cout);
    return stats.failures > 0 ? 1 : 0;
}
