// A random program: a small straight-line composition of ops over one to three input tensors,
// ending in a scalar, with a text form that can be printed, read back and run again.
//
//     values=42 | x0:[2,3] x1:[3] | t0 = tanh(x0) | t1 = mul(t0, x1) | out = wsum(t1)
//
// Input values are drawn from `values` (uniform on [-2, 2]). `out = wsum(a, b, ...)` is the sum
// over the listed values of sum(v * w_v), each w_v a fixed random weight drawn from `values`,
// so every element's gradient carries its own cotangent. Each element is drawn by its index
// counted from the last axis, so an input cut to a part of itself keeps that part's values. Steps are ops of an OpList, called by
// name, or structural ops the tester knows itself:
//   squash(a, lo, hi)  lo + (hi - lo) sigmoid(a): brings a value into the next op's domain
//   sum(a)             all elements, shape []
//   sum(a, k)          along axis k, keepdims (so the result still broadcasts with the rest)
//   mean(a, k)         likewise
//   matmul(a, b)       2-D by 2-D
//   reshape(a, [..])   to a shape of the same size
//   transpose(a)       reverses the axes
#pragma once

#include "autodiff/autodiff.hpp"

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace programs {

using ad::Shape;
using ad::Tensor;
using ad::Var;

// An op a program can call: one or two inputs (two broadcast like NumPy), each of whose
// elements must lie in [lo, hi].
struct OpSpec {
    std::string name;
    int arity = 1;
    double lo = -3, hi = 3;
    bool twice = true;  // has a differentiable VJP: second-order checks apply
    std::function<Var<double>(const std::vector<Var<double>>&)> call;
};
using OpList = std::vector<OpSpec>;

// The op table's elementwise (unary) and broadcasting (binary) entries.
OpList table_ops();

enum class StepKind { op, squash, sum_all, sum_axis, mean_axis, matmul, reshape, transpose };

// One step, t_i = kind(args...). Values are numbered inputs first (x0, x1, ...), then steps.
struct Step {
    StepKind kind = StepKind::op;
    std::string op;  // the OpSpec's name, for StepKind::op
    std::vector<int> args;
    std::ptrdiff_t axis = 0;  // sum_axis, mean_axis
    Shape shape;              // reshape
    double lo = 0, hi = 1;    // squash
};

struct Program {
    std::uint64_t values_seed = 0;
    std::vector<Shape> inputs;
    std::vector<Step> steps;
    std::vector<int> outputs;  // the values wsum adds up
    // Which draw from values_seed gives an input's values or an output's weight: by default its
    // position, kept when the shrinker removes another (x1@2, t3@1 in the text), so that what is
    // left keeps its values. Shorter than inputs or outputs: the rest take their position.
    std::vector<int> input_draws, output_draws;

    int value_count() const { return int(inputs.size() + steps.size()); }
    int input_draw(std::size_t k) const { return k < input_draws.size() ? input_draws[k] : int(k); }
    int output_draw(std::size_t k) const { return k < output_draws.size() ? output_draws[k] : int(k); }
    bool uses_only_twice_differentiable(const OpList& ops) const;
};

// A program that cannot run: a shape mismatch, an unknown op, text that does not parse.
struct Invalid : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string to_text(const Program& p);
std::string value_name(const Program& p, int v);  // "x1", "t3"
Program parse(const std::string& text);           // throws Invalid
const OpSpec& find_op(const OpList& ops, const std::string& name);  // throws Invalid

// The inputs' values, drawn from p.values_seed.
std::vector<Tensor<double>> input_values(const Program& p);

// How far inside [lo, hi] an op's input must be: finite differences move it a little.
constexpr double kDomainMargin = 1e-4;

// What evaluating a program at its own input values found besides the output.
struct Trace {
    bool in_domain = true;  // every op's input inside its [lo, hi], by kDomainMargin
    double max_abs = 0;     // over every intermediate value
    std::string problem;    // the first op input outside its domain
};

// Runs p on the given input Vars (one tape) and returns the scalar output. Throws Invalid when a
// step does not apply (ad::Error from an op is turned into Invalid). With a trace, records
// domain violations and the largest magnitude.
Var<double> evaluate(const Program& p, const OpList& ops, const std::vector<Var<double>>& x, Trace* trace = nullptr);

// The value of one step given its arguments' Vars (used by generation, step by step).
Var<double> apply_step(const Step& s, const OpList& ops, const std::vector<Var<double>>& values);

}  // namespace programs
