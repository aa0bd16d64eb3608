#include "tester.hpp"

#include "autodiff/op.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ostream>
#include <random>
#include <set>
#include <sstream>

namespace programs {

namespace {

using Tensors = std::vector<Tensor<double>>;

// gradcheck's defaults: the tolerances a finite-difference comparison is held to here too.
constexpr double kEps = 1e-6, kAtol = 1e-5, kRtol = 1e-3;
constexpr double kMaxAbs = 1e3;  // intermediate values beyond this make differences imprecise

std::uint64_t mix(std::uint64_t a, std::uint64_t b)
{
    std::uint64_t x = a * 0x9e3779b97f4a7c15ULL + b + 0x632be59bd9b4e019ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

bool within(double a, double n) { return std::abs(a - n) <= kAtol + kRtol * std::abs(n); }

Shape shape_of(const Var<double>& v) { return Shape(v.shape().begin(), v.shape().end()); }

bool broadcasts(const Var<double>& a, const Var<double>& b)
{
    Shape out;
    return ad::broadcast_into(a.shape(), b.shape(), out);
}

bool in_domain(const Var<double>& v, double lo, double hi)
{
    for (double e : v.value())
        if (!(e >= lo + kDomainMargin && e <= hi - kDomainMargin)) return false;
    return true;
}

double max_abs(const Var<double>& v)
{
    double m = 0;
    for (double e : v.value()) m = std::isfinite(e) ? std::max(m, std::abs(e)) : INFINITY;
    return m;
}

// A shape of `size` elements with 1 to 3 axes, the factors of size spread at random.
Shape random_shape_of_size(std::size_t size, std::mt19937_64& rng)
{
    const std::size_t rank = std::uniform_int_distribution<std::size_t>(1, 3)(rng);
    Shape s(rank, 1);
    std::size_t n = size;
    for (std::size_t f = 2; n > 1;) {
        if (n % f == 0) {
            s[std::uniform_int_distribution<std::size_t>(0, rank - 1)(rng)] *= f;
            n /= f;
        } else {
            ++f;
        }
    }
    return s;
}

// Builds a program step by step on one tape, so that each step is chosen knowing its
// arguments' shapes and values.
class Generator {
public:
    Generator(std::uint64_t seed, const OpList& ops) : rng_(seed), ops_(ops)
    {
        for (std::size_t i = 0; i < ops.size(); ++i) (ops[i].arity == 1 ? unary_ : binary_).push_back(i);
    }

    Program draw(std::uint64_t values_seed)
    {
        p_ = Program{};
        p_.values_seed = values_seed;
        const std::size_t rank = uniform(0, 3);
        Shape base(rank);
        for (auto& d : base) d = uniform(1, 4);
        // Each input a broadcast-compatible part of the base shape: a trailing run of its axes,
        // some stretched from 1. Any two broadcast together.
        const std::size_t n_inputs = uniform(1, 3);
        for (std::size_t k = 0; k < n_inputs; ++k) {
            const std::size_t keep = chance(0.5) ? rank : uniform(0, rank);
            Shape s(base.end() - std::ptrdiff_t(keep), base.end());
            for (auto& d : s)
                if (chance(0.25)) d = 1;
            p_.inputs.push_back(s);
        }
        for (const auto& x : input_values(p_)) values_.push_back(tape_.variable(x));
        consumed_.assign(values_.size(), false);

        const std::size_t n_steps = uniform(1, 8);
        for (std::size_t attempt = 0; p_.steps.size() < n_steps && attempt < 4 * n_steps; ++attempt) {
            const std::size_t mark = p_.steps.size();
            if (!add_random_step()) {
                p_.steps.resize(mark);  // undo the squashes or transposes it added first
                values_.resize(p_.inputs.size() + mark);
                consumed_.resize(values_.size());
            }
        }
        // Every value no step reads goes into the output, so every step counts.
        std::vector<bool> read(values_.size(), false);
        for (const auto& s : p_.steps)
            for (int a : s.args) read[std::size_t(a)] = true;
        for (std::size_t v = 0; v < read.size(); ++v)
            if (!read[v]) p_.outputs.push_back(int(v));
        return p_;
    }

private:
    std::size_t uniform(std::size_t lo, std::size_t hi)
    {
        return std::uniform_int_distribution<std::size_t>(lo, hi)(rng_);
    }
    bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

    // An argument: half the time a value nothing has read yet (so the program stays one
    // expression rather than many dead ends), else any value.
    int pick()
    {
        std::vector<int> fresh;
        for (std::size_t v = 0; v < values_.size(); ++v)
            if (!consumed_[v]) fresh.push_back(int(v));
        if (!fresh.empty() && chance(0.5)) return fresh[uniform(0, fresh.size() - 1)];
        return int(uniform(0, values_.size() - 1));
    }

    // Appends s and its value; false (and nothing kept by the caller) if it does not apply or
    // its value is huge.
    bool push(Step s)
    {
        Var<double> v;
        try {
            v = apply_step(s, ops_, values_);
        } catch (const Invalid&) {
            return false;
        }
        if (max_abs(v) > kMaxAbs) return false;
        for (int a : s.args) consumed_[std::size_t(a)] = true;
        p_.steps.push_back(std::move(s));
        values_.push_back(v);
        consumed_.push_back(false);
        return true;
    }

    // v itself if it lies inside [lo, hi], else a squash of it into there.
    int into_domain(int v, double lo, double hi)
    {
        if (in_domain(values_[std::size_t(v)], lo, hi)) return v;
        for (std::size_t i = 0; i < p_.steps.size(); ++i) {  // the same squash made before
            const Step& s = p_.steps[i];
            if (s.kind == StepKind::squash && s.args[0] == v && s.lo == lo && s.hi == hi)
                return int(p_.inputs.size() + i);
        }
        Step s;
        s.kind = StepKind::squash;
        s.args = {v};
        s.lo = lo;
        s.hi = hi;
        if (!push(s)) return -1;
        return int(values_.size()) - 1;
    }

    bool add_random_step()
    {
        const double r = std::uniform_real_distribution<double>(0, 1)(rng_);
        if (r < 0.35 && !unary_.empty()) return add_op(ops_[unary_[uniform(0, unary_.size() - 1)]]);
        if (r < 0.7 && !binary_.empty()) return add_op(ops_[binary_[uniform(0, binary_.size() - 1)]]);
        return add_structural();
    }

    bool add_op(const OpSpec& op)
    {
        Step s;
        s.kind = StepKind::op;
        s.op = op.name;
        int a = pick();
        if (op.arity == 2) {
            std::vector<int> partners;
            for (std::size_t v = 0; v < values_.size(); ++v)
                if (int(v) != a && broadcasts(values_[std::size_t(a)], values_[v])) partners.push_back(int(v));
            const int b = partners.empty() ? a : partners[uniform(0, partners.size() - 1)];
            s.args = {a, b};
        } else {
            s.args = {a};
        }
        const bool same = s.args.size() == 2 && s.args[0] == s.args[1];
        if ((s.args[0] = into_domain(s.args[0], op.lo, op.hi)) < 0) return false;
        if (same) s.args[1] = s.args[0];  // one squash serves both
        else if (s.args.size() == 2 && (s.args[1] = into_domain(s.args[1], op.lo, op.hi)) < 0) return false;
        for (int arg : s.args)
            if (!in_domain(values_[std::size_t(arg)], op.lo, op.hi)) return false;  // a squash saturated
        return push(s);
    }

    bool add_structural()
    {
        const int a = pick();
        const Var<double>& x = values_[std::size_t(a)];
        const std::size_t rank = x.dimension();
        Step s;
        s.args = {a};
        const double r = std::uniform_real_distribution<double>(0, 1)(rng_);
        if (r < 0.45) {
            if (rank == 0) return false;
            s.kind = r < 0.25 ? StepKind::sum_axis : StepKind::mean_axis;
            s.axis = std::ptrdiff_t(uniform(0, rank - 1));
        } else if (r < 0.65) {
            if (rank != 2) return false;
            s.kind = StepKind::matmul;
            std::vector<int> partners;  // b with b.rows == a.cols
            for (std::size_t v = 0; v < values_.size(); ++v)
                if (values_[v].dimension() == 2 && values_[v].shape()[0] == x.shape()[1]) partners.push_back(int(v));
            if (partners.empty() || chance(0.3)) {  // a a^T
                Step t;
                t.kind = StepKind::transpose;
                t.args = {a};
                if (!push(t)) return false;
                partners = {int(values_.size()) - 1};
            }
            s.args.push_back(partners[uniform(0, partners.size() - 1)]);
        } else if (r < 0.8) {
            s.kind = StepKind::reshape;
            s.shape = random_shape_of_size(x.size(), rng_);
        } else if (r < 0.95) {
            if (rank < 2) return false;
            s.kind = StepKind::transpose;
        } else {
            s.kind = StepKind::sum_all;
        }
        return push(s);
    }

    std::mt19937_64 rng_;
    const OpList& ops_;
    std::vector<std::size_t> unary_, binary_;
    Program p_;
    ad::Tape<double> tape_;
    std::vector<Var<double>> values_;
    std::vector<bool> consumed_;
};

// The scalar function a check differentiates and its gradient by reverse mode, both as
// functions of the check's arguments.
struct Probe {
    std::function<double(const Tensors&)> value;
    std::function<Tensors(const Tensors&)> gradient;
    std::vector<std::string> names;
};

Probe first_order_probe(const Program& p, const OpList& ops)
{
    Probe probe;
    probe.value = [&p, &ops](const Tensors& x) {
        ad::Tape<double> tape;
        std::vector<Var<double>> v;
        for (const auto& t : x) v.push_back(tape.variable(t));
        return evaluate(p, ops, v).item();
    };
    probe.gradient = [&p, &ops](const Tensors& x) {
        ad::Tape<double> tape;
        std::vector<Var<double>> v;
        for (const auto& t : x) v.push_back(tape.variable(t));
        return ad::grad(evaluate(p, ops, v), v);
    };
    for (std::size_t k = 0; k < p.inputs.size(); ++k) probe.names.push_back(value_name(p, int(k)));
    return probe;
}

// <w, VJP(c)> as a function of the inputs and the cotangent c (the last argument), as
// gradgradcheck builds it: by the first-order sweep for its value, and differentiated through
// the graph a create_graph sweep records for its gradient.
Probe second_order_probe(const Program& p, const OpList& ops, const Tensors& w)
{
    Probe probe;
    probe.value = [&p, &ops, w](const Tensors& point) {
        ad::Tape<double> tape;
        std::vector<Var<double>> v;
        for (std::size_t k = 0; k + 1 < point.size(); ++k) v.push_back(tape.variable(point[k]));
        const Tensors g = ad::vjp(evaluate(p, ops, v), point.back(), v);
        double s = 0;
        for (std::size_t k = 0; k < g.size(); ++k) s += xt::sum(g[k] * w[k])();
        return s;
    };
    probe.gradient = [&p, &ops, w](const Tensors& point) {
        ad::Tape<double> tape;
        std::vector<Var<double>> v;
        for (std::size_t k = 0; k + 1 < point.size(); ++k) v.push_back(tape.variable(point[k]));
        const Var<double> out = evaluate(p, ops, v);
        const Var<double> c = tape.variable(point.back());
        const auto g = ad::vjp(out, c, v, ad::create_graph);
        Var<double> s = ad::sum(ad::mul(g[0], tape.constant(w[0])));
        for (std::size_t k = 1; k < g.size(); ++k) s = ad::add(s, ad::sum(ad::mul(g[k], tape.constant(w[k]))));
        v.push_back(c);
        if (s.requires_grad()) return ad::grad(s, v);
        Tensors zeros;
        for (const auto& t : point) zeros.push_back(xt::zeros<double>(t.shape()));
        return zeros;
    };
    for (std::size_t k = 0; k < p.inputs.size(); ++k) probe.names.push_back(value_name(p, int(k)));
    probe.names.push_back("cotangent");
    return probe;
}

std::string shape_str(const Tensor<double>& t, std::size_t flat)
{
    Shape idx(t.dimension());
    for (std::size_t d = t.dimension(); d-- > 0;) {
        idx[d] = flat % t.shape()[d];
        flat /= t.shape()[d];
    }
    return ad::shape_str(idx);
}

// A failed check, recomputed element by element: a failure if some element's reverse-mode
// value disagrees with differences that do not depend on the step, not smooth if every
// disagreeing element's differences change with the step.
CheckResult diagnose(const Probe& probe, Tensors point, const std::string& library_report)
{
    const Tensors analytic = probe.gradient(point);
    auto difference = [&](std::size_t k, std::size_t j, double eps) {
        const double saved = point[k].flat(j);
        point[k].flat(j) = saved + eps;
        const double up = probe.value(point);
        point[k].flat(j) = saved - eps;
        const double down = probe.value(point);
        point[k].flat(j) = saved;
        return (up - down) / (2 * eps);
    };
    std::ostringstream kink;
    kink.precision(10);
    for (std::size_t k = 0; k < point.size(); ++k)
        for (std::size_t j = 0; j < point[k].size(); ++j) {
            const double a = analytic[k].flat(j), n1 = difference(k, j, kEps);
            if (within(a, n1)) continue;
            const double n2 = difference(k, j, kEps / 10);
            std::ostringstream where;
            where.precision(10);
            where << probe.names[k] << " element " << shape_str(point[k], j) << ": reverse mode " << a
                  << ", differences " << n1 << " (step " << kEps << ") and " << n2 << " (step " << kEps / 10 << ")";
            if (within(n2, n1)) return {Verdict::fail, false, where.str() + ". " + library_report};
            if (kink.tellp() == 0) kink << "not smooth at " << where.str();
        }
    if (kink.tellp() == 0)  // the library's check failed, the recomputation found nothing
        return {Verdict::fail, false, "the recomputation passes, but: " + library_report};
    return {Verdict::not_smooth, false, kink.str()};
}

}  // namespace

const char* verdict_name(Verdict v)
{
    switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::not_smooth: return "not smooth";
    case Verdict::fail: return "FAIL";
    case Verdict::invalid: return "invalid";
    }
    return "?";
}

Program generate(std::uint64_t seed, const OpList& ops)
{
    for (std::uint64_t attempt = 0;; ++attempt) {
        Generator g(mix(seed, attempt), ops);
        Program p = g.draw(mix(seed, attempt) >> 40);  // a short seed reads better in the text
        if (!p.steps.empty() || attempt >= 10) return p;
    }
}

CheckResult check(const Program& p, const OpList& ops) { return check(p, ops, input_values(p)); }

CheckResult check(const Program& p, const OpList& ops, const Tensors& inputs)
{
    try {
        ad::Tape<double> tape;
        std::vector<Var<double>> v;
        for (const auto& t : inputs) v.push_back(tape.variable(t));
        Trace trace;
        const Var<double> out = evaluate(p, ops, v, &trace);
        if (!trace.in_domain) return {Verdict::invalid, false, trace.problem};
        if (!(trace.max_abs <= kMaxAbs) || !std::isfinite(out.item()))
            return {Verdict::invalid, false, "values too large for finite differences"};
    } catch (const Invalid& e) {
        return {Verdict::invalid, false, e.what()};
    }
    CheckResult result;
    try {
        const ad::MultiFn<double> f = [&](const std::vector<Var<double>>& x) { return evaluate(p, ops, x); };
        ad::GradcheckOptions options;
        for (std::size_t k = 0; k < p.inputs.size(); ++k) options.names.push_back(value_name(p, int(k)));
        const auto first = ad::gradcheck<double>(f, inputs, options);
        if (!first.ok) {
            result = diagnose(first_order_probe(p, ops), inputs, first.report());
            result.report = "first order: " + result.report;
            return result;
        }
        if (!p.uses_only_twice_differentiable(ops)) return result;
        result.second_order = true;
        const auto second = ad::gradgradcheck<double>(f, inputs, options);
        if (!second.ok) {
            std::mt19937_64 rng(p.values_seed);
            std::normal_distribution<double> normal(0, 1);
            Tensors w, point = inputs;
            for (const auto& x : inputs) {
                Tensor<double> t = Tensor<double>::from_shape(x.shape());
                for (auto& e : t) e = normal(rng);
                w.push_back(t);
            }
            point.push_back(Tensor<double>(normal(rng)));  // the cotangent of the scalar output
            const bool was_second = result.second_order;
            result = diagnose(second_order_probe(p, ops, w), point, "gradgradcheck: " + second.report());
            result.second_order = was_second;
            result.report = "second order: " + result.report;
        }
    } catch (const std::exception& e) {
        // An op that fails on a valid program (or refuses second order while claiming it).
        result.verdict = Verdict::fail;
        result.report = std::string("error: ") + e.what();
    }
    return result;
}

namespace {

// Every input's and output's draw written out, so that removing one keeps the others'.
void pin_draws(Program& p)
{
    for (std::size_t k = p.input_draws.size(); k < p.inputs.size(); ++k) p.input_draws.push_back(int(k));
    for (std::size_t k = p.output_draws.size(); k < p.outputs.size(); ++k) p.output_draws.push_back(int(k));
}

// p without value v: its uses read `replacement` instead, and later values move down one.
Program remove_value(Program p, int v, int replacement)
{
    pin_draws(p);
    auto renumber = [&](int& a) {
        if (a == v) a = replacement;
        if (a > v) --a;
    };
    for (auto& s : p.steps)
        for (auto& a : s.args) renumber(a);
    for (auto& o : p.outputs) renumber(o);
    std::vector<int> seen, seen_draws;
    for (std::size_t k = 0; k < p.outputs.size(); ++k)
        if (std::find(seen.begin(), seen.end(), p.outputs[k]) == seen.end()) {
            seen.push_back(p.outputs[k]);
            seen_draws.push_back(p.output_draws[k]);
        }
    p.outputs = seen;
    p.output_draws = seen_draws;
    const int n = int(p.inputs.size());
    if (v < n) {
        p.inputs.erase(p.inputs.begin() + v);
        p.input_draws.erase(p.input_draws.begin() + v);
    }
    else p.steps.erase(p.steps.begin() + (v - n));
    return p;
}

// Drops steps no output depends on and inputs nothing reads.
Program without_dead_values(Program p)
{
    for (bool changed = true; changed;) {
        changed = false;
        std::vector<bool> live(std::size_t(p.value_count()), false);
        for (int o : p.outputs) live[std::size_t(o)] = true;
        const int n = int(p.inputs.size());
        for (int i = int(p.steps.size()) - 1; i >= 0; --i)
            if (live[std::size_t(n + i)])
                for (int a : p.steps[std::size_t(i)].args) live[std::size_t(a)] = true;
        for (int v = p.value_count() - 1; v >= 0; --v)
            if (!live[std::size_t(v)] && (v >= n || n > 1)) {
                p = remove_value(p, v, 0);
                changed = true;
                break;
            }
    }
    return p;
}

// Smaller programs one edit away from p, largest cuts first.
std::vector<Program> candidates(const Program& p)
{
    std::vector<Program> out;
    const int n = int(p.inputs.size());
    for (int i = int(p.steps.size()) - 1; i >= 0; --i) {
        std::set<int> args(p.steps[std::size_t(i)].args.begin(), p.steps[std::size_t(i)].args.end());
        for (int a : args) out.push_back(remove_value(p, n + i, a));  // t_i replaced by an argument
    }
    for (std::size_t k = 0; p.outputs.size() > 1 && k < p.outputs.size(); ++k) {
        Program c = p;
        pin_draws(c);
        c.outputs.erase(c.outputs.begin() + std::ptrdiff_t(k));
        c.output_draws.erase(c.output_draws.begin() + std::ptrdiff_t(k));
        out.push_back(c);
    }
    for (int k = 0; n > 1 && k < n; ++k)
        for (int j = 0; j < n; ++j)
            if (j != k) out.push_back(remove_value(p, k, j));  // x_k replaced by x_j
    for (int k = 0; k < n; ++k) {
        const Shape& s = p.inputs[std::size_t(k)];
        for (std::size_t d = 0; d < s.size(); ++d) {
            Program c = p;
            c.inputs[std::size_t(k)].erase(c.inputs[std::size_t(k)].begin() + std::ptrdiff_t(d));
            out.push_back(c);
            if (s[d] > 1) {
                c = p;
                c.inputs[std::size_t(k)][d] = 1;
                out.push_back(c);
            }
            if (s[d] > 2) {
                c = p;
                --c.inputs[std::size_t(k)][d];
                out.push_back(c);
            }
        }
    }
    for (auto& c : out) c = without_dead_values(c);
    return out;
}

}  // namespace

Program shrink(Program p, const OpList& ops, int budget)
{
    p = without_dead_values(p);
    for (bool progress = true; progress && budget > 0;) {
        progress = false;
        for (const auto& c : candidates(p)) {
            if (budget-- <= 0) break;
            if (check(c, ops).verdict == Verdict::fail) {
                p = c;
                progress = true;
                break;
            }
        }
    }
    return p;
}

RunStats run(const RunOptions& options, const OpList& ops, std::ostream& out)
{
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const long long count = options.programs > 0 || options.seconds > 0 ? options.programs : 100;
    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    RunStats stats;
    for (long long i = 0;; ++i) {
        if (count > 0 && i >= count) break;
        if (options.seconds > 0 && elapsed() >= options.seconds) break;
        const Program p = generate(mix(options.seed, std::uint64_t(i)), ops);
        const CheckResult r = check(p, ops);
        ++stats.programs;
        if (options.verbose) out << verdict_name(r.verdict) << (r.second_order ? " (2nd order): " : ": ") << to_text(p) << "\n";
        if (r.verdict != Verdict::invalid) ++stats.first_order;
        if (r.second_order) ++stats.second_order;
        if (r.verdict == Verdict::invalid) ++stats.invalid;
        if (r.verdict == Verdict::not_smooth) ++stats.not_smooth;
        if (r.verdict != Verdict::fail) continue;
        ++stats.failures;
        if (int(stats.shrunk.size()) >= options.print_failures) continue;
        Failure f{p, shrink(p, ops), {}};
        f.result = check(f.shrunk, ops);
        const std::string text = to_text(f.shrunk);
        out << "FAILED: program " << i << " of --seed " << options.seed << "\n  " << to_text(p)
            << "\nshrunk to\n  " << text << "\n" << f.result.report << "\nreplay: random_programs --replay '" << text
            << "'\n\n";
        stats.shrunk.push_back(std::move(f));
    }
    stats.seconds = elapsed();
    return stats;
}

void print_summary(const RunStats& s, std::ostream& out)
{
    out << "programs: " << s.programs << " in " << s.seconds << " s ("
        << (s.seconds > 0 ? double(s.programs) / s.seconds : 0.0) << " per second)\n"
        << "first-order checks: " << s.first_order << ", second-order checks: " << s.second_order
        << ", not smooth (skipped): " << s.not_smooth << ", invalid (skipped): " << s.invalid
        << ", failures: " << s.failures << "\n";
}

}  // namespace programs
