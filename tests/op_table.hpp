// The op table: every public op once, with the inputs it is tested on and an independent
// reference for its value. The generic tests (tests/test_op_table.cpp) run the same checks over
// every entry: the value against the reference, gradcheck, gradgradcheck, float against double,
// a NaN confined to the outputs that depend on it, empty inputs, and errors naming the op for a
// stale handle and for inputs it must refuse. The random-program tester (tests/programs/)
// composes the elementwise and broadcasting entries. Adding an op adds one entry here.
//
// The entries live in tests/op_table_*.cpp, one file per group of ops, each appending to the
// table in a function that tests/op_table.cpp calls.
#pragma once

#include "gradcheck_helpers.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace optable {

using ad::Shape;
using ad::Tensor;
using ad::Var;

// One way to call an op: its tensor inputs and, for arguments that are not tensors (an axis,
// labels, a target shape, a slope), the integers and reals the entry's call reads.
struct Sample {
    std::string what;  // shown when a check fails: "broadcast [3,1] x [1,4]"
    std::vector<Tensor<double>> inputs;
    std::vector<std::ptrdiff_t> ints = {};
    std::vector<double> reals = {};
    // Every input away from the op's kinks and poles (by more than 1e-3), and within its
    // domain: central differences apply. Edge samples (values at a kink, huge, tiny, infinite)
    // are not smooth: only their values are checked, against the reference.
    bool smooth = true;
};

// An op called on Vars: inputs in the order of Sample::inputs.
template <class T>
using Call = std::function<Var<T>(const std::vector<Var<T>>&, const Sample&)>;
// The same op on plain doubles, written independently of the library: <cmath> and loops.
using Reference = std::function<Tensor<double>(const std::vector<Tensor<double>>&, const Sample&)>;

enum class Kind {
    elementwise,   // one input, y_i = f(x_i), any shape
    broadcasting,  // two inputs of broadcasting shapes, z_i = f(a_i, b_i)
    other,
};

struct Entry {
    std::string name;        // unique in the table: the op's name ("sum", "sum along an axis")
    std::string error_name;  // what the op's errors name it, if not `name`
    Kind kind = Kind::other;
    Call<float> f32;
    Call<double> f64;
    Reference reference;
    std::function<std::vector<Sample>()> samples;  // includes empty inputs where the op allows them
    std::function<std::vector<Sample>()> refused;  // inputs the op must refuse, naming itself
    // Elementwise and broadcasting ops: the interval the random-program tester draws inputs
    // from, inside the op's domain.
    double lo = -3, hi = 3;
    bool twice = true;          // states a differentiable VJP: gradgradcheck applies
    // Value against the reference: |y - ref| <= forward_atol + forward_rtol |ref|. Elementwise
    // entries compare relatively alone (atol 0), so a tiny value must be right to its last digits.
    double forward_rtol = 1e-12;
    double forward_atol = 1e-12;
    double float_rtol = 1e-4;     // float against double, relative (with atol = rtol)
    // Which inputs take a NaN in the NaN test (default: every input).
    std::vector<std::size_t> nan_inputs = {};
    // The op refuses a NaN input with an ad::Error naming it, instead of propagating it (a
    // decomposition that requires a positive definite matrix).
    bool refuses_nan = false;
};

// What the op's errors name it.
inline const std::string& error_name(const Entry& e) { return e.error_name.empty() ? e.name : e.error_name; }

// The whole table, built once.
const std::vector<Entry>& table();
// The entry of that name, or throws.
const Entry& entry(const std::string& name);

// An entry from one generic call that serves both float and double.
template <class F>
Entry make(std::string name, Kind kind, F call)
{
    Entry e;
    e.name = std::move(name);
    e.kind = kind;
    e.f32 = call;
    e.f64 = call;
    return e;
}

// --- reference helpers: plain loops, independent of xtensor's broadcasting ---

inline constexpr double inf = std::numeric_limits<double>::infinity();
inline constexpr double nan = std::numeric_limits<double>::quiet_NaN();

inline Shape shape_of(const Tensor<double>& t) { return Shape(t.shape().begin(), t.shape().end()); }

// A tensor of the given shape holding `values` in row-major order.
inline Tensor<double> tensor(const Shape& s, const std::vector<double>& values)
{
    Tensor<double> t = Tensor<double>::from_shape(s);
    std::copy(values.begin(), values.end(), t.data());
    return t;
}

inline Tensor<double> empty(const Shape& s) { return Tensor<double>::from_shape(s); }

// Calls f(flat position, multi-index) for every element of shape s, row-major.
template <class F>
void for_each_index(const Shape& s, F f)
{
    std::size_t n = 1;
    for (const auto d : s) n *= d;
    std::vector<std::size_t> index(s.size(), 0);
    for (std::size_t k = 0; k < n; ++k) {
        f(k, index);
        for (std::size_t d = s.size(); d-- > 0;) {
            if (++index[d] < s[d]) break;
            index[d] = 0;
        }
    }
}

// A possibly negative axis of a tensor of the given rank, counted from the front.
inline std::size_t axis_of(std::ptrdiff_t axis, std::size_t rank)
{
    return std::size_t(axis < 0 ? axis + std::ptrdiff_t(rank) : axis);
}

// A shape as outer x n x inner around one axis: element (o, j, i) is at (o n + j) inner + i.
struct Around {
    std::size_t outer = 1, n = 1, inner = 1;
    Around(const Shape& s, std::size_t axis)
    {
        for (std::size_t d = 0; d < axis; ++d) outer *= s[d];
        n = s[axis];
        for (std::size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
    }
    std::size_t at(std::size_t o, std::size_t j, std::size_t i) const { return (o * n + j) * inner + i; }
};

// The maximum of a slice, NaN if it holds a NaN (as PyTorch's max); -inf for an empty one.
double max_of(const std::vector<double>& v);
// log sum exp with the maximum subtracted first: NaN for a slice holding NaN, the maximum
// itself where it is infinite (or the slice empty).
double logsumexp_of(const std::vector<double>& v);

// y_i = f(x_i).
template <class F>
Reference unary_reference(F f)
{
    return [f](const std::vector<Tensor<double>>& in, const Sample&) {
        Tensor<double> y = Tensor<double>::from_shape(in[0].shape());
        for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = f(in[0].data()[i]);
        return y;
    };
}

// Row-major offset of the element at `index` of the broadcast result in an operand of shape
// `s`, aligned from the right, stretched where its extent is 1.
inline std::size_t broadcast_offset(const std::vector<std::size_t>& index, const Shape& s)
{
    std::size_t offset = 0;
    const std::size_t shift = index.size() - s.size();
    for (std::size_t d = 0; d < s.size(); ++d) offset = offset * s[d] + (s[d] == 1 ? 0 : index[d + shift]);
    return offset;
}

// z_i = f(a_i, b_i) on the broadcast shape.
template <class F>
Reference binary_reference(F f)
{
    return [f](const std::vector<Tensor<double>>& in, const Sample&) {
        const Shape a(in[0].shape().begin(), in[0].shape().end()), b(in[1].shape().begin(), in[1].shape().end());
        const std::size_t n = std::max(a.size(), b.size());
        Shape out(n);
        for (std::size_t d = 0; d < n; ++d) {
            const std::size_t da = d + a.size() >= n ? a[d + a.size() - n] : 1;
            const std::size_t db = d + b.size() >= n ? b[d + b.size() - n] : 1;
            out[d] = da == 1 ? db : da;
        }
        Tensor<double> z = Tensor<double>::from_shape(out);
        for_each_index(out, [&](std::size_t i, const std::vector<std::size_t>& index) {
            z.data()[i] = f(in[0].data()[broadcast_offset(index, a)], in[1].data()[broadcast_offset(index, b)]);
        });
        return z;
    };
}

// --- sample helpers ---

// Smooth samples of an elementwise op over the shapes every elementwise op is checked on,
// inputs uniform on [lo, hi], plus an empty tensor.
std::vector<Sample> elementwise_samples(double lo, double hi, std::uint64_t seed);
// Smooth samples of a broadcasting op over adtest::broadcast_pairs(), inputs uniform on
// [lo, hi], plus an empty broadcast.
std::vector<Sample> broadcasting_samples(double lo, double hi, std::uint64_t seed);
// Binary ops refuse shapes that do not broadcast.
std::vector<Sample> non_broadcasting_pairs();

// The groups of entries, each in its own file.
void add_elementwise_ops(std::vector<Entry>& table);  // op_table_elementwise.cpp
void add_reduce_shape_ops(std::vector<Entry>& table); // op_table_reduce_shape.cpp
void add_nn_linalg_ops(std::vector<Entry>& table);    // op_table_nn_linalg.cpp
void add_conv_decomp_ops(std::vector<Entry>& table);  // op_table_conv_decomp.cpp

}  // namespace optable
