#include "nn/attention.hpp"

#include "autodiff/checkpoint.hpp"
#include "nn/dropout.hpp"
#include "nn/init.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <vector>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xview.hpp>

namespace ad::nn {

template <class T>
MultiheadAttention<T>::MultiheadAttention(std::size_t embed_dim, std::size_t num_heads, Rng& rng,
                                          const MultiheadAttentionOptions& options)
    : embed_dim_(embed_dim), heads_(num_heads), options_(options)
{
    if (embed_dim == 0 || num_heads == 0 || embed_dim % num_heads != 0)
        throw Error("MultiheadAttention: embed_dim = " + std::to_string(embed_dim) +
                    " must be a positive multiple of num_heads = " + std::to_string(num_heads));
    if (!(options.dropout() >= 0 && options.dropout() < 1))
        throw Error("MultiheadAttention: dropout p = " + detail::number_str(options.dropout()) + " is outside [0, 1)");
    const std::size_t E = embed_dim;
    in_weight_ = &this->register_parameter("in_proj_weight", xavier_uniform<T>({3 * E, E}, rng));
    if (options.bias()) in_bias_ = &this->register_parameter("in_proj_bias", Tensor<T>(xt::zeros<T>({3 * E})));
    out_proj_ = &this->register_module("out_proj", std::make_shared<Linear<T>>(E, E, rng, Bias{options.bias()}));
    if (options.bias()) out_proj_->bias()->set_value(Tensor<T>(xt::zeros<T>({E})));
    rng_ = std::make_shared<Rng>(rng());
}

template <class T>
Var<T> MultiheadAttention<T>::forward(const Var<T>& x)
{
    return attend(x, nullptr);
}

template <class T>
Var<T> MultiheadAttention<T>::forward(const Var<T>& x, const xt::xarray<bool>& mask)
{
    return attend(x, &mask);
}

template <class T>
Var<T> MultiheadAttention<T>::attend(const Var<T>& x, const xt::xarray<bool>* user_mask)
{
    const std::size_t E = embed_dim_, H = heads_, d = E / H;
    if (x.dimension() != 3 || x.shape()[2] != E || x.shape()[1] == 0 || x.shape()[0] == 0)
        throw Error("MultiheadAttention: input has shape " + shape_str(x.shape()) + ", expected [batch, time, " +
                    std::to_string(E) + "] with batch, time >= 1");
    const std::size_t B = x.shape()[0], L = x.shape()[1];

    // Which (query, key) pairs are hidden: the user's mask, or the causal one, or both.
    std::shared_ptr<const xt::xarray<bool>> causal;
    if (options_.causal()) {
        causal = std::atomic_load(&causal_);
        if (!causal || causal->shape()[0] != L) {
            auto m = std::make_shared<xt::xarray<bool>>(xt::zeros<bool>({L, L}));
            for (std::size_t q = 0; q < L; ++q)
                for (std::size_t k = q + 1; k < L; ++k) (*m)(q, k) = true;
            causal = m;
            std::atomic_store(&causal_, causal);
        }
    }
    const xt::xarray<bool>* hidden = causal.get();
    std::optional<xt::xarray<bool>> combined;  // only with a user's mask
    if (user_mask) {
        const auto& m = *user_mask;
        const std::size_t r = m.dimension();
        const bool fits = r >= 2 && r <= 4 && m.shape()[r - 1] == L && m.shape()[r - 2] == L &&
                          (r < 3 || m.shape()[0] == B) && (r < 4 || m.shape()[1] == H);
        if (!fits)
            throw Error("MultiheadAttention: the mask has shape " + shape_str(Shape(m.shape().begin(), m.shape().end())) +
                        ", expected [T, T], [B, T, T] or [B, H, T, T] = " + shape_str(Shape{B, H, L, L}) +
                        " for input " + shape_str(x.shape()));
        combined = r == 3 ? xt::xarray<bool>(xt::view(m, xt::all(), xt::newaxis(), xt::all(), xt::all())) : m;
        if (causal) *combined = *combined || *causal;
        hidden = &*combined;

        // A query with no visible key: softmax of a row of -inf is NaN. (The causal mask alone
        // leaves every query its own key.)
        const std::size_t rows = combined->size() / L;
        for (std::size_t i = 0; i < rows; ++i) {
            bool all = true;
            for (std::size_t k = 0; k < L && all; ++k) all = combined->data()[i * L + k];
            if (all)
                throw Error("MultiheadAttention: the mask hides every key from query position " +
                            std::to_string(i % L) + " (row " + std::to_string(i) + " of the mask of shape " +
                            shape_str(Shape(combined->shape().begin(), combined->shape().end())) +
                            "); its attention weights would be NaN");
        }
    }

    // One GEMM for q, k and v of every position: [B, T, E] x [3E, E]^T.
    const Var<T> W = this->use(*in_weight_, x);
    const Var<T> qkv_e = in_bias_ ? affine(x, W, this->use(*in_bias_, x)) : matmul(x, W, transpose_b);
    // q, k, v: thirds of [B, T, 3H, d], each [B, T, H, d] -> [B, H, T, d]. (Ranks stay <= 4,
    // where xtensor keeps shapes inline: a rank-5 permute would allocate every step.)
    const Var<T> qkv = reshape(qkv_e, {B, L, 3 * H, d});
    auto head_major = [&](std::size_t part) {
        return transpose(slice(qkv, 2, std::ptrdiff_t(part * H), std::ptrdiff_t((part + 1) * H)), 1, 2);
    };
    // q scaled by 1 / sqrt(d) before the product, as PyTorch does ([B, H, T, d] is smaller than
    // the scores when T > d).
    const Var<T> q = head_major(0) * T(1 / std::sqrt(double(d))), k = head_major(1), v = head_major(2);

    Var<T> scores = matmul(q, k, transpose_b);  // [B, H, T, T]
    // Hidden pairs are replaced by -inf, whatever their scores: weight exp(-inf) = 0, no gradient.
    if (hidden) scores = masked_fill(scores, *hidden, -std::numeric_limits<T>::infinity());
    Var<T> weights = softmax(scores, -1);
    const T p = T(options_.dropout());
    if (this->training() && p != T(0)) {
        preserve_rng_state(rng_);  // a checkpoint around this pass reruns it with the same mask
        mask_ = bernoulli_mask<T>(weights.shape(), 1.0 - double(p), *rng_);
        weights = dropout(weights, mask_, p);
    }
    const Var<T> heads = matmul(weights, v);  // [B, H, T, d]
    const Var<T> merged = reshape(transpose(heads, 1, 2), {B, L, E});  // heads side by side per position
    return (*out_proj_)(merged);
}

template <class T>
std::string MultiheadAttention<T>::describe() const
{
    return "MultiheadAttention(embed_dim=" + std::to_string(embed_dim_) + ", num_heads=" + std::to_string(heads_) +
           ", dropout=" + detail::number_str(options_.dropout()) + ", bias=" + (options_.bias() ? "true" : "false") +
           ", causal=" + (options_.causal() ? "true" : "false") + ")";
}

template class MultiheadAttention<float>;
template class MultiheadAttention<double>;

}  // namespace ad::nn
