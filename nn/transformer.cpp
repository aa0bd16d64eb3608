#include "nn/transformer.hpp"

#include "nn/dropout.hpp"

#include <memory>

namespace ad::nn {

template <class T>
TransformerBlock<T>::TransformerBlock(std::size_t embed_dim, std::size_t num_heads, Rng& rng,
                                      const TransformerBlockOptions& options)
    : embed_dim_(embed_dim), heads_(num_heads),
      ff_(options.dim_feedforward() ? options.dim_feedforward() : 4 * embed_dim), options_(options)
{
    const double p = options.dropout();
    if (!(p >= 0 && p < 1))
        throw Error("TransformerBlock: dropout p = " + detail::number_str(p) + " is outside [0, 1)");
    const std::size_t E = embed_dim;
    attn_ = &this->register_module(
        "self_attn", std::make_shared<MultiheadAttention<T>>(
                         E, num_heads, rng,
                         MultiheadAttentionOptions().dropout(p).bias(options.bias()).causal(options.causal())));
    const Bias bias{options.bias()};
    linear1_ = &this->register_module("linear1", std::make_shared<Linear<T>>(E, ff_, rng, bias));
    if (p != 0) dropout_ = &this->register_module("dropout", std::make_shared<Dropout<T>>(T(p), rng()));
    linear2_ = &this->register_module("linear2", std::make_shared<Linear<T>>(ff_, E, rng, bias));
    norm1_ = &this->register_module("norm1", std::make_shared<LayerNorm<T>>(E, T(options.layer_norm_eps())));
    norm2_ = &this->register_module("norm2", std::make_shared<LayerNorm<T>>(E, T(options.layer_norm_eps())));
    if (p != 0) {
        dropout1_ = &this->register_module("dropout1", std::make_shared<Dropout<T>>(T(p), rng()));
        dropout2_ = &this->register_module("dropout2", std::make_shared<Dropout<T>>(T(p), rng()));
    }
}

template <class T>
Var<T> TransformerBlock<T>::forward(const Var<T>& x)
{
    return run(x, nullptr);
}

template <class T>
Var<T> TransformerBlock<T>::forward(const Var<T>& x, const xt::xarray<bool>& mask)
{
    return run(x, &mask);
}

template <class T>
Var<T> TransformerBlock<T>::run(const Var<T>& x, const xt::xarray<bool>* mask)
{
    const std::size_t E = embed_dim_;
    if (x.dimension() != 3 || x.shape()[2] != E)
        throw Error("TransformerBlock: input has shape " + shape_str(x.shape()) + ", expected [batch, time, " +
                    std::to_string(E) + "]");
    // The norms and the MLP's Linears act on the last axis, every position alike.
    const Var<T> h = (*norm1_)(x);
    const Var<T> a = mask ? attn_->forward(h, *mask) : attn_->forward(h);
    const Var<T> x1 = x + drop(dropout1_, a);
    const Var<T> f = (*linear2_)(drop(dropout_, gelu((*linear1_)((*norm2_)(x1)))));
    return x1 + drop(dropout2_, f);
}

template <class T>
std::string TransformerBlock<T>::describe() const
{
    return "TransformerBlock(d_model=" + std::to_string(embed_dim_) + ", nhead=" + std::to_string(heads_) +
           ", dim_feedforward=" + std::to_string(ff_) + ", dropout=" + detail::number_str(options_.dropout()) +
           ", causal=" + (options_.causal() ? "true" : "false") + ")";
}

template class TransformerBlock<float>;
template class TransformerBlock<double>;

}  // namespace ad::nn
