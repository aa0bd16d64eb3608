// Differentiable decompositions of symmetric positive definite matrices, and triangular solves:
// what a Gaussian log-likelihood needs (log det C and C^{-1} applied to data, both through the
// Cholesky factor of C). Definitions, each with its vector-Jacobian product beside it, are in
// ops_decomp.cpp; the factorisations run through LAPACK and BLAS.
//
// A symmetric matrix has fewer free entries than it has elements, so an op on one must say what
// it does with the rest. cholesky and logdet read a square A as its symmetric part
// (A + A^T) / 2. Their gradients are then true gradients for all n^2 entries (symmetric
// matrices), and a finite difference in any single entry agrees with them.
#pragma once

#include "autodiff/ops_linalg.hpp"
#include "autodiff/tape.hpp"

namespace ad {

// The lower-triangular L with positive diagonal and L L^T = (A + A^T) / 2. A is [n, n] and its
// symmetric part must be positive definite.
template <class T>
Var<T> cholesky(const Var<T>& A);

// X with L X = B, or L^T X = B with ad::transpose_a (L is the operand read transposed; B never
// is). L is [n, n] lower triangular with a nonzero diagonal; its strict upper triangle is never
// read (so its gradient there is zero). B is [n] or [n, k]; X has B's shape.
template <class T>
Var<T> solve_triangular(const Var<T>& L, const Var<T>& B, Transpose t = {});

// log det A for a symmetric positive definite A (read as (A + A^T) / 2), as 2 sum_i log L_ii
// from its Cholesky factor: no determinant is formed, so it neither overflows nor underflows.
// Its gradient is A^{-1}.
template <class T>
Var<T> logdet(const Var<T>& A);

}  // namespace ad
