#include "nn/conv_layers.hpp"

#include <xtensor/xbuilder.hpp>

#include <cmath>

namespace ad::nn {

template <class T>
Conv2d<T>::Conv2d(std::size_t in, std::size_t out, Size2 kernel, Rng& rng, const Conv2dOptions& options, Bias bias)
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
    if (bias.on) bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({out})));
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

std::string detail::size2_str(Size2 s)
{
    return "[" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + "]";
}

std::string detail::describe_pool(const char* name, const Pool2dOptions& o)
{
    return std::string(name) + "(kernel_size=" + size2_str(o.kernel) + ", stride=" + size2_str(o.stride) +
           ", padding=" + size2_str(o.padding) + ")";
}

template <class T>
std::string Conv2d<T>::describe() const
{
    const auto& w = weight_->value().shape();
    std::string s = "Conv2d(" + std::to_string(in_) + ", " + std::to_string(out_) + ", kernel_size=" +
                    detail::size2_str(Size2{w[2], w[3]}) + ", stride=" + detail::size2_str(options_.stride);
    if (options_.padding != Size2{0, 0}) s += ", padding=" + detail::size2_str(options_.padding);
    if (options_.dilation != Size2{1, 1}) s += ", dilation=" + detail::size2_str(options_.dilation);
    if (options_.groups != 1) s += ", groups=" + std::to_string(options_.groups);
    if (!bias_) s += ", bias=false";
    return s + ")";
}

template class Conv2d<float>;
template class Conv2d<double>;

}  // namespace ad::nn
