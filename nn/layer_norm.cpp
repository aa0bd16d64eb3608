#include "nn/layer_norm.hpp"

#include <xtensor/xbuilder.hpp>

namespace ad::nn {

template <class T>
LayerNorm<T>::LayerNorm(std::size_t features, T eps) : features_(features), eps_(eps)
{
    if (features == 0) throw Error("LayerNorm: features must be positive");
    if (!(eps >= T(0))) throw Error("LayerNorm: eps = " + std::to_string(eps) + " must be >= 0");
    weight_ = &this->register_parameter("weight", Tensor<T>(xt::ones<T>({features})));
    bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({features})));
}

template <class T>
Var<T> LayerNorm<T>::forward(const Var<T>& x)
{
    if (x.dimension() == 0 || x.shape()[x.dimension() - 1] != features_)
        throw Error("LayerNorm: input has shape " + shape_str(x.shape()) + ", expected the last axis to be " +
                    std::to_string(features_) + " features");
    return layer_norm(x, this->use(*weight_, x), this->use(*bias_, x), eps_);
}

template <class T>
std::string LayerNorm<T>::describe() const
{
    return "LayerNorm([" + std::to_string(features_) + "], eps=" + detail::number_str(double(eps_)) + ")";
}

template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace ad::nn
