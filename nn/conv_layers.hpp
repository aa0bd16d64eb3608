// Convolutional building blocks on NCHW inputs ([batch, channels, height, width]), each a
// composition of the ops of autodiff/ops_conv.hpp; their gradients come from the engine.
//
//   Conv2d       y = conv2d(x, weight) + bias; weight [out, in / groups, kh, kw], bias [out].
//                Weights start He-normal by fan-in, N(0, 2 / (in / groups kh kw)), biases at 0.
//   MaxPool2d    the maximum of each window (stride defaults to the kernel, as in PyTorch).
//   AvgPool2d    the mean of each window, padding counted as zeros.
//   GlobalAvgPool2d  [N, C, H, W] -> [N, C], the mean of each plane.
//   Flatten      [N, ...] -> [N, rest], between the convolutions and the linear layers.
#pragma once

#include "autodiff/ops_conv.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

namespace ad::nn {

namespace detail {
std::string size2_str(Size2 s);  // "[3, 3]"
// "MaxPool2d(kernel_size=[2, 2], stride=[2, 2], padding=[0, 0])"
std::string describe_pool(const char* name, const Pool2dOptions& o);
}  // namespace detail

template <class T>
class Conv2d : public Module<T> {
public:
    Conv2d(std::size_t in, std::size_t out, Size2 kernel, Rng& rng, const Conv2dOptions& options = {},
           Bias bias = {});
    Conv2d(std::size_t in, std::size_t out, std::size_t kernel, Rng& rng, const Conv2dOptions& options = {},
           Bias bias = {})
        : Conv2d(in, out, Size2{kernel, kernel}, rng, options, bias) {}
    Var<T> forward(const Var<T>& x) override;
    // "Conv2d(1, 8, kernel_size=[3, 3], stride=[1, 1], padding=[1, 1])"; padding, dilation,
    // groups and bias shown only when not the default.
    std::string describe() const override;

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
    std::string describe() const override { return detail::describe_pool("MaxPool2d", options_); }

private:
    Pool2dOptions options_;
};

template <class T>
class AvgPool2d : public Module<T> {
public:
    explicit AvgPool2d(const Pool2dOptions& o) : options_(o) {}
    explicit AvgPool2d(std::size_t kernel) : options_(kernel) {}
    Var<T> forward(const Var<T>& x) override { return avg_pool2d(x, options_); }
    std::string describe() const override { return detail::describe_pool("AvgPool2d", options_); }

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

extern template class Conv2d<float>;
extern template class Conv2d<double>;

}  // namespace ad::nn
