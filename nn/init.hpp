// Weight initialisation. Every function draws from a seeded generator, so the same seed gives
// the same weights. A weight of shape [out, in] (Linear's layout) has fan_in = in and
// fan_out = out; for more axes, fan_in is the product of all axes after the first.
// Biases start at zero (Linear does this when given one of these functions).
//
//   xavier_normal       N(0, 2 / (fan_in + fan_out))   (Glorot; seed 001's "Xavier")
//   xavier_uniform      U(-a, a), a = sqrt(6 / (fan_in + fan_out)): the same variance
//   he_normal           N(0, 2 / fan_in)                (Kaiming He, fan-in mode: the standard)
//   he_normal_seed001   N(0, 4 / (fan_in + fan_out))    (He as seed 001 writes it; equals the
//                                                        standard when fan_in = fan_out)
//   orthogonal          rows (or columns, if there are more rows than columns) orthonormal
//   spectral_normalised N(0, 1) scaled so that its largest singular value is 1 (seed 002)
#pragma once

#include "nn/module.hpp"

#include <functional>

namespace ad::nn {

// Draws a weight of the given shape ([out, in]); the functions below have this form.
template <class T>
using WeightInit = std::function<Tensor<T>(const Shape& shape, Rng& rng)>;

// The schemes by name, for builders and command lines. pytorch_default is Linear's own
// initialisation (weight and bias U(-1/sqrt(in), 1/sqrt(in))); standard_normal is N(0, 1).
enum class InitScheme {
    pytorch_default,
    standard_normal,
    xavier_normal,
    xavier_uniform,
    he_normal,
    he_normal_seed001,
    orthogonal,
    spectral_normalised
};
std::string init_scheme_name(InitScheme s);
// The function for a scheme; empty for pytorch_default.
template <class T>
WeightInit<T> weight_init(InitScheme s);

template <class T> Tensor<T> normal(const Shape& shape, T mean, T stddev, Rng& rng);
template <class T> Tensor<T> uniform(const Shape& shape, T lo, T hi, Rng& rng);

template <class T> Tensor<T> xavier_normal(const Shape& shape, Rng& rng);
template <class T> Tensor<T> xavier_uniform(const Shape& shape, Rng& rng);
template <class T> Tensor<T> he_normal(const Shape& shape, Rng& rng);
template <class T> Tensor<T> he_normal_seed001(const Shape& shape, Rng& rng);
// Q of the QR factorisation of a Gaussian matrix, signs fixed by R's diagonal so that Q is
// distributed uniformly (Haar); times `gain`.
template <class T> Tensor<T> orthogonal(const Shape& shape, Rng& rng, T gain = T(1));
template <class T> Tensor<T> spectral_normalised(const Shape& shape, Rng& rng);

// W / ||W||_2 * c: the matrix scaled to spectral norm c (singular values from an SVD).
template <class T> Tensor<T> scale_to_spectral_norm(const Tensor<T>& W, T c = T(1));
// The largest singular value of a matrix.
template <class T> T spectral_norm(const Tensor<T>& W);

// Every Linear layer in m (m itself included) gets weight init(shape, rng), drawn in the order of
// named_modules(), and a zero bias.
template <class T>
void init_linear_layers(Module<T>& m, const WeightInit<T>& init, Rng& rng);

// Fans of a weight shape, as above; at least two axes.
std::size_t fan_in(const Shape& shape);
std::size_t fan_out(const Shape& shape);

#define AD_NN_INIT_EXTERN(T)                                                          \
    extern template Tensor<T> normal(const Shape&, T, T, Rng&);                       \
    extern template Tensor<T> uniform(const Shape&, T, T, Rng&);                      \
    extern template Tensor<T> xavier_normal<T>(const Shape&, Rng&);                   \
    extern template Tensor<T> xavier_uniform<T>(const Shape&, Rng&);                  \
    extern template Tensor<T> he_normal<T>(const Shape&, Rng&);                       \
    extern template Tensor<T> he_normal_seed001<T>(const Shape&, Rng&);               \
    extern template Tensor<T> orthogonal<T>(const Shape&, Rng&, T);                   \
    extern template Tensor<T> spectral_normalised<T>(const Shape&, Rng&);             \
    extern template Tensor<T> scale_to_spectral_norm(const Tensor<T>&, T);            \
    extern template T spectral_norm(const Tensor<T>&);                                \
    extern template WeightInit<T> weight_init<T>(InitScheme);                         \
    extern template void init_linear_layers(Module<T>&, const WeightInit<T>&, Rng&);
AD_NN_INIT_EXTERN(float)
AD_NN_INIT_EXTERN(double)
#undef AD_NN_INIT_EXTERN

}  // namespace ad::nn
