// Multi-head self-attention (torch.nn.MultiheadAttention with batch_first=True, query = key =
// value = x), on x of shape [B, T, E] with H heads of d = E / H features each:
//
//   [q k v] = x W_in^T + b_in                     one GEMM, W_in = in_proj_weight [3E, E]
//   per head h:  A_h = softmax(q_h k_h^T / sqrt(d)), hidden scores set to -inf   [B, H, T, T]
//                o_h = dropout(A_h) v_h
//   out = concat_h(o_h) W_out^T + b_out           out_proj, a Linear(E, E)
//
// Parameters, PyTorch's names and shapes so that a state dict loads as it is: "in_proj_weight"
// [3E, E] (rows: the q, k, v projections), "in_proj_bias" [3E], "out_proj.weight" [E, E],
// "out_proj.bias" [E]. Initialisation as PyTorch's _reset_parameters: xavier_uniform for
// in_proj_weight, out_proj.weight as a Linear's default, both biases zero.
//
// Masks (True = the query may not attend to that key, PyTorch's boolean attn_mask): the causal
// option hides every key after the query's position (an autoregressive model); forward(x, mask)
// adds a mask of shape [T, T], [B, T, T] or [B, H, T, T]. A query with every key hidden would get
// an all -inf row (NaN weights), so that is an ad::Error instead.
//
// Dropout (training mode only) drops attention weights with probability p, with a mask drawn from
// the module's own seeded generator, like nn::Dropout (seed(), last_mask()).
#pragma once

#include "nn/linear.hpp"
#include "nn/module.hpp"

#include <memory>
#include <xtensor/xarray.hpp>

namespace ad::nn {

// MultiheadAttention's options, set by chaining as in libtorch:
// MultiheadAttentionOptions().causal(true).dropout(0.1).
class MultiheadAttentionOptions {
public:
    // Drop probability of the attention weights in training mode, in [0, 1).
    MultiheadAttentionOptions& dropout(double p) { dropout_ = p; return *this; }
    // Whether in_proj_bias and out_proj.bias exist (PyTorch's bias=True).
    MultiheadAttentionOptions& bias(bool on) { bias_ = on; return *this; }
    // Position t attends to positions <= t only.
    MultiheadAttentionOptions& causal(bool on) { causal_ = on; return *this; }
    double dropout() const { return dropout_; }
    bool bias() const { return bias_; }
    bool causal() const { return causal_; }

private:
    double dropout_ = 0;
    bool bias_ = true;
    bool causal_ = false;
};

template <class T>
class MultiheadAttention : public Module<T> {
public:
    MultiheadAttention(std::size_t embed_dim, std::size_t num_heads, Rng& rng,
                       const MultiheadAttentionOptions& options = {});

    // x [B, T, E] -> [B, T, E].
    Var<T> forward(const Var<T>& x) override;
    // The same with an extra mask, True where attention is not allowed, of shape [T, T],
    // [B, T, T] or [B, H, T, T]; the causal mask, if the option is on, is added to it.
    Var<T> forward(const Var<T>& x, const xt::xarray<bool>& mask);
    using Module<T>::operator();
    Var<T> operator()(const Var<T>& x, const xt::xarray<bool>& mask) { return forward(x, mask); }

    // "MultiheadAttention(embed_dim=64, num_heads=4, dropout=0.1, bias=true, causal=true)"
    std::string describe() const override;

    std::size_t embed_dim() const { return embed_dim_; }
    std::size_t num_heads() const { return heads_; }
    const MultiheadAttentionOptions& options() const { return options_; }
    Parameter<T>& in_proj_weight() { return *in_weight_; }
    Parameter<T>* in_proj_bias() { return in_bias_; }  // nullptr without biases
    Linear<T>& out_proj() { return *out_proj_; }

    // Restart the dropout mask sequence (as nn::Dropout::seed).
    void seed(std::uint64_t s) { rng_->seed(s); }
    // The dropout mask of the last training pass, [B, H, T, T] (0 = dropped).
    const Tensor<T>& last_mask() const { return mask_; }

private:
    Var<T> attend(const Var<T>& x, const xt::xarray<bool>* mask);

    std::size_t embed_dim_, heads_;
    MultiheadAttentionOptions options_;
    Parameter<T>* in_weight_;
    Parameter<T>* in_bias_ = nullptr;
    Linear<T>* out_proj_;
    std::shared_ptr<Rng> rng_;  // shared so that a checkpoint can hold it weakly (ad::preserve_rng_state)
    Tensor<T> mask_;
    // The causal mask of the last length, kept so that a step at the same length allocates
    // nothing; swapped whole (std::atomic_load/store), so threads running one model may share it.
    std::shared_ptr<const xt::xarray<bool>> causal_;
};

extern template class MultiheadAttention<float>;
extern template class MultiheadAttention<double>;

}  // namespace ad::nn
