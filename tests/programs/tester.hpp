// The random-program tester: draws programs (program.hpp) from a seed, checks each one's first
// derivatives with ad::gradcheck and, when every op in it has a differentiable VJP, its second
// derivatives with ad::gradgradcheck, and shrinks a failing program to a minimal one.
//
// A failed check is not yet a failure: central differences that straddle a kink (relu, abs,
// clamp, maximum) are wrong, not the VJP. So a failed check is recomputed element by element
// with the step and with a step 10 times smaller: where the reverse sweep disagrees with the
// differences but the two differences agree with each other, the VJP is wrong (a failure);
// where every disagreeing element's two differences also disagree, the point is not smooth and
// the program is counted as such and skipped.
#pragma once

#include "program.hpp"

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace programs {

// Draws one valid program from the ops (every op input inside its domain, values moderate).
Program generate(std::uint64_t seed, const OpList& ops);

enum class Verdict {
    pass,
    not_smooth,  // a check failed, but its finite differences depend on the step
    fail,        // a check failed where the finite differences are stable
    invalid,     // the program does not run, or leaves a domain, or its values are huge
};
const char* verdict_name(Verdict v);

struct CheckResult {
    Verdict verdict = Verdict::pass;
    bool second_order = false;  // whether gradgradcheck ran
    std::string report;         // what failed, for a person
};

// Checks p at its seeded input values, or at the given ones.
CheckResult check(const Program& p, const OpList& ops);
CheckResult check(const Program& p, const OpList& ops, const std::vector<Tensor<double>>& inputs);

// The smallest program reachable from p by dropping steps, outputs and inputs and shrinking
// input shapes, on which check() still reports a failure. At most `budget` checks.
Program shrink(Program p, const OpList& ops, int budget = 2000);

struct RunOptions {
    std::uint64_t seed = 1;
    double seconds = 0;      // run until this much time has passed (if > 0)...
    long long programs = 0;  // ...or for this many programs
    int print_failures = 3;  // failing programs shrunk and printed; later ones are only counted
    bool verbose = false;    // print every program and its verdict
};

struct Failure {
    Program original, shrunk;
    CheckResult result;  // of the shrunk program
};

struct RunStats {
    long long programs = 0, first_order = 0, second_order = 0, not_smooth = 0, failures = 0, invalid = 0;
    double seconds = 0;
    std::vector<Failure> shrunk;  // the first print_failures failures
};

// Runs programs drawn from seeds derived from options.seed, printing each shrunk failure to out.
RunStats run(const RunOptions& options, const OpList& ops, std::ostream& out);

// Prints the stats: programs run, programs per second, checks, not-smooth skips, failures.
void print_summary(const RunStats& stats, std::ostream& out);

}  // namespace programs
