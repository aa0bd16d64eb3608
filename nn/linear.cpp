#include "nn/linear.hpp"

#include <cmath>

namespace ad::nn {

template <class T>
Linear<T>::Linear(std::size_t in, std::size_t out, Rng& rng, Bias bias) : in_(in), out_(out)
{
    build(rng, {}, bias.on);
}

template <class T>
void Linear<T>::build(Rng& rng, const WeightInit<T>& init, bool bias)
{
    const std::size_t in = in_, out = out_;
    if (in == 0 || out == 0)
        throw Error("Linear: in and out must be positive, got in = " + std::to_string(in) +
                    ", out = " + std::to_string(out));
    if (!init) {
        // kaiming_uniform(a = sqrt(5)): gain sqrt(2 / (1 + a^2)) = sqrt(1/3), bound
        // gain sqrt(3 / in) = 1 / sqrt(in).
        const T bound = T(1) / std::sqrt(T(in));
        weight_ = &this->register_parameter("weight", uniform<T>({out, in}, -bound, bound, rng));
        if (bias) bias_ = &this->register_parameter("bias", uniform<T>({out}, -bound, bound, rng));
        return;
    }
    Tensor<T> w = init(Shape{out, in}, rng);
    if (!equal_shapes(w.shape(), Shape{out, in}))
        throw Error("Linear: the weight initialiser returned shape " + shape_str(w.shape()) +
                    ", expected [out, in] = " + shape_str(Shape{out, in}));
    weight_ = &this->register_parameter("weight", std::move(w));
    if (bias) bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({out})));
}

template <class T>
std::string Linear<T>::describe() const
{
    return "Linear(in_features=" + std::to_string(in_) + ", out_features=" + std::to_string(out_) +
           ", bias=" + (bias_ ? "true" : "false") + ")";
}

template <class T>
Linear<T>::Linear(Tensor<T> weight, Tensor<T> bias)
{
    if (weight.dimension() != 2 || weight.size() == 0)
        throw Error("Linear: weight has shape " + shape_str(weight.shape()) +
                    ", expected a non-empty matrix [out, in]");
    out_ = weight.shape()[0];
    in_ = weight.shape()[1];
    if (bias.size() != 0 && !equal_shapes(bias.shape(), Shape{out_}))
        throw Error("Linear: bias has shape " + shape_str(bias.shape()) + ", expected [out] = " +
                    shape_str(Shape{out_}) + " for weight " + shape_str(weight.shape()));
    weight_ = &this->register_parameter("weight", std::move(weight));
    if (bias.size() != 0) bias_ = &this->register_parameter("bias", std::move(bias));
}

template <class T>
Var<T> Linear<T>::forward(const Var<T>& x)
{
    const auto d = x.dimension();
    if (d == 0 || x.shape()[d - 1] != in_)
        throw Error("Linear: input has shape " + shape_str(x.shape()) + ", expected [batch, " + std::to_string(in_) +
                    "], [..., " + std::to_string(in_) + "] or [" + std::to_string(in_) + "]");
    const Var<T> W = this->use(*weight_, x);
    if (bias_) return affine(x, W, this->use(*bias_, x));  // x W^T + b (or W x + b) as one op
    return d >= 2 ? matmul(x, W, transpose_b) : matmul(W, x);  // x W^T (one GEMM for all rows), or W x
}

template class Linear<float>;
template class Linear<double>;

}  // namespace ad::nn
