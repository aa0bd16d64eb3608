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
//
// Frozen parameters (requires_grad_(false)) and parameters without a gradient (has_grad() false:
// no backward() reached them since zero_grad()) are skipped by the gradient clips: they are not
// part of clip_grad_norm's total, and their .grad is not scaled or clamped.
#pragma once

#include "nn/module.hpp"
#include "nn/optim.hpp"

#include <cstddef>
#include <vector>

namespace ad::nn {

// The parameters a clip or a projection acts on, however they come: a model (its
// named_parameters()), named parameters, a list of parameters (named "#0", "#1", ... in
// messages), or one parameter; as PyTorch's clip_grad_norm_(parameters) takes an iterable of
// tensors or a single tensor. A view: it holds pointers, so the parameters must outlive it.
// The projections constrain every weight matrix of a collection (is_weight_matrix) and the one
// parameter given alone whatever its name (then it must have rank >= 2).
template <class T>
class ParameterList {
public:
    ParameterList(Module<T>& model) : params_(model.named_parameters()) {}
    ParameterList(NamedParameters<T> params) : params_(std::move(params)) {}
    ParameterList(const std::vector<Parameter<T>*>& params);
    ParameterList(Parameter<T>& p) : params_{{"#0", &p}}, single_(true) {}

    const NamedParameters<T>& named() const { return params_; }
    bool single() const { return single_; }

private:
    NamedParameters<T> params_;
    bool single_ = false;
};

// clip_grad_norm's options, set by chaining as in libtorch:
// ClipGradNormOptions().error_if_nonfinite(true) makes a non-finite total norm an ad::Error
// (nothing scaled) instead of NaN spread over every gradient (PyTorch's default).
class ClipGradNormOptions {
public:
    ClipGradNormOptions& error_if_nonfinite(bool on) { error_if_nonfinite_ = on; return *this; }
    bool error_if_nonfinite() const { return error_if_nonfinite_; }

private:
    bool error_if_nonfinite_ = false;
};

// One function per operation, for float and double parameters alike (the two overloads are
// the element types, so a model converts without naming T).
double clip_grad_norm(const ParameterList<float>& params, double max_norm, const ClipGradNormOptions& options = {});
double clip_grad_norm(const ParameterList<double>& params, double max_norm, const ClipGradNormOptions& options = {});

void clip_grad_value(const ParameterList<float>& params, double clip_value);
void clip_grad_value(const ParameterList<double>& params, double clip_value);

// Largest singular value of a matrix (a kernel: of [out, in kh kw]) by power iteration from a
// fixed start vector (nn/init.hpp's spectral_norm gives the exact value by SVD).
template <class T>
double spectral_norm_estimate(const Tensor<T>& W, std::size_t iterations = 100);

// Each returns whether it changed any parameter.
bool project_spectral_norm(const ParameterList<float>& params, double c = 1, std::size_t iterations = 100);
bool project_spectral_norm(const ParameterList<double>& params, double c = 1, std::size_t iterations = 100);
bool project_frobenius_norm(const ParameterList<float>& params, double c = 1);
bool project_frobenius_norm(const ParameterList<double>& params, double c = 1);
bool project_elementwise(const ParameterList<float>& params, double c = 1);
bool project_elementwise(const ParameterList<double>& params, double c = 1);

extern template class ParameterList<float>;
extern template class ParameterList<double>;

}  // namespace ad::nn
