// Layer normalisation over the last (feature) axis, with a learned scale (weight) and bias:
//
//   y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias,
//
// mean and var taken over the last axis, var the biased (1/n) variance, as in PyTorch. It records
// one ad::layer_norm op.
// Parameters "weight" (ones) and "bias" (zeros), of shape [features]: PyTorch's names and shapes,
// so a torch.nn.LayerNorm(features) state dict loads as it is.
//
// Seed 001 writes it with n_{l+1} counting a constant bias unit, so a layer of m = n_{l+1} - 1
// features has mean zbar = (1/m) sum z_i, s = ||z - zbar||_2 and
//   h = sqrt(m) / s * v (.) (z - zbar) + u.
// Since s / sqrt(m) = sqrt((1/m) sum (z_i - zbar)^2) is the biased standard deviation, this is
// exactly this module with eps = 0 (weight v, bias u); eps > 0 only keeps a constant row finite.
// Reading the seed's sqrt(n - 1) with n = m (the unbiased deviation) would instead give this
// map times sqrt((m - 1) / m) before the weight.
#pragma once

#include "nn/module.hpp"

namespace ad::nn {

template <class T>
class LayerNorm : public Module<T> {
public:
    explicit LayerNorm(std::size_t features, T eps = T(1e-5));
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;  // "LayerNorm([64], eps=1e-05)"

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>& bias() { return *bias_; }
    T eps() const { return eps_; }

private:
    std::size_t features_;
    T eps_;
    Parameter<T>* weight_;
    Parameter<T>* bias_;
};

extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace ad::nn
