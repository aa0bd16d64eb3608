// Batch normalisation of [batch, features] inputs (seed 001 names it; PyTorch's BatchNorm1d):
//
//   training:   y = (x - mean_b(x)) / sqrt(var_b(x) + eps) * gain + bias,
//               statistics over the batch axis, var_b biased (1/B);
//               running_mean <- (1 - momentum) running_mean + momentum mean_b,
//               running_var  <- (1 - momentum) running_var  + momentum var_b * B / (B - 1)
//               (the unbiased variance, as PyTorch keeps it);
//   evaluation: y = (x - running_mean) / sqrt(running_var + eps) * gain + bias.
//
// Parameters "gain" (ones) and "bias" (zeros); the running statistics are buffers
// "running_mean" (zeros) and "running_var" (ones): saved in checkpoints, never trained.
#pragma once

#include "autodiff/ops_conv.hpp"
#include "nn/module.hpp"

namespace ad::nn {

template <class T>
class BatchNorm1d : public Module<T> {
public:
    explicit BatchNorm1d(std::size_t features, T momentum = T(0.1), T eps = T(1e-5));
    Var<T> forward(const Var<T>& x) override;

    Parameter<T>& gain() { return *gain_; }
    Parameter<T>& bias() { return *bias_; }
    const Tensor<T>& running_mean() const { return *running_mean_; }
    const Tensor<T>& running_var() const { return *running_var_; }

private:
    std::size_t features_;
    T momentum_, eps_;
    Parameter<T>* gain_;
    Parameter<T>* bias_;
    Tensor<T>* running_mean_;
    Tensor<T>* running_var_;
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
// Parameters "weight" (ones), "bias" (zeros); buffers "running_mean" (zeros), "running_var" (ones).
template <class T>
class BatchNorm2d : public Module<T> {
public:
    explicit BatchNorm2d(std::size_t channels, T momentum = T(0.1), T eps = T(1e-5));
    Var<T> forward(const Var<T>& x) override;

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>& bias() { return *bias_; }
    const Tensor<T>& running_mean() const { return *running_mean_; }
    const Tensor<T>& running_var() const { return *running_var_; }

private:
    std::size_t channels_;
    T momentum_, eps_;
    Parameter<T>* weight_;
    Parameter<T>* bias_;
    Tensor<T>* running_mean_;
    Tensor<T>* running_var_;
    BatchStats<T> stats_;             // the last batch's statistics, reused every step
    Tensor<T> eval_scale_, eval_shift_;  // evaluation mode: per-channel factors as [1, C, 1, 1]
};

extern template class BatchNorm2d<float>;
extern template class BatchNorm2d<double>;

}  // namespace ad::nn
