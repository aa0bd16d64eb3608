#include "nn/batch_norm.hpp"

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

namespace ad::nn {

template <class T>
BatchNorm1d<T>::BatchNorm1d(std::size_t features, T momentum, T eps)
    : features_(features), momentum_(momentum), eps_(eps)
{
    if (features == 0) throw Error("BatchNorm1d: features must be positive");
    if (!(momentum >= T(0) && momentum <= T(1)))
        throw Error("BatchNorm1d: momentum = " + std::to_string(momentum) + " is outside [0, 1]");
    if (!(eps >= T(0))) throw Error("BatchNorm1d: eps = " + std::to_string(eps) + " must be >= 0");
    weight_ = &this->register_parameter("weight", Tensor<T>(xt::ones<T>({features})));
    bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({features})));
    running_mean_ = &this->register_buffer("running_mean", Tensor<T>(xt::zeros<T>({features})));
    running_var_ = &this->register_buffer("running_var", Tensor<T>(xt::ones<T>({features})));
    num_batches_tracked_ = &this->register_buffer("num_batches_tracked", Tensor<T>(T(0)));
}

template <class T>
Var<T> BatchNorm1d<T>::forward(const Var<T>& x)
{
    if (x.dimension() != 2 || x.shape()[1] != features_)
        throw Error("BatchNorm1d: input has shape " + shape_str(x.shape()) + ", expected [batch, " +
                    std::to_string(features_) + "]");
    const std::size_t B = x.shape()[0];
    if (this->training()) {
        if (B < 2)
            throw Error("BatchNorm1d: training needs a batch of at least 2 to estimate a variance, got shape " +
                        shape_str(x.shape()));
        Var<T> y = batch_norm2d(x, this->use(*weight_, x), this->use(*bias_, x), eps_, &stats_);
        // The running statistics are plain tensors updated from the values: no gradient.
        const T unbias = T(B) / T(B - 1);
        *running_mean_ = (T(1) - momentum_) * *running_mean_ + momentum_ * stats_.mean;
        *running_var_ = (T(1) - momentum_) * *running_var_ + (momentum_ * unbias) * stats_.var;
        *num_batches_tracked_ += T(1);
        return y;
    }
    Tape<T>& tape = x.tape();
    const Tensor<T> scale = T(1) / xt::sqrt(*running_var_ + eps_);
    const Var<T> normalised = (x - tape.constant(*running_mean_)) * tape.constant(scale);
    return normalised * this->use(*weight_, x) + this->use(*bias_, x);
}

template <class T>
std::string BatchNorm1d<T>::describe() const
{
    return "BatchNorm1d(" + std::to_string(features_) + ", eps=" + detail::number_str(double(eps_)) +
           ", momentum=" + detail::number_str(double(momentum_)) + ")";
}

template <class T>
std::string BatchNorm2d<T>::describe() const
{
    return "BatchNorm2d(" + std::to_string(channels_) + ", eps=" + detail::number_str(double(eps_)) +
           ", momentum=" + detail::number_str(double(momentum_)) + ")";
}

template class BatchNorm1d<float>;
template class BatchNorm1d<double>;

template <class T>
BatchNorm2d<T>::BatchNorm2d(std::size_t channels, T momentum, T eps)
    : channels_(channels), momentum_(momentum), eps_(eps)
{
    if (channels == 0) throw Error("BatchNorm2d: channels must be positive");
    if (!(momentum >= T(0) && momentum <= T(1)))
        throw Error("BatchNorm2d: momentum = " + std::to_string(momentum) + " is outside [0, 1]");
    if (!(eps >= T(0))) throw Error("BatchNorm2d: eps = " + std::to_string(eps) + " must be >= 0");
    weight_ = &this->register_parameter("weight", Tensor<T>(xt::ones<T>({channels})));
    bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>({channels})));
    running_mean_ = &this->register_buffer("running_mean", Tensor<T>(xt::zeros<T>({channels})));
    running_var_ = &this->register_buffer("running_var", Tensor<T>(xt::ones<T>({channels})));
    num_batches_tracked_ = &this->register_buffer("num_batches_tracked", Tensor<T>(T(0)));
}

template <class T>
Var<T> BatchNorm2d<T>::forward(const Var<T>& x)
{
    if ((x.dimension() != 4 && x.dimension() != 2) || x.shape()[1] != channels_)
        throw Error("BatchNorm2d: input has shape " + shape_str(x.shape()) + ", expected [batch, " +
                    std::to_string(channels_) + ", height, width]");
    const std::size_t m = x.size() / channels_;  // values per channel
    if (this->training()) {
        if (m < 2)
            throw Error("BatchNorm2d: training needs at least 2 values per channel to estimate a variance, got shape " +
                        shape_str(x.shape()));
        Var<T> y = batch_norm2d(x, this->use(*weight_, x), this->use(*bias_, x), eps_, &stats_);
        // The running statistics are plain tensors updated from the values: no gradient.
        const T unbias = T(m) / T(m - 1);
        for (std::size_t c = 0; c < channels_; ++c) {
            (*running_mean_)(c) = (T(1) - momentum_) * (*running_mean_)(c) + momentum_ * stats_.mean(c);
            (*running_var_)(c) = (T(1) - momentum_) * (*running_var_)(c) + momentum_ * unbias * stats_.var(c);
        }
        *num_batches_tracked_ += T(1);
        return y;
    }
    // Evaluation: (x - running_mean) / sqrt(running_var + eps) weight + bias, per channel.
    Tape<T>& tape = x.tape();
    const Shape col = x.dimension() == 4 ? Shape{1, channels_, 1, 1} : Shape{1, channels_};
    eval_scale_ = T(1) / xt::sqrt(*running_var_ + eps_);
    eval_shift_ = -*running_mean_ * eval_scale_;
    eval_scale_.reshape(col);
    eval_shift_.reshape(col);
    const Var<T> normalised = x * tape.constant(eval_scale_) + tape.constant(eval_shift_);
    return normalised * reshape(this->use(*weight_, x), col) + reshape(this->use(*bias_, x), col);
}

template class BatchNorm2d<float>;
template class BatchNorm2d<double>;

}  // namespace ad::nn
