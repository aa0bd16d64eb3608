#include "nn/embedding.hpp"

#include "nn/init.hpp"

#include <xtensor/xbuilder.hpp>

#include <cmath>
#include <sstream>

namespace ad::nn {

namespace {
std::string id_error(const char* what, const std::string& id, std::size_t pos, const Shape& shape, std::size_t num)
{
    return std::string("Embedding: ") + what + " " + id + " at flat position " + std::to_string(pos) + " of ids " +
           shape_str(shape) + " is not an integer in [0, " + std::to_string(num) + ")";
}
}  // namespace

template <class T>
Embedding<T>::Embedding(std::size_t num_embeddings, std::size_t embedding_dim, Rng& rng)
    : num_(num_embeddings), dim_(embedding_dim)
{
    if (num_embeddings == 0 || embedding_dim == 0)
        throw Error("Embedding: num_embeddings and embedding_dim must be positive, got " +
                    std::to_string(num_embeddings) + " and " + std::to_string(embedding_dim));
    weight_ = &this->register_parameter("weight", normal<T>({num_embeddings, embedding_dim}, T(0), T(1), rng));
}

template <class T>
Var<T> Embedding<T>::forward(const xt::xarray<std::int64_t>& ids, Tape<T>& tape)
{
    const Shape shape(ids.shape().begin(), ids.shape().end());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::int64_t id = ids.data()[i];
        if (id < 0 || std::uint64_t(id) >= num_) throw Error(id_error("id", std::to_string(id), i, shape, num_));
    }
    // A handle on `tape` for use() to find it by (and functional_call to check): an empty
    // constant, shared by every call, so that a step allocates nothing and threads running one
    // model write no state of the module.
    static const Tensor<T> on_tape = xt::zeros<T>({std::size_t(0)});
    const Var<T> x = tape.constant(on_tape);
    return embedding(this->use(*weight_, x), ids);
}

template <class T>
Var<T> Embedding<T>::forward(const Var<T>& x)
{
    const Tensor<T>& v = x.value();
    xt::xarray<std::int64_t> ids(x.shape());
    for (std::size_t i = 0; i < v.size(); ++i) {
        const T id = v.data()[i];
        if (!(id >= T(0) && id < T(num_) && std::floor(id) == id)) {
            std::ostringstream s;
            s << id;
            throw Error(id_error("value", s.str(), i, x.shape(), num_) + " (the Module form reads ids from the values)");
        }
        ids.data()[i] = std::int64_t(id);
    }
    return embedding(this->use(*weight_, x), ids);
}

template <class T>
std::string Embedding<T>::describe() const
{
    return "Embedding(num_embeddings=" + std::to_string(num_) + ", embedding_dim=" + std::to_string(dim_) + ")";
}

template <class T>
PositionalEmbedding<T>::PositionalEmbedding(std::size_t max_len, std::size_t dim, Rng& rng) : max_len_(max_len), dim_(dim)
{
    if (max_len == 0 || dim == 0)
        throw Error("PositionalEmbedding: max_len and dim must be positive, got " + std::to_string(max_len) + " and " +
                    std::to_string(dim));
    weight_ = &this->register_parameter("weight", normal<T>({max_len, dim}, T(0), T(0.02), rng));
}

template <class T>
Var<T> PositionalEmbedding<T>::forward(const Var<T>& x)
{
    const std::size_t d = x.dimension();
    if (d < 2 || x.shape()[d - 1] != dim_)
        throw Error("PositionalEmbedding: input has shape " + shape_str(x.shape()) + ", expected [..., T, " +
                    std::to_string(dim_) + "] (rank 2 or more)");
    const std::size_t len = x.shape()[d - 2];
    if (len > max_len_)
        throw Error("PositionalEmbedding: input has shape " + shape_str(x.shape()) + ": its " + std::to_string(len) +
                    " positions exceed max_len = " + std::to_string(max_len_));
    return x + slice(this->use(*weight_, x), 0, 0, std::ptrdiff_t(len));
}

template <class T>
std::string PositionalEmbedding<T>::describe() const
{
    return "PositionalEmbedding(max_len=" + std::to_string(max_len_) + ", embedding_dim=" + std::to_string(dim_) + ")";
}

template class Embedding<float>;
template class Embedding<double>;
template class PositionalEmbedding<float>;
template class PositionalEmbedding<double>;

}  // namespace ad::nn
