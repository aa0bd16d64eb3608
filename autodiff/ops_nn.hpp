// Neural-network functions (softmax, losses, dropout, layer norm), declared for T = float and
// T = double; definitions, each with its vector-Jacobian product beside it, are in ops_nn.cpp.
#pragma once

#include "autodiff/ops_elementwise.hpp"  // Scalar
#include "autodiff/tape.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace ad {

template <class T> Var<T> softmax(const Var<T>& x, std::ptrdiff_t axis = -1);
template <class T> Var<T> log_softmax(const Var<T>& x, std::ptrdiff_t axis = -1);
// Mean over the batch of -log softmax(logits)[label]; logits [batch, classes], labels in
// [0, classes). Logits of higher rank [..., classes] take one label per position, in row-major
// order.
template <class T> Var<T> cross_entropy(const Var<T>& logits, const std::vector<std::int64_t>& labels);
// The same over every position of logits [..., classes]: labels has the logits' shape without
// the last axis ([B, T] labels for [B, T, V] logits), the mean taken over all B T positions.
template <class T> Var<T> cross_entropy(const Var<T>& logits, const xt::xarray<std::int64_t>& labels);
// cross_entropy(logits, {0, 3}): a braced list of labels is the vector form.
template <class T> Var<T> cross_entropy(const Var<T>& logits, std::initializer_list<std::int64_t> labels)
{
    return cross_entropy(logits, std::vector<std::int64_t>(labels));
}
// Rows of table [V, D] picked by ids of any shape: the result is ids.shape + [D]. Ids lie in
// [0, V); repeated ids add their gradients into the same row.
template <class T> Var<T> embedding(const Var<T>& table, const xt::xarray<std::int64_t>& ids);
// Mean over all elements of (pred - target)^2; the shapes must be equal.
template <class T> Var<T> mse(const Var<T>& pred, const Var<T>& target);
// x * mask / (1 - p): mask holds 0 (dropped) or 1 (kept), shaped like x; inverted scaling keeps
// the expectation equal to x.
template <class T> Var<T> dropout(const Var<T>& x, const Tensor<T>& mask, Scalar<T> p);

// Layer normalisation over the last axis, one op: (x - mean) / sqrt(var + eps) * gamma + beta,
// mean and the biased (1/n) variance taken per row of n features; gamma and beta of shape [n].
template <class T> Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Scalar<T> eps = T(1e-5));

}  // namespace ad
