// A pre-LayerNorm transformer block (torch.nn.TransformerEncoderLayer with norm_first=True,
// activation='gelu', batch_first=True), on x of shape [B, T, E]:
//
//   x = x + dropout1(self_attn(norm1(x)))
//   x = x + dropout2(linear2(dropout(gelu(linear1(norm2(x))))))
//
// GELU is the exact one, x Phi(x) (PyTorch's 'gelu'). Dropout p applies at the three places above
// and to the attention weights (self_attn's own dropout), as in PyTorch; each dropout draws from
// its own generator, seeded from the constructor's rng.
//
// Children, in PyTorch's order and with its names, so that the state dict keys are exactly
// TransformerEncoderLayer's: self_attn (in_proj_weight, in_proj_bias, out_proj.weight,
// out_proj.bias), linear1 [F, E], linear2 [E, F], norm1, norm2; the dropouts ("dropout",
// "dropout1", "dropout2") exist only when p != 0 and have no parameters.
#pragma once

#include "nn/attention.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"

#include <xtensor/xarray.hpp>

namespace ad::nn {

// TransformerBlock's options, set by chaining: TransformerBlockOptions().causal(true).dropout(0.1).
class TransformerBlockOptions {
public:
    // Width F of the MLP's hidden layer; 0 (the default) means 4 E.
    TransformerBlockOptions& dim_feedforward(std::size_t f) { dim_feedforward_ = f; return *this; }
    TransformerBlockOptions& dropout(double p) { dropout_ = p; return *this; }
    TransformerBlockOptions& causal(bool on) { causal_ = on; return *this; }
    TransformerBlockOptions& bias(bool on) { bias_ = on; return *this; }  // every Linear and the attention
    TransformerBlockOptions& layer_norm_eps(double eps) { eps_ = eps; return *this; }
    std::size_t dim_feedforward() const { return dim_feedforward_; }
    double dropout() const { return dropout_; }
    bool causal() const { return causal_; }
    bool bias() const { return bias_; }
    double layer_norm_eps() const { return eps_; }

private:
    std::size_t dim_feedforward_ = 0;
    double dropout_ = 0;
    bool causal_ = false;
    bool bias_ = true;
    double eps_ = 1e-5;
};

template <class T>
class TransformerBlock : public Module<T> {
public:
    TransformerBlock(std::size_t embed_dim, std::size_t num_heads, Rng& rng, const TransformerBlockOptions& options = {});

    // x [B, T, E] -> [B, T, E].
    Var<T> forward(const Var<T>& x) override;
    // With an extra attention mask (True = hidden), as MultiheadAttention::forward(x, mask).
    Var<T> forward(const Var<T>& x, const xt::xarray<bool>& mask);
    using Module<T>::operator();
    Var<T> operator()(const Var<T>& x, const xt::xarray<bool>& mask) { return forward(x, mask); }

    // "TransformerBlock(d_model=64, nhead=4, dim_feedforward=256, dropout=0.1, causal=true)"
    std::string describe() const override;

    MultiheadAttention<T>& self_attn() { return *attn_; }
    Linear<T>& linear1() { return *linear1_; }
    Linear<T>& linear2() { return *linear2_; }
    LayerNorm<T>& norm1() { return *norm1_; }
    LayerNorm<T>& norm2() { return *norm2_; }
    std::size_t dim_feedforward() const { return ff_; }

private:
    Var<T> run(const Var<T>& x, const xt::xarray<bool>* mask);
    Var<T> drop(Module<T>* d, const Var<T>& x) { return d ? (*d)(x) : x; }

    std::size_t embed_dim_, heads_, ff_;
    TransformerBlockOptions options_;
    MultiheadAttention<T>* attn_;
    Linear<T>* linear1_;
    Module<T>* dropout_ = nullptr;
    Linear<T>* linear2_;
    LayerNorm<T>* norm1_;
    LayerNorm<T>* norm2_;
    Module<T>* dropout1_ = nullptr;
    Module<T>* dropout2_ = nullptr;
};

extern template class TransformerBlock<float>;
extern template class TransformerBlock<double>;

}  // namespace ad::nn
