#include "program.hpp"

#include "op_table.hpp"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace programs {

namespace {

std::uint64_t splitmix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Element values keyed by (seed, draw, index): the index read in base 5 (extents are at most 4)
// from the last axis, so leading axes of extent 1 and shorter extents leave a value unchanged.
template <class F>
Tensor<double> drawn(const Shape& shape, std::uint64_t seed, int draw, F from_unit)
{
    auto t = Tensor<double>::from_shape(shape);
    std::vector<std::size_t> index(shape.size(), 0);
    for (std::size_t i = 0; i < t.size(); ++i) {
        std::uint64_t key = 0;
        for (std::size_t d = 0; d < shape.size(); ++d) key = key * 5 + index[d];
        const std::uint64_t h = splitmix(splitmix(seed ^ splitmix(std::uint64_t(draw) + 1)) ^ key);
        t.data()[i] = from_unit(double(h >> 11) * 0x1.0p-53);
        for (std::size_t d = shape.size(); d-- > 0;) {
            if (++index[d] < shape[d]) break;
            index[d] = 0;
        }
    }
    return t;
}

// wsum's weight for an output: |w| in [0.5, 1.5], random sign, so that no element's cotangent is
// near zero.
Tensor<double> output_weight(const Program& p, std::size_t k, const Shape& shape)
{
    return drawn(shape, splitmix(p.values_seed) + 1, p.output_draw(k),
                 [](double u) { return u < 0.5 ? -0.5 - 2 * u : 2 * u - 0.5; });
}

// The shortest decimal form that reads back as the same double.
std::string number(double x)
{
    char buf[32];
    for (int digits = 6; digits <= 17; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, x);
        if (std::strtod(buf, nullptr) == x) break;
    }
    return buf;
}

std::string shape_text(const Shape& s)
{
    std::string out = "[";
    for (std::size_t d = 0; d < s.size(); ++d) out += (d ? "," : "") + std::to_string(s[d]);
    return out + "]";
}

std::string trim(const std::string& s)
{
    const auto b = s.find_first_not_of(" \t\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

// Splits at `sep` outside brackets.
std::vector<std::string> split(const std::string& s, char sep)
{
    std::vector<std::string> out(1);
    int depth = 0;
    for (char c : s) {
        if (c == '[' || c == '(') ++depth;
        if (c == ']' || c == ')') --depth;
        if (c == sep && depth == 0) out.emplace_back();
        else out.back() += c;
    }
    for (auto& part : out) part = trim(part);
    return out;
}

std::size_t to_size(const std::string& s, const std::string& what)
{
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || *end) throw Invalid("not a number in " + what + ": '" + s + "'");
    return std::size_t(v);
}

Shape parse_shape(const std::string& s)
{
    if (s.size() < 2 || s.front() != '[' || s.back() != ']') throw Invalid("not a shape: '" + s + "'");
    Shape out;
    const std::string inner = trim(s.substr(1, s.size() - 2));
    if (inner.empty()) return out;
    for (const auto& d : split(inner, ',')) out.push_back(to_size(d, s));
    return out;
}

double parse_number(const std::string& s)
{
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end) throw Invalid("not a number: '" + s + "'");
    return v;
}

// The draw after '@' in "x1@2", or `position` without one.
int parse_draw(const std::string& s, int position)
{
    const auto at = s.find('@');
    return at == std::string::npos ? position : int(to_size(s.substr(at + 1), s));
}

// "x1" or "t3" as a value index, given how many inputs there are and how many values exist.
int parse_value(const std::string& s, std::size_t inputs, int defined)
{
    if (s.size() < 2 || (s[0] != 'x' && s[0] != 't')) throw Invalid("not a value name: '" + s + "'");
    const std::size_t k = to_size(s.substr(1), s);
    const int v = s[0] == 'x' ? (k < inputs ? int(k) : -1) : int(inputs + k);
    if (v < 0 || v >= defined) throw Invalid("'" + s + "' is used before it is defined");
    return v;
}

}  // namespace

OpList table_ops()
{
    OpList ops;
    for (const auto& e : optable::table()) {
        if (e.kind != optable::Kind::elementwise && e.kind != optable::Kind::broadcasting) continue;
        // An entry's non-tensor arguments (a slope, bounds) are taken from its first sample.
        optable::Sample params;
        if (e.samples) {
            const auto samples = e.samples();
            if (!samples.empty()) {
                params.ints = samples[0].ints;
                params.reals = samples[0].reals;
            }
        }
        OpSpec op;
        op.name = e.name;
        op.arity = e.kind == optable::Kind::elementwise ? 1 : 2;
        op.lo = e.lo;
        op.hi = e.hi;
        op.twice = e.twice;
        op.call = [f = e.f64, params](const std::vector<Var<double>>& x) { return f(x, params); };
        ops.push_back(std::move(op));
    }
    return ops;
}

const OpSpec& find_op(const OpList& ops, const std::string& name)
{
    for (const auto& op : ops)
        if (op.name == name) return op;
    throw Invalid("no op named '" + name + "' in the op list");
}

bool Program::uses_only_twice_differentiable(const OpList& ops) const
{
    for (const auto& s : steps)
        if (s.kind == StepKind::op && !find_op(ops, s.op).twice) return false;
    return true;
}

std::string value_name(const Program& p, int v)
{
    return v < int(p.inputs.size()) ? "x" + std::to_string(v) : "t" + std::to_string(v - int(p.inputs.size()));
}

std::string to_text(const Program& p)
{
    std::ostringstream out;
    out << "values=" << p.values_seed << " |";
    auto draw = [](int d, std::size_t k) { return d == int(k) ? std::string() : "@" + std::to_string(d); };
    for (std::size_t k = 0; k < p.inputs.size(); ++k)
        out << " x" << k << draw(p.input_draw(k), k) << ":" << shape_text(p.inputs[k]);
    for (std::size_t i = 0; i < p.steps.size(); ++i) {
        const Step& s = p.steps[i];
        std::string args;
        for (std::size_t a = 0; a < s.args.size(); ++a) args += (a ? ", " : "") + value_name(p, s.args[a]);
        out << " | t" << i << " = ";
        switch (s.kind) {
        case StepKind::op: out << s.op << "(" << args << ")"; break;
        case StepKind::squash: out << "squash(" << args << ", " << number(s.lo) << ", " << number(s.hi) << ")"; break;
        case StepKind::sum_all: out << "sum(" << args << ")"; break;
        case StepKind::sum_axis: out << "sum(" << args << ", " << s.axis << ")"; break;
        case StepKind::mean_axis: out << "mean(" << args << ", " << s.axis << ")"; break;
        case StepKind::matmul: out << "matmul(" << args << ")"; break;
        case StepKind::reshape: out << "reshape(" << args << ", " << shape_text(s.shape) << ")"; break;
        case StepKind::transpose: out << "transpose(" << args << ")"; break;
        }
    }
    out << " | out = wsum(";
    for (std::size_t k = 0; k < p.outputs.size(); ++k)
        out << (k ? ", " : "") << value_name(p, p.outputs[k]) << draw(p.output_draw(k), k);
    out << ")";
    return out.str();
}

Program parse(const std::string& text)
{
    const auto parts = split(text, '|');
    if (parts.size() < 3) throw Invalid("expected 'values=N | inputs | steps... | out = wsum(...)'");
    Program p;
    if (parts[0].rfind("values=", 0) != 0) throw Invalid("expected 'values=N' first, got '" + parts[0] + "'");
    p.values_seed = std::strtoull(parts[0].c_str() + 7, nullptr, 10);
    {
        std::istringstream in(parts[1]);
        std::string word;
        while (in >> word) {
            const auto colon = word.find(':');
            const std::string name = word.substr(0, std::min(colon, word.find('@')));
            if (colon == std::string::npos || name != "x" + std::to_string(p.inputs.size()))
                throw Invalid("expected input x" + std::to_string(p.inputs.size()) + ":[shape], got '" + word + "'");
            p.input_draws.push_back(parse_draw(word.substr(0, colon), int(p.inputs.size())));
            p.inputs.push_back(parse_shape(word.substr(colon + 1)));
        }
    }
    if (p.inputs.empty()) throw Invalid("a program needs at least one input");
    for (std::size_t i = 2; i < parts.size(); ++i) {
        const std::string& part = parts[i];
        const auto eq = part.find('='), open = part.find('(');
        if (eq == std::string::npos || open == std::string::npos || part.back() != ')')
            throw Invalid("expected 'name = op(args)', got '" + part + "'");
        const std::string lhs = trim(part.substr(0, eq)), name = trim(part.substr(eq + 1, open - eq - 1));
        auto args = split(part.substr(open + 1, part.size() - open - 2), ',');
        const int defined = p.value_count();
        auto value = [&](std::size_t a) {
            if (a >= args.size()) throw Invalid("too few arguments in '" + part + "'");
            return parse_value(args[a], p.inputs.size(), defined);
        };
        if (i + 1 == parts.size()) {
            if (lhs != "out" || name != "wsum") throw Invalid("expected 'out = wsum(...)' last, got '" + part + "'");
            for (std::size_t a = 0; a < args.size(); ++a) {
                p.output_draws.push_back(parse_draw(args[a], int(a)));
                args[a] = args[a].substr(0, args[a].find('@'));
                p.outputs.push_back(value(a));
            }
            break;
        }
        if (lhs != "t" + std::to_string(p.steps.size()))
            throw Invalid("expected t" + std::to_string(p.steps.size()) + ", got '" + lhs + "'");
        Step s;
        std::size_t n_values = 1;
        if (name == "squash") {
            s.kind = StepKind::squash;
            if (args.size() != 3) throw Invalid("squash takes a value, lo and hi: '" + part + "'");
            s.lo = parse_number(args[1]);
            s.hi = parse_number(args[2]);
        } else if (name == "sum" || name == "mean") {
            s.kind = args.size() == 1 ? StepKind::sum_all : name == "sum" ? StepKind::sum_axis : StepKind::mean_axis;
            if (args.size() == 1 && name == "mean") throw Invalid("mean needs an axis: '" + part + "'");
            if (args.size() == 2) s.axis = std::ptrdiff_t(to_size(args[1], part));
        } else if (name == "matmul") {
            s.kind = StepKind::matmul;
            n_values = 2;
        } else if (name == "reshape") {
            s.kind = StepKind::reshape;
            if (args.size() != 2) throw Invalid("reshape takes a value and a shape: '" + part + "'");
            s.shape = parse_shape(args[1]);
        } else if (name == "transpose") {
            s.kind = StepKind::transpose;
        } else {
            s.kind = StepKind::op;
            s.op = name;
            n_values = args.size();
        }
        for (std::size_t a = 0; a < n_values; ++a) s.args.push_back(value(a));
        p.steps.push_back(std::move(s));
    }
    if (p.outputs.empty()) throw Invalid("out = wsum(...) needs at least one value");
    return p;
}

std::vector<Tensor<double>> input_values(const Program& p)
{
    std::vector<Tensor<double>> out;
    for (std::size_t k = 0; k < p.inputs.size(); ++k)
        out.push_back(drawn(p.inputs[k], p.values_seed, p.input_draw(k), [](double u) { return 4 * u - 2; }));
    return out;
}

Var<double> apply_step(const Step& s, const OpList& ops, const std::vector<Var<double>>& values)
{
    std::vector<Var<double>> a;
    for (int v : s.args) a.push_back(values.at(std::size_t(v)));
    try {
        switch (s.kind) {
        case StepKind::op: {
            const OpSpec& op = find_op(ops, s.op);
            if (int(a.size()) != op.arity)
                throw Invalid(s.op + " takes " + std::to_string(op.arity) + " arguments, not " + std::to_string(a.size()));
            return op.call(a);
        }
        case StepKind::squash: return ad::add(ad::mul(ad::sigmoid(a[0]), s.hi - s.lo), s.lo);
        case StepKind::sum_all: return ad::sum(a[0]);
        case StepKind::sum_axis: return ad::sum(a[0], s.axis, ad::keepdims);
        case StepKind::mean_axis: return ad::mean(a[0], s.axis, ad::keepdims);
        case StepKind::matmul:
            if (a[0].dimension() != 2 || a[1].dimension() != 2) throw Invalid("matmul: the tester uses it on 2-D only");
            return ad::matmul(a[0], a[1]);
        case StepKind::reshape: return ad::reshape(a[0], s.shape);
        case StepKind::transpose: return ad::transpose(a[0]);
        }
    } catch (const ad::Error& e) {
        throw Invalid(e.what());
    }
    throw Invalid("unknown step kind");
}

Var<double> evaluate(const Program& p, const OpList& ops, const std::vector<Var<double>>& x, Trace* trace)
{
    std::vector<Var<double>> values = x;
    for (std::size_t i = 0; i < p.steps.size(); ++i) {
        const Step& s = p.steps[i];
        if (trace && s.kind == StepKind::op) {
            const OpSpec& op = find_op(ops, s.op);
            for (int v : s.args)
                for (double e : values.at(std::size_t(v)).value())
                    if (!(e >= op.lo + kDomainMargin && e <= op.hi - kDomainMargin) && trace->in_domain) {
                        trace->in_domain = false;
                        trace->problem = "t" + std::to_string(i) + " = " + s.op + ": " + value_name(p, v) + " holds " +
                                         number(e) + ", outside [" + number(op.lo) + ", " + number(op.hi) + "]";
                    }
        }
        values.push_back(apply_step(s, ops, values));
        if (trace)
            for (double e : values.back().value())
                trace->max_abs = std::isnan(e) ? INFINITY : std::max(trace->max_abs, std::abs(e));
    }
    if (p.outputs.empty()) throw Invalid("a program needs an output");
    Var<double> out;
    for (std::size_t k = 0; k < p.outputs.size(); ++k) {
        const Var<double>& v = values.at(std::size_t(p.outputs[k]));
        const Shape shape(v.shape().begin(), v.shape().end());
        const Var<double> term = ad::sum(ad::mul(v, v.tape().constant(output_weight(p, k, shape))));
        out = k == 0 ? term : ad::add(out, term);
    }
    return out;
}

}  // namespace programs
