#include "nn/batch_norm.hpp"

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

namespace ad::nn {

template <class T>
BatchNorm<T>::BatchNorm(const char* name, const char* spatial, std::size_t features, T momentum, T eps)
    : name_(name), spatial_(spatial), features_(features), momentum_(momentum), eps_(eps)
{
    const std::string n = name;
    if (features == 0) throw Error(n + ": the number of channels must be positive");
    if (!(momentum >= T(0) && momentum <= T(1)))
        throw Error(n + ": momentum = " + std::to_string(momentum) + " is outside [0, 1]");
    if (!(eps >= T(0))) throw Error(n + ": eps = " + std::to_string(eps) + " must be >= 0");
    weight_ = &this->register_parameter("weight", Tensor<T>(xt::ones<T>({features})));
    bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({features})));
    running_mean_ = &this->register_buffer("running_mean", Tensor<T>(xt::zeros<T>({features})));
    running_var_ = &this->register_buffer("running_var", Tensor<T>(xt::ones<T>({features})));
    num_batches_tracked_ = &this->register_buffer("num_batches_tracked", Tensor<T>(T(0)));
}

template <class T>
Var<T> BatchNorm<T>::forward(const Var<T>& x)
{
    const std::string n = name_;
    if (!accepts_rank(x.dimension()) || x.shape()[1] != features_)
        throw Error(n + ": input has shape " + shape_str(x.shape()) + ", expected [batch, " +
                    std::to_string(features_) + spatial_ + "]");
    const std::size_t m = x.size() / features_;  // values per channel
    if (this->training()) {
        if (m < 2)
            throw Error(n + ": training needs at least 2 values per channel to estimate a variance, got shape " +
                        shape_str(x.shape()));
        Var<T> y = batch_norm2d(x, this->use(*weight_, x), this->use(*bias_, x), eps_, &stats_);
        // The running statistics are plain tensors updated from the values: no gradient.
        const T unbias = T(m) / T(m - 1);
        *running_mean_ = (T(1) - momentum_) * *running_mean_ + momentum_ * stats_.mean;
        *running_var_ = (T(1) - momentum_) * *running_var_ + (momentum_ * unbias) * stats_.var;
        *num_batches_tracked_ += T(1);
        return y;
    }
    // Evaluation: y = x s + b per channel, one channel_affine op, with s = weight rstd and
    // b = bias - s running_mean, rstd = 1 / sqrt(running_var + eps) (PyTorch folds them the same
    // way). s and b are tape ops on [C], so weight and bias get their gradients through them.
    xt::noalias(eval_rstd_) = T(1) / xt::sqrt(*running_var_ + eps_);
    Tape<T>& tape = x.tape();
    const Var<T> scale = this->use(*weight_, x) * tape.constant(eval_rstd_);
    const Var<T> shift = this->use(*bias_, x) - scale * tape.constant(*running_mean_);
    return channel_affine(x, scale, shift);
}

template <class T>
std::string BatchNorm<T>::describe() const
{
    return std::string(name_) + "(" + std::to_string(features_) + ", eps=" + detail::number_str(double(eps_)) +
           ", momentum=" + detail::number_str(double(momentum_)) + ")";
}

template class BatchNorm<float>;
template class BatchNorm<double>;

}  // namespace ad::nn
