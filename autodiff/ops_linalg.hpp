// Matrix products, declared for T = float and T = double; definitions, each with its
// vector-Jacobian product beside it, are in ops_linalg.cpp. Decompositions are in ops_decomp.hpp.
#pragma once

#include "autodiff/tape.hpp"

namespace ad {

// matmul: [m,k]x[k,n] -> [m,n]; [m,k]x[k] -> [m]; [k]x[k,n] -> [n]; [k]x[k] -> scalar.
// Beyond that torch.matmul's rules: operands of rank >= 3 are batches of matrices in their last
// two axes, and the axes before those broadcast ([B,H,T,d] x [B,H,d,T] -> [B,H,T,T];
// [B,T,E] x [E,F] -> [B,T,F], one matrix for the whole batch; [1,T,d] x [B,d,T] -> [B,T,T]);
// a vector beside a batch is a row on the left or a column on the right, its axis dropped from
// the result. One GEMM per product of the batch, or one for all when a matrix on the right
// serves a whole batch on the left.
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b);
// Which operands of a product are read transposed: matmul(x, W, ad::transpose_b) is x W^T,
// ad::transpose_a | ad::transpose_b both; Transpose{ta, tb} when the choice is computed.
struct Transpose {
    bool a = false, b = false;
};
inline constexpr Transpose transpose_a{true, false};
inline constexpr Transpose transpose_b{false, true};
constexpr Transpose operator|(Transpose x, Transpose y) { return {x.a || y.a, x.b || y.b}; }

// op(a) op(b) for matrices, op transposing where asked: BLAS reads the transpose in place, so
// x W^T for a [out, in] weight costs no copy of W. On batches the transposes act on the last two
// axes (q k^T is matmul(q, k, ad::transpose_b)); a vector has no transpose.
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b, Transpose t);
// x W^T + b, one op (a linear layer): x [..., in] (every leading index a row: [batch, in],
// [batch, time, in]) or [in], W [out, in], b [out], y [..., out]. The bias is written into the
// output and the product added to it, so it costs no pass of its own; all rows are one GEMM.
template <class T> Var<T> affine(const Var<T>& x, const Var<T>& W, const Var<T>& b);
template <class T> Var<T> transpose(const Var<T>& x);  // reverses the axes, like NumPy's .T

}  // namespace ad
