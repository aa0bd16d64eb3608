// Every differentiable op, declared for T = float and T = double. Definitions, each with its
// vector-Jacobian product beside it, are in ops_*.cpp. Binary ops broadcast like NumPy.
//
// Choices at points where an op is not differentiable (each matches PyTorch):
//   relu'(0) = 0; abs'(0) = 0; leaky_relu'(0) = alpha; elu'(0) = alpha;
//   maximum/minimum with a tie split the gradient equally between the two inputs;
//   max along an axis with ties sends the gradient to the first maximal element;
//   clamp passes the gradient where lo <= x <= hi, boundaries included;
//   norm(x) at x = 0 has gradient 0; sqrt'(0) = +inf.
// NaN propagates (as in PyTorch): relu, maximum, minimum, clamp and max along an axis give NaN
// where an input is NaN (max: for the whole slice) and leave every other element as it would
// be. Gradients there follow PyTorch too: maximum and minimum pass g to both operands, clamp
// passes 0.
//
// Second derivatives: every op here states a differentiable VJP (autodiff/op.hpp), so
// ad::create_graph sweeps differentiate to any order. Ops whose derivative is a step function
// (relu, leaky_relu, abs, clamp, maximum, minimum, max along an axis, dropout) have second
// derivative exactly 0; at the kinks the first-order choices above hold.
#pragma once

#include "autodiff/tape.hpp"

#include <cstdint>
#include <type_traits>
#include <vector>

namespace ad {

// A scalar argument takes its type from the Var beside it (so x * 2.0 works for Var<float>).
template <class T>
using Scalar = typename std::common_type<T>::type;

// --- elementwise (ops_elementwise.cpp) ---
template <class T> Var<T> neg(const Var<T>& x);
template <class T> Var<T> add(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> sub(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> mul(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> div(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> add(const Var<T>& x, Scalar<T> s);  // x + s
template <class T> Var<T> mul(const Var<T>& x, Scalar<T> s);  // s x
template <class T> Var<T> div(const Var<T>& x, Scalar<T> s);   // x / s
template <class T> Var<T> sub(Scalar<T> s, const Var<T>& x);   // s - x
template <class T> Var<T> rdiv(Scalar<T> s, const Var<T>& x);  // s / x
template <class T> Var<T> pow(const Var<T>& x, Scalar<T> p);   // x^p, p a scalar constant
template <class T> Var<T> square(const Var<T>& x);
template <class T> Var<T> sqrt(const Var<T>& x);
template <class T> Var<T> exp(const Var<T>& x);
template <class T> Var<T> log(const Var<T>& x);
template <class T> Var<T> abs(const Var<T>& x);
template <class T> Var<T> sin(const Var<T>& x);
template <class T> Var<T> cos(const Var<T>& x);
template <class T> Var<T> maximum(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> minimum(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> clamp(const Var<T>& x, Scalar<T> lo, Scalar<T> hi);
template <class T> Var<T> tanh(const Var<T>& x);
template <class T> Var<T> sigmoid(const Var<T>& x);
template <class T> Var<T> relu(const Var<T>& x);
template <class T> Var<T> leaky_relu(const Var<T>& x, Scalar<T> alpha = T(0.01));
template <class T> Var<T> elu(const Var<T>& x, Scalar<T> alpha = T(1));
template <class T> Var<T> selu(const Var<T>& x);
template <class T> Var<T> softplus(const Var<T>& x);  // log(1 + e^x), stable for large |x|
template <class T> Var<T> gelu(const Var<T>& x);      // x Phi(x), the exact (erf) form
template <class T> Var<T> normal_cdf(const Var<T>& x);  // Phi(x) = erfc(-x / sqrt 2) / 2

// --- linear algebra (ops_linalg.cpp) ---
// matmul: [m,k]x[k,n] -> [m,n]; [m,k]x[k] -> [m]; [k]x[k,n] -> [n]; [k]x[k] -> scalar.
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b);
// op(a) op(b) for matrices, op transposing where asked: BLAS reads the transpose in place, so
// x W^T for a [out, in] weight costs no copy of W.
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b);
// x W^T + b, one op (a linear layer): x [batch, in] or [in], W [out, in], b [out]. The bias is
// written into the output and the product added to it, so it costs no pass of its own.
template <class T> Var<T> affine(const Var<T>& x, const Var<T>& W, const Var<T>& b);
template <class T> Var<T> transpose(const Var<T>& x);  // reverses the axes, like NumPy's .T

// --- reductions (ops_reduce.cpp); a negative axis counts from the end ---
template <class T> Var<T> sum(const Var<T>& x);  // all elements, shape []
template <class T> Var<T> sum(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> mean(const Var<T>& x);
template <class T> Var<T> mean(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> max(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> logsumexp(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> norm(const Var<T>& x);  // L2 norm of all elements, shape []

// --- shape (ops_shape.cpp) ---
// One entry of `shape` may be -1: it is inferred from the size.
template <class T> Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape);
// Elements start <= i < stop along `axis`; negative start/stop count from the end.
template <class T> Var<T> slice(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t start, std::ptrdiff_t stop);
template <class T> Var<T> concat(const std::vector<Var<T>>& xs, std::ptrdiff_t axis);
template <class T> Var<T> concat(std::initializer_list<Var<T>> xs, std::ptrdiff_t axis)
{
    return concat(std::vector<Var<T>>(xs), axis);
}
template <class T> Var<T> broadcast_to(const Var<T>& x, const Shape& shape);
// broadcast_to in reverse: x summed over the axes broadcasting would add or stretch to reach
// x's shape from `shape` (the VJP of every broadcasting op).
template <class T> Var<T> sum_to(const Var<T>& x, const Shape& shape);
// Rows x[idx[0]], x[idx[1]], ... along axis 0; repeated indices add their gradients.
template <class T> Var<T> gather_rows(const Var<T>& x, const std::vector<std::size_t>& idx);
// gather_rows in reverse: a tensor of `rows` rows, zero but for row idx[i] += x[i].
template <class T> Var<T> scatter_add_rows(const Var<T>& x, const std::vector<std::size_t>& idx, std::size_t rows);
// x's slices idx[0], idx[1], ... along `axis` (PyTorch's index_select): the axis takes
// idx.size(); indices may repeat (their gradients add) and come in any order.
template <class T> Var<T> index_select(const Var<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& idx);
// index_select in reverse: zeros with `size` along `axis`, x's slice k added at idx[k] (PyTorch's
// zeros(...).index_add_(axis, idx, x)); x has idx.size() along the axis.
template <class T> Var<T> index_add(const Var<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& idx, std::size_t size);
// x[..., i, ...]: the slice i along `axis`, the axis dropped (PyTorch's select; x[i] is
// select(x, 0, i)); a negative i counts from the end.
template <class T> Var<T> select(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t i);

// --- neural-network functions (ops_nn.cpp) ---
template <class T> Var<T> softmax(const Var<T>& x, std::ptrdiff_t axis = -1);
template <class T> Var<T> log_softmax(const Var<T>& x, std::ptrdiff_t axis = -1);
// Mean over the batch of -log softmax(logits)[label]; logits [batch, classes], labels in
// [0, classes).
template <class T> Var<T> cross_entropy(const Var<T>& logits, const std::vector<std::int64_t>& labels);
// Mean over all elements of (pred - target)^2; the shapes must be equal.
template <class T> Var<T> mse(const Var<T>& pred, const Var<T>& target);
// x * mask / (1 - p): mask holds 0 (dropped) or 1 (kept), shaped like x; inverted scaling keeps
// the expectation equal to x.
template <class T> Var<T> dropout(const Var<T>& x, const Tensor<T>& mask, Scalar<T> p);

// Layer normalisation over the last axis, one op: (x - mean) / sqrt(var + eps) * gamma + beta,
// mean and the biased (1/n) variance taken per row of n features; gamma and beta of shape [n].
template <class T> Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Scalar<T> eps = T(1e-5));

// detach: the same value as a constant, cut from the graph.
template <class T> Var<T> detach(const Var<T>& x);

// --- operators ---
template <class T> Var<T> operator-(const Var<T>& x) { return neg(x); }
template <class T> Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
template <class T> Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
template <class T> Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
template <class T> Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
template <class T> Var<T> operator+(const Var<T>& x, Scalar<T> s) { return add(x, s); }
template <class T> Var<T> operator+(Scalar<T> s, const Var<T>& x) { return add(x, s); }
template <class T> Var<T> operator-(const Var<T>& x, Scalar<T> s) { return add(x, -s); }
template <class T> Var<T> operator-(Scalar<T> s, const Var<T>& x) { return sub(s, x); }
template <class T> Var<T> operator*(const Var<T>& x, Scalar<T> s) { return mul(x, s); }
template <class T> Var<T> operator*(Scalar<T> s, const Var<T>& x) { return mul(x, s); }
template <class T> Var<T> operator/(const Var<T>& x, Scalar<T> s) { return div(x, s); }
template <class T> Var<T> operator/(Scalar<T> s, const Var<T>& x) { return rdiv(s, x); }

}  // namespace ad
