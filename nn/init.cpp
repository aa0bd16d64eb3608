#include "nn/init.hpp"

#include "nn/linear.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <functional>
#include <numeric>

namespace ad::nn {

namespace {

void check_weight_shape(const Shape& shape, const char* fn)
{
    if (shape.size() < 2)
        throw Error(std::string(fn) + ": weight shape " + shape_str(shape) +
                    " needs at least two axes [fan_out, fan_in, ...]");
    for (auto n : shape)
        if (n == 0) throw Error(std::string(fn) + ": weight shape " + shape_str(shape) + " has an empty axis");
}

// The matrix view [shape[0], fan_in] of a weight tensor.
template <class T>
Tensor<T> as_matrix(const Tensor<T>& W, const char* fn)
{
    if (W.dimension() < 2 || W.size() == 0)
        throw Error(std::string(fn) + ": needs a non-empty matrix, got shape " + shape_str(W.shape()));
    Tensor<T> M = W;
    M.reshape({W.shape()[0], W.size() / W.shape()[0]});
    return M;
}

}  // namespace

std::size_t fan_in(const Shape& shape)
{
    check_weight_shape(shape, "fan_in");
    return std::accumulate(shape.begin() + 1, shape.end(), std::size_t(1), std::multiplies<>());
}

std::size_t fan_out(const Shape& shape)
{
    check_weight_shape(shape, "fan_out");
    return shape[0];
}

template <class T>
Tensor<T> normal(const Shape& shape, T mean, T stddev, Rng& rng)
{
    if (!(stddev >= T(0))) throw Error("normal: standard deviation " + std::to_string(stddev) + " is negative");
    Tensor<T> t(shape);
    std::normal_distribution<T> d(mean, stddev);
    for (auto& v : t) v = d(rng);
    return t;
}

template <class T>
Tensor<T> uniform(const Shape& shape, T lo, T hi, Rng& rng)
{
    if (!(lo < hi))
        throw Error("uniform: need lo < hi, got [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    Tensor<T> t(shape);
    std::uniform_real_distribution<T> d(lo, hi);
    for (auto& v : t) v = d(rng);
    return t;
}

template <class T>
Tensor<T> xavier_normal(const Shape& shape, Rng& rng)
{
    check_weight_shape(shape, "xavier_normal");
    return normal<T>(shape, T(0), std::sqrt(T(2) / T(fan_in(shape) + fan_out(shape))), rng);
}

template <class T>
Tensor<T> xavier_uniform(const Shape& shape, Rng& rng)
{
    check_weight_shape(shape, "xavier_uniform");
    const T a = std::sqrt(T(6) / T(fan_in(shape) + fan_out(shape)));  // variance a^2 / 3
    return uniform<T>(shape, -a, a, rng);
}

template <class T>
Tensor<T> he_normal(const Shape& shape, Rng& rng)
{
    check_weight_shape(shape, "he_normal");
    return normal<T>(shape, T(0), std::sqrt(T(2) / T(fan_in(shape))), rng);
}

template <class T>
Tensor<T> he_normal_seed001(const Shape& shape, Rng& rng)
{
    check_weight_shape(shape, "he_normal_seed001");
    return normal<T>(shape, T(0), std::sqrt(T(4) / T(fan_in(shape) + fan_out(shape))), rng);
}

template <class T>
Tensor<T> orthogonal(const Shape& shape, Rng& rng, T gain)
{
    check_weight_shape(shape, "orthogonal");
    const std::size_t rows = shape[0], cols = fan_in(shape);
    // Factor the tall orientation, so Q has orthonormal columns, then transpose back if needed.
    const bool wide = rows < cols;
    const std::size_t m = wide ? cols : rows, n = wide ? rows : cols;
    Tensor<double> A(Shape{m, n});
    std::normal_distribution<double> d(0.0, 1.0);
    for (auto& v : A) v = d(rng);
    auto qr = xt::linalg::qr(A, xt::linalg::qrmode::reduced);
    Tensor<double> Q = std::get<0>(qr);
    const Tensor<double> R = std::get<1>(qr);
    for (std::size_t j = 0; j < n; ++j)
        if (R(j, j) < 0) xt::view(Q, xt::all(), j) *= -1.0;
    Tensor<T> W = xt::cast<T>(wide ? Tensor<double>(xt::transpose(Q)) : Q);
    W *= gain;
    W.reshape(shape);
    return W;
}

template <class T>
T spectral_norm(const Tensor<T>& W)
{
    const Tensor<double> M = xt::cast<double>(as_matrix(W, "spectral_norm"));
    const auto usv = xt::linalg::svd(M, false, false);
    return T(xt::amax(std::get<1>(usv))());
}

template <class T>
Tensor<T> scale_to_spectral_norm(const Tensor<T>& W, T c)
{
    const T s = spectral_norm(W);
    if (!(s > T(0))) throw Error("scale_to_spectral_norm: the matrix is zero; it has no direction to scale");
    return Tensor<T>(W * (c / s));
}

template <class T>
Tensor<T> spectral_normalised(const Shape& shape, Rng& rng)
{
    check_weight_shape(shape, "spectral_normalised");
    return scale_to_spectral_norm<T>(normal<T>(shape, T(0), T(1), rng), T(1));
}

std::string init_scheme_name(InitScheme s)
{
    switch (s) {
    case InitScheme::pytorch_default: return "pytorch_default";
    case InitScheme::standard_normal: return "standard_normal";
    case InitScheme::xavier_normal: return "xavier_normal";
    case InitScheme::xavier_uniform: return "xavier_uniform";
    case InitScheme::he_normal: return "he_normal";
    case InitScheme::he_normal_seed001: return "he_normal_seed001";
    case InitScheme::orthogonal: return "orthogonal";
    case InitScheme::spectral_normalised: return "spectral_normalised";
    }
    return "unknown";
}

template <class T>
WeightInit<T> weight_init(InitScheme s)
{
    switch (s) {
    case InitScheme::pytorch_default: return {};
    case InitScheme::standard_normal:
        return [](const Shape& shape, Rng& rng) { return normal<T>(shape, T(0), T(1), rng); };
    case InitScheme::xavier_normal: return xavier_normal<T>;
    case InitScheme::xavier_uniform: return xavier_uniform<T>;
    case InitScheme::he_normal: return he_normal<T>;
    case InitScheme::he_normal_seed001: return he_normal_seed001<T>;
    case InitScheme::orthogonal: return [](const Shape& shape, Rng& rng) { return orthogonal<T>(shape, rng); };
    case InitScheme::spectral_normalised: return spectral_normalised<T>;
    }
    throw Error("weight_init: unknown scheme " + std::to_string(static_cast<int>(s)));
}

template <class T>
void init_linear_layers(Module<T>& m, const WeightInit<T>& init, Rng& rng)
{
    if (!init) throw Error("init_linear_layers: the weight initialiser is empty");
    std::vector<Module<T>*> all{&m};
    for (auto& e : m.named_modules()) all.push_back(e.second);
    for (Module<T>* mod : all) {
        auto* lin = dynamic_cast<Linear<T>*>(mod);
        if (!lin) continue;
        Parameter<T>& W = lin->weight();
        Tensor<T> w = init(W.value().shape(), rng);
        if (!equal_shapes(w.shape(), W.value().shape()))
            throw Error("init_linear_layers: the initialiser returned shape " + shape_str(w.shape()) +
                        " for a weight of shape " + shape_str(W.value().shape()));
        W.set_value(std::move(w));
        if (Parameter<T>* b = lin->bias()) b->mutable_value().fill(T(0));
    }
}

#define AD_NN_INIT(T)                                                          \
    template Tensor<T> normal(const Shape&, T, T, Rng&);                       \
    template Tensor<T> uniform(const Shape&, T, T, Rng&);                      \
    template Tensor<T> xavier_normal<T>(const Shape&, Rng&);                   \
    template Tensor<T> xavier_uniform<T>(const Shape&, Rng&);                  \
    template Tensor<T> he_normal<T>(const Shape&, Rng&);                       \
    template Tensor<T> he_normal_seed001<T>(const Shape&, Rng&);               \
    template Tensor<T> orthogonal<T>(const Shape&, Rng&, T);                   \
    template Tensor<T> spectral_normalised<T>(const Shape&, Rng&);             \
    template Tensor<T> scale_to_spectral_norm(const Tensor<T>&, T);            \
    template T spectral_norm(const Tensor<T>&);                                \
    template WeightInit<T> weight_init<T>(InitScheme);                         \
    template void init_linear_layers(Module<T>&, const WeightInit<T>&, Rng&);
AD_NN_INIT(float)
AD_NN_INIT(double)

}  // namespace ad::nn
