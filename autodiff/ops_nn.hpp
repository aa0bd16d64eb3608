// Neural-network functions (softmax, losses, dropout, layer norm), declared for T = float and
// T = double; definitions, each with its vector-Jacobian product beside it, are in ops_nn.cpp.
#pragma once

#include "autodiff/ops_elementwise.hpp"  // Scalar
#include "autodiff/tape.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ad {

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

}  // namespace ad
