// Matrix products on row-major buffers through BLAS (xt::blas), written straight into the
// output or adjoint buffer: the kernels behind matmul and affine.
#pragma once

#include "autodiff/kernels/parallel.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

#include <algorithm>
#include <array>
#include <cstddef>

namespace ad::kernels {

using Dims = std::array<std::size_t, 2>;

// A row-major matrix view of a buffer, for BLAS.
template <class T>
auto as_matrix(T* data, Dims d)
{
    return xt::adapt(data, d[0] * d[1], xt::no_ownership(), d);
}

template <class T>
auto as_vector(T* data, std::size_t n)
{
    return xt::adapt(data, n, xt::no_ownership(), std::array<std::size_t, 1>{n});
}

// y (+)= M x, or M^T x when `transpose`, for a row-major M of [rows, cols]. OpenBLAS (0.3.21)
// hands a GEMV of rows * cols >= 2304 * 4 to its thread pool, and waking the pool costs more
// than a product this small (bench b, one example per step: 48 us at two threads against 19 at
// one). Blocks of rows below that size keep every call on the calling thread.
template <class T>
void gemv(const T* M, Dims m, bool transpose, const T* x, T* y, T beta)
{
    constexpr std::size_t single_thread_size = 2304 * 4 - 1;
    const std::size_t block = std::max<std::size_t>(1, single_thread_size / m[1]);
    for (std::size_t r0 = 0; r0 < m[0]; r0 += block) {
        const std::size_t rows = std::min(block, m[0] - r0);
        auto Mb = as_matrix(M + r0 * m[1], Dims{rows, m[1]});
        if (transpose) {  // y = sum over blocks of Mb^T x[block]
            auto xb = as_vector(x + r0, rows);
            auto yv = as_vector(y, m[1]);
            xt::blas::gemv(Mb, xb, yv, true, T(1), r0 == 0 ? beta : T(1));
        } else {
            auto xv = as_vector(x, m[1]);
            auto yb = as_vector(y + r0, rows);
            xt::blas::gemv(Mb, xv, yb, false, T(1), beta);
        }
    }
}

// C (+)= x y^T for C of [m, n]. OpenBLAS's GEMM packs both vectors and, with beta = 0, first
// zeroes C in a pass of its own; this writes each element of C once.
template <class T>
void outer(const T* x, std::size_t m, const T* y, std::size_t n, T* C, bool accumulate)
{
    for (std::size_t i = 0; i < m; ++i) {
        const T xi = x[i];
        T* row = C + i * n;
        if (accumulate)
            for (std::size_t j = 0; j < n; ++j) row[j] += xi * y[j];
        else
            for (std::size_t j = 0; j < n; ++j) row[j] = xi * y[j];
    }
}

// Two independent products of at least this many multiply-adds each (a layer's dx and dW) run
// side by side, one per thread, when the pool has two (parallel_invoke). OpenBLAS 0.3.21 splits
// one product of this size over two threads poorly: dx and dW of a [64, 256] x [256, 256] layer
// in float take 134 us one after the other on two threads and 93 us side by side, and 64x128x128
// 51 against 27; 32x64x64 (2^17) takes 6.4 against 7.1, where waking the second thread costs
// more than it saves (OMP_NUM_THREADS=2 ad_bench_gemm_pairs; AMD EPYC, 2 cores, Haswell kernels).
inline constexpr std::size_t concurrent_gemm_min = std::size_t(1) << 18;

// C (+)= op(A) op(B) on [rows, cols] buffers; accumulate selects beta = 1. A product with one
// row or one column of output (a single example through a layer) goes to GEMV: OpenBLAS's GEMM
// is several times slower there (1x784 by 784x128 in float: 23 us against 3.4 us). A vector
// operand is contiguous whether it is stored as a row or as a column.
template <class T>
void gemm(const T* A, Dims a, bool ta, const T* B, Dims b, bool tb, T* C, Dims c, bool accumulate)
{
    const T beta = accumulate ? T(1) : T(0);
    const std::size_t k = ta ? a[0] : a[1];
    if (k > 0 && c[0] == 1 && c[1] > 1) {  // c^T = op(B)^T a: B^T a when B is [k, n], B a when [n, k]
        gemv(B, b, !tb, A, C, beta);
        return;
    }
    if (k > 0 && c[1] == 1 && c[0] > 1) {  // c = op(A) b
        gemv(A, a, ta, B, C, beta);
        return;
    }
    if (k == 1) {  // an outer product (a weight's gradient from one example): one pass over C
        outer(A, c[0], B, c[1], C, accumulate);
        return;
    }
    // A product that overwrites C zeroes it here and adds: with beta = 0 OpenBLAS first zeroes C
    // itself in a scalar loop (sgemm_beta), 11% of config c's CPU time at two threads (perf of
    // ad_bench_profile c 3000 ours 2). The sums are the same either way: the products added to
    // zeros.
    if (!accumulate)
        parallel_for(c[0] * c[1], 1, [C](std::size_t b, std::size_t e) { std::fill(C + b, C + e, T(0)); });
    auto Am = as_matrix(A, a);
    auto Bm = as_matrix(B, b);
    auto Cm = as_matrix(C, c);
    xt::blas::gemm(Am, Bm, Cm, ta, tb, T(1), T(1));
}

}  // namespace ad::kernels
