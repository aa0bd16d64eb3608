// Elementwise ops, declared for T = float and T = double; definitions, each with its
// vector-Jacobian product beside it, are in ops_elementwise.cpp. Binary ops broadcast like NumPy.
// The choices where an op is not differentiable, and for NaN, are listed in autodiff/ops.hpp.
#pragma once

#include "autodiff/tape.hpp"

#include <type_traits>

namespace ad {

// A scalar argument takes its type from the Var beside it (so x * 2.0 works for Var<float>).
template <class T>
using Scalar = typename std::common_type<T>::type;

template <class T> Var<T> neg(const Var<T>& x);
template <class T> Var<T> add(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> sub(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> mul(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> div(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> add(const Var<T>& x, Scalar<T> s);  // x + s
template <class T> Var<T> mul(const Var<T>& x, Scalar<T> s);  // s x
template <class T> Var<T> div(const Var<T>& x, Scalar<T> s);   // x / s
template <class T> Var<T> sub(Scalar<T> s, const Var<T>& x);   // s - x
template <class T> Var<T> rdiv(Scalar<T> s, const Var<T>& x);  // s / x
template <class T> Var<T> pow(const Var<T>& x, Scalar<T> p);   // x^p, p a scalar constant
template <class T> Var<T> square(const Var<T>& x);
template <class T> Var<T> sqrt(const Var<T>& x);
template <class T> Var<T> exp(const Var<T>& x);
template <class T> Var<T> log(const Var<T>& x);
template <class T> Var<T> abs(const Var<T>& x);
template <class T> Var<T> sin(const Var<T>& x);
template <class T> Var<T> cos(const Var<T>& x);
template <class T> Var<T> maximum(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> minimum(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> clamp(const Var<T>& x, Scalar<T> lo, Scalar<T> hi);
template <class T> Var<T> tanh(const Var<T>& x);
template <class T> Var<T> sigmoid(const Var<T>& x);
template <class T> Var<T> relu(const Var<T>& x);
template <class T> Var<T> leaky_relu(const Var<T>& x, Scalar<T> alpha = T(0.01));
template <class T> Var<T> elu(const Var<T>& x, Scalar<T> alpha = T(1));
template <class T> Var<T> selu(const Var<T>& x);
template <class T> Var<T> softplus(const Var<T>& x);  // log(1 + e^x), stable for large |x|
template <class T> Var<T> gelu(const Var<T>& x);      // x Phi(x), the exact (erf) form
template <class T> Var<T> normal_cdf(const Var<T>& x);  // Phi(x) = erfc(-x / sqrt 2) / 2

// a where mask is true, b elsewhere; mask, a and b broadcast together (the result has the
// broadcast shape of all three). The mask is a constant: the gradient goes to a where it is
// true and to b where it is false, summed back to each input's shape.
template <class T> Var<T> where(const xt::xarray<bool>& mask, const Var<T>& a, const Var<T>& b);
// The same with a mask of 0s and 1s (1 picks a); any other value in it is refused.
template <class T> Var<T> where(const Tensor<T>& mask01, const Var<T>& a, const Var<T>& b);
// x with `value` where mask is true (PyTorch's masked_fill); mask and x broadcast together.
// The gradient reaches x where the mask is false.
template <class T> Var<T> masked_fill(const Var<T>& x, const xt::xarray<bool>& mask, Scalar<T> value);

// detach: the same value as a constant, cut from the graph.
template <class T> Var<T> detach(const Var<T>& x);

// --- operators ---
template <class T> Var<T> operator-(const Var<T>& x) { return neg(x); }
template <class T> Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
template <class T> Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
template <class T> Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
template <class T> Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
template <class T> Var<T> operator+(const Var<T>& x, Scalar<T> s) { return add(x, s); }
template <class T> Var<T> operator+(Scalar<T> s, const Var<T>& x) { return add(x, s); }
template <class T> Var<T> operator-(const Var<T>& x, Scalar<T> s) { return add(x, -s); }
template <class T> Var<T> operator-(Scalar<T> s, const Var<T>& x) { return sub(s, x); }
template <class T> Var<T> operator*(const Var<T>& x, Scalar<T> s) { return mul(x, s); }
template <class T> Var<T> operator*(Scalar<T> s, const Var<T>& x) { return mul(x, s); }
template <class T> Var<T> operator/(const Var<T>& x, Scalar<T> s) { return div(x, s); }
template <class T> Var<T> operator/(Scalar<T> s, const Var<T>& x) { return rdiv(s, x); }

}  // namespace ad
