#include "nn/conv_layers.hpp"

#include <xtensor/xbuilder.hpp>

#include <cmath>

namespace ad::nn {

template <class T>
Conv2d<T>::Conv2d(std::size_t in, std::size_t out, Size2 kernel, Rng& rng, const Conv2dOptions& options, bool bias)
    : in_(in), out_(out), options_(options)
{
    if (in == 0 || out == 0 || kernel[0] == 0 || kernel[1] == 0)
        throw Error("Conv2d: in, out and the kernel must be positive, got in = " + std::to_string(in) +
                    ", out = " + std::to_string(out) + ", kernel [" + std::to_string(kernel[0]) + ", " +
                    std::to_string(kernel[1]) + "]");
    if (options.groups == 0 || in % options.groups != 0 || out % options.groups != 0)
        throw Error("Conv2d: groups = " + std::to_string(options.groups) + " must be >= 1 and divide in = " +
                    std::to_string(in) + " and out = " + std::to_string(out));
    const Shape shape{out, in / options.groups, kernel[0], kernel[1]};
    weight_ = &this->register_parameter("weight", he_normal<T>(shape, rng));  // N(0, 2 / fan_in)
    if (bias) bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({out})));
}

template <class T>
Var<T> Conv2d<T>::forward(const Var<T>& x)
{
    if (x.dimension() != 4 || x.shape()[1] != in_)
        throw Error("Conv2d: input has shape " + shape_str(x.shape()) + ", expected [batch, " + std::to_string(in_) +
                    ", height, width]");
    const Var<T> w = this->use(*weight_, x);
    if (bias_) return conv2d(x, w, this->use(*bias_, x), options_);
    return conv2d(x, w, options_);
}

template class Conv2d<float>;
template class Conv2d<double>;

}  // namespace ad::nn
