// Lookup tables: Embedding maps integer ids to learned vectors, PositionalEmbedding adds a learned
// vector per position to a sequence.
//
// Embedding<T>(num_embeddings, embedding_dim, rng): parameter "weight" [num, dim], drawn N(0, 1)
// as torch.nn.Embedding does, so a PyTorch state dict loads as it is. The output for ids of any
// shape is ids.shape + [dim], row ids[...] of the table; the gradient of the table is a
// scatter-add, so an id that occurs several times receives the sum of its rows' gradients.
// The ids are data, never differentiated.
//
// PositionalEmbedding<T>(max_len, dim, rng): parameter "weight" [max_len, dim], drawn N(0, 0.02)
// (GPT-2's initialisation of its learned positions: at the start they perturb the N(0, 1) token
// embeddings by a few percent instead of drowning them). forward(x [..., T, dim]) =
// x + weight[:T], the positions broadcast over the leading (batch) axes.
#pragma once

#include "nn/module.hpp"

#include <cstdint>
#include <xtensor/xarray.hpp>

namespace ad::nn {

template <class T>
class Embedding : public Module<T> {
public:
    Embedding(std::size_t num_embeddings, std::size_t embedding_dim, Rng& rng);

    // The rows for `ids` (any shape, each id in [0, num_embeddings)), recorded on `tape` as one
    // ad::embedding op; the ids are also recorded as a constant (the weight is found through it
    // inside functional_call).
    Var<T> forward(const xt::xarray<std::int64_t>& ids, Tape<T>& tape);
    // The Module form (for Sequential and functional_call): x's values are the ids, each an integer
    // in [0, num_embeddings) (anything else is an ad::Error); no gradient flows to x.
    Var<T> forward(const Var<T>& x) override;
    using Module<T>::operator();
    Var<T> operator()(const xt::xarray<std::int64_t>& ids, Tape<T>& tape) { return forward(ids, tape); }

    std::string describe() const override;  // "Embedding(num_embeddings=65, embedding_dim=32)"

    Parameter<T>& weight() { return *weight_; }
    std::size_t num_embeddings() const { return num_; }
    std::size_t embedding_dim() const { return dim_; }

private:
    std::size_t num_, dim_;
    Parameter<T>* weight_;
};

template <class T>
class PositionalEmbedding : public Module<T> {
public:
    PositionalEmbedding(std::size_t max_len, std::size_t dim, Rng& rng);
    // x [..., T, dim] with T <= max_len (rank 2 or more).
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;  // "PositionalEmbedding(max_len=256, embedding_dim=32)"

    Parameter<T>& weight() { return *weight_; }
    std::size_t max_len() const { return max_len_; }
    std::size_t embedding_dim() const { return dim_; }

private:
    std::size_t max_len_, dim_;
    Parameter<T>* weight_;
};

extern template class Embedding<float>;
extern template class Embedding<double>;
extern template class PositionalEmbedding<float>;
extern template class PositionalEmbedding<double>;

}  // namespace ad::nn
