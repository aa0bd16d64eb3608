// Convolutional building blocks on NCHW inputs ([batch, channels, height, width]), each a
// composition of the ops of autodiff/conv.hpp; their gradients come from the engine.
//
//   Conv2d       y = conv2d(x, weight) + bias; weight [out, in / groups, kh, kw], bias [out].
//                Weights start He-normal by fan-in, N(0, 2 / (in / groups kh kw)), biases at 0.
//   MaxPool2d    the maximum of each window (stride defaults to the kernel, as in PyTorch).
//   AvgPool2d    the mean of each window, padding counted as zeros.
//   GlobalAvgPool2d  [N, C, H, W] -> [N, C], the mean of each plane.
//   Flatten      [N, ...] -> [N, rest], between the convolutions and the linear layers.
//   BatchNorm2d  per channel over batch and pixels (PyTorch's BatchNorm2d):
//                training:   y = (x - mean_b) / sqrt(var_b + eps) weight + bias (one op,
//                            batch_norm2d), var_b biased; running_mean <- (1 - momentum)
//                            running_mean + momentum mean_b, running_var likewise with the
//                            unbiased variance var_b m / (m - 1), m = N H W;
//                evaluation: the same map with the running statistics.
//                Parameters "weight" (ones), "bias" (zeros); buffers "running_mean" (zeros),
//                "running_var" (ones) and "num_batches_tracked" (shape (), the number of
//                training passes): PyTorch's state-dict keys (nn/batch_norm.hpp says why the count).
#pragma once

#include "autodiff/conv.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

namespace ad::nn {

template <class T>
class Conv2d : public Module<T> {
public:
    Conv2d(std::size_t in, std::size_t out, Size2 kernel, Rng& rng, const Conv2dOptions& options = {},
           bool bias = true);
    Conv2d(std::size_t in, std::size_t out, std::size_t kernel, Rng& rng, const Conv2dOptions& options = {},
           bool bias = true)
        : Conv2d(in, out, Size2{kernel, kernel}, rng, options, bias) {}
    Var<T> forward(const Var<T>& x) override;

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>* bias() { return bias_; }  // nullptr without a bias
    const Conv2dOptions& options() const { return options_; }

private:
    std::size_t in_, out_;
    Conv2dOptions options_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
};

template <class T>
class MaxPool2d : public Module<T> {
public:
    explicit MaxPool2d(const Pool2dOptions& o) : options_(o) {}
    explicit MaxPool2d(std::size_t kernel) : options_(kernel) {}
    Var<T> forward(const Var<T>& x) override { return max_pool2d(x, options_); }

private:
    Pool2dOptions options_;
};

template <class T>
class AvgPool2d : public Module<T> {
public:
    explicit AvgPool2d(const Pool2dOptions& o) : options_(o) {}
    explicit AvgPool2d(std::size_t kernel) : options_(kernel) {}
    Var<T> forward(const Var<T>& x) override { return avg_pool2d(x, options_); }

private:
    Pool2dOptions options_;
};

template <class T>
class GlobalAvgPool2d : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return global_avg_pool2d(x); }
};

template <class T>
class Flatten : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return flatten(x); }
};

template <class T>
class BatchNorm2d : public Module<T> {
public:
    explicit BatchNorm2d(std::size_t channels, T momentum = T(0.1), T eps = T(1e-5));
    Var<T> forward(const Var<T>& x) override;

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

extern template class Conv2d<float>;
extern template class Conv2d<double>;
extern template class BatchNorm2d<float>;
extern template class BatchNorm2d<double>;

}  // namespace ad::nn
