// Batch normalisation of [batch, features] inputs (seed 001 names it; PyTorch's BatchNorm1d):
//
//   training:   y = (x - mean_b(x)) / sqrt(var_b(x) + eps) * weight + bias,
//               statistics over the batch axis, var_b biased (1/B);
//               running_mean <- (1 - momentum) running_mean + momentum mean_b,
//               running_var  <- (1 - momentum) running_var  + momentum var_b * B / (B - 1)
//               (the unbiased variance, as PyTorch keeps it);
//   evaluation: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
//
// The training map is one ad::batch_norm2d op (which takes [N, C] as well as [N, C, H, W]).
//
// PyTorch's names and shapes, so a torch.nn.BatchNorm1d(features) state dict loads as it is:
// parameters "weight" (ones) and "bias" (zeros), [features]; buffers (saved, never trained)
// "running_mean" (zeros), "running_var" (ones), [features], and "num_batches_tracked", shape (),
// the number of training passes. PyTorch reads that count only when momentum is None (a
// cumulative average), which this module does not offer: it is kept so that the keys match
// both ways. It is held in T like every buffer (saved as '<f4' or '<f8'; PyTorch's int64 loads
// into it and a float one loads into PyTorch); in float it stops counting at 2^24 passes.
#pragma once

#include "autodiff/ops_conv.hpp"
#include "nn/module.hpp"

namespace ad::nn {

template <class T>
class BatchNorm1d : public Module<T> {
public:
    explicit BatchNorm1d(std::size_t features, T momentum = T(0.1), T eps = T(1e-5));
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;  // "BatchNorm1d(64, eps=1e-05, momentum=0.1)"

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>& bias() { return *bias_; }
    const Tensor<T>& running_mean() const { return *running_mean_; }
    const Tensor<T>& running_var() const { return *running_var_; }
    const Tensor<T>& num_batches_tracked() const { return *num_batches_tracked_; }

private:
    std::size_t features_;
    T momentum_, eps_;
    Parameter<T>* weight_;
    Parameter<T>* bias_;
    Tensor<T>* running_mean_;
    Tensor<T>* running_var_;
    Tensor<T>* num_batches_tracked_;
    BatchStats<T> stats_;  // the last batch's statistics
};

extern template class BatchNorm1d<float>;
extern template class BatchNorm1d<double>;

// Batch normalisation of NCHW inputs, per channel over batch and pixels (PyTorch's BatchNorm2d):
//
//   training:   y = (x - mean_b) / sqrt(var_b + eps) weight + bias (one op, batch_norm2d),
//               var_b biased; running_mean <- (1 - momentum) running_mean + momentum mean_b,
//               running_var likewise with the unbiased variance var_b m / (m - 1), m = N H W;
//   evaluation: the same map with the running statistics.
//
// Parameters "weight" (ones), "bias" (zeros); buffers "running_mean" (zeros), "running_var" (ones)
// and "num_batches_tracked" (shape (), the number of training passes): PyTorch's state-dict keys
// (BatchNorm1d above says why the count).
template <class T>
class BatchNorm2d : public Module<T> {
public:
    explicit BatchNorm2d(std::size_t channels, T momentum = T(0.1), T eps = T(1e-5));
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;  // "BatchNorm2d(8, eps=1e-05, momentum=0.1)"

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>& bias() { return *bias_; }
    const Tensor<T>& running_mean() const { return *running_mean_; }
    const Tensor<T>& running_var() const { return *running_var_; }
    const Tensor<T>& num_batches_tracked() const { return *num_batches_tracked_; }

private:
    std::size_t channels_;
    T momentum_, eps_;
    Parameter<T>* weight_;
    Parameter<T>* bias_;
    Tensor<T>* running_mean_;
    Tensor<T>* running_var_;
    Tensor<T>* num_batches_tracked_;
    BatchStats<T> stats_;             // the last batch's statistics, reused every step
    Tensor<T> eval_scale_, eval_shift_;  // evaluation mode: per-channel factors as [1, C, 1, 1]
};

extern template class BatchNorm2d<float>;
extern template class BatchNorm2d<double>;

}  // namespace ad::nn
