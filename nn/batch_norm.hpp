// Batch normalisation (seed 001 names it; PyTorch's BatchNorm1d and BatchNorm2d), per channel:
//
//   training:   y = (x - mean_b(x)) / sqrt(var_b(x) + eps) * weight + bias, one ad::batch_norm2d
//               op, the statistics over every axis but the channel axis 1, var_b biased (1/m);
//               running_mean <- (1 - momentum) running_mean + momentum mean_b,
//               running_var  <- (1 - momentum) running_var  + momentum var_b * m / (m - 1)
//               (the unbiased variance, as PyTorch keeps it), m the values per channel;
//   evaluation: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, one
//               ad::channel_affine op whose per-channel factors fold the statistics, weight and bias.
//
// BatchNorm1d takes [batch, features], BatchNorm2d [batch, channels, height, width] (and
// [batch, channels]). PyTorch's names and shapes, so their state dicts load as they are:
// parameters "weight" (ones) and "bias" (zeros), [C]; buffers (saved, never trained)
// "running_mean" (zeros), "running_var" (ones), [C], and "num_batches_tracked", shape (), the
// number of training passes. PyTorch reads that count only when momentum is None (a cumulative
// average), which these modules do not offer: it is kept so that the keys match both ways. It is
// held in T like every buffer (saved as '<f4' or '<f8'; PyTorch's int64 loads into it and a
// float one loads into PyTorch); in float it stops counting at 2^24 passes.
#pragma once

#include "autodiff/ops_conv.hpp"
#include "nn/module.hpp"

#include <string>

namespace ad::nn {

// What the two modules share (PyTorch's _BatchNorm): parameters, buffers and the map itself.
template <class T>
class BatchNorm : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    // "BatchNorm1d(64, eps=1e-05, momentum=0.1)"
    std::string describe() const override;

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>& bias() { return *bias_; }
    const Tensor<T>& running_mean() const { return *running_mean_; }
    const Tensor<T>& running_var() const { return *running_var_; }
    const Tensor<T>& num_batches_tracked() const { return *num_batches_tracked_; }
    std::size_t num_features() const { return features_; }

protected:
    // name: the class name, for messages; spatial: the axes after the channel axis, as the
    // message that refuses an input names them (", height, width").
    BatchNorm(const char* name, const char* spatial, std::size_t features, T momentum, T eps);
    virtual bool accepts_rank(std::size_t rank) const = 0;

private:
    const char* name_;
    const char* spatial_;
    std::size_t features_;
    T momentum_, eps_;
    Parameter<T>* weight_;
    Parameter<T>* bias_;
    Tensor<T>* running_mean_;
    Tensor<T>* running_var_;
    Tensor<T>* num_batches_tracked_;
    BatchStats<T> stats_;  // the last batch's statistics, reused every step
    Tensor<T> eval_rstd_;  // evaluation mode: 1 / sqrt(running_var + eps), reused every step
};

template <class T>
class BatchNorm1d : public BatchNorm<T> {
public:
    explicit BatchNorm1d(std::size_t features, T momentum = T(0.1), T eps = T(1e-5))
        : BatchNorm<T>("BatchNorm1d", "", features, momentum, eps)
    {
    }

private:
    bool accepts_rank(std::size_t rank) const override { return rank == 2; }
};

template <class T>
class BatchNorm2d : public BatchNorm<T> {
public:
    explicit BatchNorm2d(std::size_t channels, T momentum = T(0.1), T eps = T(1e-5))
        : BatchNorm<T>("BatchNorm2d", ", height, width", channels, momentum, eps)
    {
    }

private:
    bool accepts_rank(std::size_t rank) const override { return rank == 4 || rank == 2; }
};

extern template class BatchNorm<float>;
extern template class BatchNorm<double>;

}  // namespace ad::nn
