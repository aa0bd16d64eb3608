// Reductions, declared for T = float and T = double; definitions, each with its
// vector-Jacobian product beside it, are in ops_reduce.cpp. A negative axis counts from the end.
// The choices where an op is not differentiable, and for NaN, are listed in autodiff/ops.hpp.
#pragma once

#include "autodiff/tape.hpp"

#include <cstddef>

namespace ad {

// Whether a reduction keeps the reduced axis with length 1 (NumPy's and PyTorch's keepdims):
// sum(x, 1, ad::keepdims). A type of its own, so no bare bool stands for it at a call site;
// KeepDims{flag} when the choice is computed.
struct KeepDims {
    bool keep = false;
};
inline constexpr KeepDims keepdims{true};

template <class T> Var<T> sum(const Var<T>& x);  // all elements, shape []
template <class T> Var<T> sum(const Var<T>& x, std::ptrdiff_t axis, KeepDims k = {});
template <class T> Var<T> mean(const Var<T>& x);
template <class T> Var<T> mean(const Var<T>& x, std::ptrdiff_t axis, KeepDims k = {});
template <class T> Var<T> max(const Var<T>& x, std::ptrdiff_t axis, KeepDims k = {});
template <class T> Var<T> logsumexp(const Var<T>& x, std::ptrdiff_t axis, KeepDims k = {});
template <class T> Var<T> norm(const Var<T>& x);  // L2 norm of all elements, shape []

}  // namespace ad
