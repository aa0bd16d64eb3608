// Losses, each a composition of tape ops returning a scalar Var.
//
// Reduction::mean averages over the examples (or elements, as each function says), sum adds.
// All are stable for logits of any magnitude (1e4 gives a finite loss and gradient).
#pragma once

#include "autodiff/ops.hpp"

#include <cstdint>
#include <vector>

namespace ad::nn {

enum class Reduction { mean, sum };

// (pred - target)^2 over all elements, averaged or summed; shapes must be equal.
template <class T> Var<T> mse_loss(const Var<T>& pred, const Var<T>& target, Reduction r = Reduction::mean);
template <class T> Var<T> mse_loss(const Var<T>& pred, const Tensor<T>& target, Reduction r = Reduction::mean);

// Seed 003's cost 1/(2n) sum_i ||yhat_i - y_i||^2, n the number of examples (the first axis;
// the length of a vector of scalar predictions). Its gradient is (1/n) sum_i (yhat_i - y_i).
template <class T> Var<T> half_mse(const Var<T>& pred, const Var<T>& target);
template <class T> Var<T> half_mse(const Var<T>& pred, const Tensor<T>& target);

// Softmax cross-entropy -log softmax(logits_b)[label_b] for logits [batch, classes] and
// integer labels in [0, classes); mean over the batch or sum.
template <class T>
Var<T> cross_entropy_loss(const Var<T>& logits, const std::vector<std::int64_t>& labels,
                          Reduction r = Reduction::mean);

// Class labels held as floating-point numbers (read from a CSV, a one-column tensor), as the
// integers cross_entropy_loss takes. Any entry that is NaN, infinite, negative or not a whole
// number raises ad::Error naming its position and value; the range against the number of
// classes is checked by the loss. `labels` has rank 1, or rank 2 with one column.
template <class T>
std::vector<std::int64_t> labels_from(const Tensor<T>& labels);

// Cross-entropy with probability targets: -sum_k p_bk log softmax(logits_b)_k, targets shaped
// like the logits [batch, classes] (each row a distribution); mean over the batch or sum.
template <class T>
Var<T> soft_cross_entropy_loss(const Var<T>& logits, const Var<T>& targets, Reduction r = Reduction::mean);
template <class T>
Var<T> soft_cross_entropy_loss(const Var<T>& logits, const Tensor<T>& targets, Reduction r = Reduction::mean);

// Binary cross-entropy of sigmoid(x) against y in [0, 1], from the logits x:
// -y log sigmoid(x) - (1 - y) log(1 - sigmoid(x)) = softplus(x) - x y, elementwise; mean over
// all elements or sum. Shapes must be equal.
template <class T>
Var<T> bce_with_logits_loss(const Var<T>& logits, const Var<T>& targets, Reduction r = Reduction::mean);
template <class T>
Var<T> bce_with_logits_loss(const Var<T>& logits, const Tensor<T>& targets, Reduction r = Reduction::mean);

#define AD_NN_LOSS_EXTERN(T)                                                                       \
    extern template Var<T> mse_loss(const Var<T>&, const Var<T>&, Reduction);                      \
    extern template Var<T> mse_loss(const Var<T>&, const Tensor<T>&, Reduction);                   \
    extern template Var<T> half_mse(const Var<T>&, const Var<T>&);                                 \
    extern template Var<T> half_mse(const Var<T>&, const Tensor<T>&);                              \
    extern template Var<T> cross_entropy_loss(const Var<T>&, const std::vector<std::int64_t>&, Reduction); \
    extern template std::vector<std::int64_t> labels_from(const Tensor<T>&);                        \
    extern template Var<T> soft_cross_entropy_loss(const Var<T>&, const Var<T>&, Reduction);       \
    extern template Var<T> soft_cross_entropy_loss(const Var<T>&, const Tensor<T>&, Reduction);    \
    extern template Var<T> bce_with_logits_loss(const Var<T>&, const Var<T>&, Reduction);          \
    extern template Var<T> bce_with_logits_loss(const Var<T>&, const Tensor<T>&, Reduction);
AD_NN_LOSS_EXTERN(float)
AD_NN_LOSS_EXTERN(double)
#undef AD_NN_LOSS_EXTERN

}  // namespace ad::nn
