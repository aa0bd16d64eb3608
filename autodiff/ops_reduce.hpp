// Reductions, declared for T = float and T = double; definitions, each with its
// vector-Jacobian product beside it, are in ops_reduce.cpp. A negative axis counts from the end.
// The choices where an op is not differentiable, and for NaN, are listed in autodiff/ops.hpp.
#pragma once

#include "autodiff/tape.hpp"

#include <cstddef>

namespace ad {

template <class T> Var<T> sum(const Var<T>& x);  // all elements, shape []
template <class T> Var<T> sum(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> mean(const Var<T>& x);
template <class T> Var<T> mean(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> max(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> logsumexp(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);
template <class T> Var<T> norm(const Var<T>& x);  // L2 norm of all elements, shape []

}  // namespace ad
