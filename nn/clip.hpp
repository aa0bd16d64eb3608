// Gradient clipping and weight constraints (seed 002, "avoiding exploding gradients").
//
// Clipping acts on gradients, between backward() and the optimiser's step:
// - clip_grad_norm: if the L2 norm of all gradients together, N, exceeds max_norm, every
//   gradient is multiplied by max_norm / (N + 1e-6) (PyTorch's clip_grad_norm_, same formula).
//   Returns N, the norm before clipping.
// - clip_grad_value: each gradient element clamped to [-c, c].
//
// Constraints act on weights, after the step (projected gradient descent). Seed 002 bounds each
// layer's growth by norm(W_j)_2 <= c, and gives two cheaper surrogates that imply it:
// - project_spectral_norm: the nearest W' (in Frobenius distance) with norm(W')_2 <= c, i.e.
//   every singular value above c is lowered to c and the singular vectors kept. The singular
//   triples above c are found one at a time by power iteration on W with the triples already
//   found deflated; `iterations` power steps are spent on each. A matrix whose Frobenius norm is
//   already <= c is left alone without any iteration (norm(W)_2 <= norm(W)_F).
// - project_frobenius_norm: W scaled by c / norm(W)_F when that is below one.
// - project_elementwise: each W_lk clamped to [-b, b], b = c / sqrt(n_{j+1} n_j) for W of shape
//   [n_{j+1}, n_j]; then norm(W)_2 <= norm(W)_F <= c.
// A weight of rank above 2 (a convolution kernel [out, in, kh, kw]) is projected as the matrix
// [out, in kh kw] it is on the unfolded input (spectral normalisation's convention; this bounds
// that matrix, not the operator norm of the convolution over a whole image).
// The projections write a parameter's value (through mutable_value(), which counts the change)
// when, and only when, they change it. They return whether they did. The forms that take a
// model or a list apply to every weight matrix in the sense of is_weight_matrix (nn/optim.hpp):
// rank >= 2 and not named "bias".
#pragma once

#include "nn/module.hpp"
#include "nn/optim.hpp"

#include <cstddef>
#include <vector>

namespace ad::nn {

template <class T>
double clip_grad_norm(const std::vector<Parameter<T>*>& params, double max_norm, bool error_if_nonfinite = false);
template <class T>
double clip_grad_norm(const NamedParameters<T>& params, double max_norm, bool error_if_nonfinite = false);
template <class T>
double clip_grad_norm(Module<T>& model, double max_norm, bool error_if_nonfinite = false)
{
    return clip_grad_norm(model.named_parameters(), max_norm, error_if_nonfinite);
}

template <class T>
void clip_grad_value(const std::vector<Parameter<T>*>& params, double clip_value);
template <class T>
void clip_grad_value(const NamedParameters<T>& params, double clip_value);
template <class T>
void clip_grad_value(Module<T>& model, double clip_value)
{
    clip_grad_value(model.named_parameters(), clip_value);
}

// Largest singular value of a matrix by power iteration from a fixed start vector (nn/init.hpp's
// spectral_norm gives the exact value by SVD).
template <class T>
double spectral_norm_estimate(const Tensor<T>& W, std::size_t iterations = 100);

template <class T>
bool project_spectral_norm(Parameter<T>& W, double c = 1, std::size_t iterations = 100);
template <class T>
bool project_frobenius_norm(Parameter<T>& W, double c = 1);
template <class T>
bool project_elementwise(Parameter<T>& W, double c = 1);

// The same for every weight matrix of a model or list.
template <class T>
void project_spectral_norm(const NamedParameters<T>& params, double c = 1, std::size_t iterations = 100);
template <class T>
void project_frobenius_norm(const NamedParameters<T>& params, double c = 1);
template <class T>
void project_elementwise(const NamedParameters<T>& params, double c = 1);
template <class T>
void project_spectral_norm(Module<T>& model, double c = 1, std::size_t iterations = 100)
{
    project_spectral_norm(model.named_parameters(), c, iterations);
}
template <class T>
void project_frobenius_norm(Module<T>& model, double c = 1)
{
    project_frobenius_norm(model.named_parameters(), c);
}
template <class T>
void project_elementwise(Module<T>& model, double c = 1)
{
    project_elementwise(model.named_parameters(), c);
}

}  // namespace ad::nn
