// A small GPT over bytes: token Embedding + PositionalEmbedding, a stack of causal pre-LN
// TransformerBlocks, a final LayerNorm and a Linear head to the vocabulary. Used by
// examples/char_transformer.cpp; a header so that a benchmark can build the same model.
//
// Parameter names are the state-dict keys of the PyTorch twin in
// examples/char_transformer_reference.py (tok_emb, pos_emb, blocks.<k>.<TransformerEncoderLayer
// keys>, ln_f, head), so weights saved by either load into the other.
#pragma once

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"
#include "nn/embedding.hpp"
#include "nn/transformer.hpp"

#include <xtensor/xarray.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace examples {

struct CharModelConfig {
    std::size_t vocab = 0;
    std::size_t context = 64;  // longest sequence (positions learned)
    std::size_t width = 128;
    std::size_t heads = 4;
    std::size_t blocks = 4;
    double dropout = 0;
};

template <class T>
class CharTransformer : public ad::nn::Module<T> {
public:
    CharTransformer(const CharModelConfig& c, ad::nn::Rng& rng) : config_(c)
    {
        using namespace ad::nn;
        tok_ = &this->register_module("tok_emb", std::make_shared<Embedding<T>>(c.vocab, c.width, rng));
        pos_ = &this->register_module("pos_emb", std::make_shared<PositionalEmbedding<T>>(c.context, c.width, rng));
        auto blocks = std::make_shared<Sequential<T>>();
        for (std::size_t k = 0; k < c.blocks; ++k)
            blocks->add(std::make_shared<TransformerBlock<T>>(
                c.width, c.heads, rng, TransformerBlockOptions().causal(true).dropout(c.dropout)));
        blocks_ = &this->register_module("blocks", blocks);
        ln_f_ = &this->register_module("ln_f", std::make_shared<LayerNorm<T>>(c.width));
        head_ = &this->register_module("head", std::make_shared<Linear<T>>(c.width, c.vocab, rng));
    }

    // Logits [B, L, vocab] for token ids [B, L], L <= context, recorded on `tape`.
    ad::Var<T> logits(const xt::xarray<std::int64_t>& ids, ad::Tape<T>& tape)
    {
        if (ids.dimension() != 2 || ids.shape()[1] == 0 || ids.shape()[1] > config_.context)
            throw ad::Error("CharTransformer: expected ids of shape [batch, length] with 1 <= length <= " +
                            std::to_string(config_.context) + ", got " + ad::shape_str(ids.shape()));
        return rest((*tok_)(ids, tape));
    }

    // The Module form: x's values are the ids (Embedding's rule).
    ad::Var<T> forward(const ad::Var<T>& x) override { return rest(tok_->forward(x)); }

    const CharModelConfig& config() const { return config_; }

    // Mean cross-entropy over every position of logits [B, L, vocab] against labels [B, L].
    static ad::Var<T> loss(const ad::Var<T>& logits, const xt::xarray<std::int64_t>& labels)
    {
        const auto s = logits.shape();
        if (labels.dimension() != 2 || labels.shape()[0] != s[0] || labels.shape()[1] != s[1])
            throw ad::Error("CharTransformer::loss: expected labels of shape [" + std::to_string(s[0]) + ", " +
                            std::to_string(s[1]) + "] for logits " + ad::shape_str(s) + ", got " +
                            ad::shape_str(labels.shape()));
        return ad::cross_entropy(logits, labels);
    }

private:
    ad::Var<T> rest(const ad::Var<T>& embedded)
    {
        const auto s = embedded.shape();  // [B, L, width]
        if (s.size() != 3)
            throw ad::Error("CharTransformer: expected token ids of shape [batch, length], got " +
                            ad::shape_str(ad::Shape(s.begin(), s.end() - 1)));
        // LayerNorm and Linear act on the last axis: [B, L, width] -> [B, L, vocab].
        return (*head_)((*ln_f_)((*blocks_)((*pos_)(embedded))));
    }

    CharModelConfig config_;
    ad::nn::Embedding<T>* tok_;
    ad::nn::PositionalEmbedding<T>* pos_;
    ad::nn::Sequential<T>* blocks_;
    ad::nn::LayerNorm<T>* ln_f_;
    ad::nn::Linear<T>* head_;
};

}  // namespace examples
