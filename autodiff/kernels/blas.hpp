// Matrix products on row-major buffers through BLAS (xt::blas; the smallest as plain loops),
// written straight into the output or adjoint buffer: the kernels behind matmul and affine.
#pragma once

#include "autodiff/kernels/parallel.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <string>

extern "C" char* openblas_get_corename();

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

// Two independent products of at least this many multiply-adds each (matmul's dA and dB) run
// side by side, one per thread, when the pool has two (parallel_invoke); a linear layer's
// gradients of this size run in two halves of its output features (affine's VJP). OpenBLAS
// 0.3.21 splits one product of this size over two threads poorly: dx and dW of a [64, 256] x
// [256, 256] layer in float take 134 us one after the other on two threads and 93 us side by
// side, and 64x128x128 51 against 27; 32x64x64 (2^17) takes 6.4 against 7.1, where waking the
// second thread costs more than it saves (OMP_NUM_THREADS=2 ad_bench_gemm_pairs; AMD EPYC, 2
// cores, Haswell kernels).
inline constexpr std::size_t concurrent_gemm_min = std::size_t(1) << 18;

// Products of at most this many multiply-adds run as plain loops (gemm_loops): a BLAS call costs
// a fixed 35-50 ns before any arithmetic. In a loop of calls (ad_bench_gemm_small, float, one
// thread) 4x8x2 takes 36 ns through BLAS and 23 in the loops, 4x8x4 39 against 34 and 8x8x4 52
// against 65. Inside a training step BLAS's fixed cost is higher (its code and buffers are cold):
// config a, whose four products are all below this, went from 1.28 to 1.03 us a step.
inline constexpr std::size_t small_gemm_max = 128;

namespace detail {
// C(i, j) (+)= sum over p of A(i, p) B(p, j), for i < m, j < n, p < k, each matrix given by its
// two strides. Four columns of a row are summed side by side, each over p = 0 .. k-1 in turn:
// four independent chains of additions instead of one.
template <class T>
void dot_loops(const T* A, std::size_t a_i, std::size_t a_p, const T* B, std::size_t b_p, std::size_t b_j, T* C,
               std::size_t c_i, std::size_t c_j, std::size_t m, std::size_t n, std::size_t k, bool accumulate)
{
    for (std::size_t i = 0; i < m; ++i) {
        const T* Ai = A + i * a_i;
        T* Ci = C + i * c_i;
        std::size_t j = 0;
        for (; j + 4 <= n; j += 4) {
            T s[4] = {0, 0, 0, 0};
            for (std::size_t p = 0; p < k; ++p) {
                const T x = Ai[p * a_p];
                const T* Bp = B + p * b_p + j * b_j;
                for (std::size_t q = 0; q < 4; ++q) s[q] += x * Bp[q * b_j];
            }
            for (std::size_t q = 0; q < 4; ++q) {
                T& out = Ci[(j + q) * c_j];
                out = accumulate ? out + s[q] : s[q];
            }
        }
        for (; j < n; ++j) {
            T s = 0;
            for (std::size_t p = 0; p < k; ++p) s += Ai[p * a_p] * B[p * b_p + j * b_j];
            T& out = Ci[j * c_j];
            out = accumulate ? out + s : s;
        }
    }
}
}  // namespace detail

// C (+)= op(A) op(B) as plain loops, for products too small for a BLAS call. Every element is
// one dot product summed in order of p. With fewer than four columns and more rows, the loops
// run over C^T = op(B)^T op(A)^T instead, so that four sums still run side by side.
template <class T>
void gemm_loops(const T* A, Dims a, bool ta, const T* B, Dims b, bool tb, T* C, Dims c, bool accumulate)
{
    const std::size_t m = c[0], n = c[1], k = ta ? a[0] : a[1];
    // strides of op(A)'s rows and columns, and of op(B)'s
    const std::size_t a_i = ta ? 1 : a[1], a_p = ta ? a[1] : 1, b_p = tb ? 1 : b[1], b_j = tb ? b[1] : 1;
    if (n < 4 && m > n)
        detail::dot_loops(B, b_j, b_p, A, a_p, a_i, C, 1, n, n, m, k, accumulate);
    else
        detail::dot_loops(A, a_i, a_p, B, b_p, b_j, C, n, 1, m, n, k, accumulate);
}

// C (+)= op(A) op(B) through BLAS, where A may be a block of a wider row-major matrix, its rows
// lda apart (a block of columns of a layer's cotangent, in affine's halves); B and C are
// contiguous. No small-product or GEMV cases: gemm below chooses those.
//
// A product that overwrites C zeroes it here and adds: with beta = 0 OpenBLAS first zeroes C
// itself in a scalar loop (sgemm_beta), 11% of config c's CPU time at two threads (perf of
// ad_bench_profile c 3000 ours 2). The sums are the same either way: the products added to zeros.
template <class T>
void gemm_block(const T* A, Dims a, std::size_t lda, bool ta, const T* B, Dims b, bool tb, T* C, Dims c,
                bool accumulate)
{
    using Index = xt::blas_index_t;
    const std::size_t k = ta ? a[0] : a[1];
    if (!accumulate)
        parallel_for(c[0] * c[1], 1, [C](std::size_t b, std::size_t e) { std::fill(C + b, C + e, T(0)); });
    cxxblas::gemm<Index>(cxxblas::StorageOrder::RowMajor, ta ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans,
                         tb ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans, Index(c[0]), Index(c[1]),
                         Index(k), T(1), A, Index(lda), B, Index(b[1]), T(1), C, Index(c[1]));
}

// Whether OpenBLAS has its direct small-matrix GEMM kernels for this CPU (0.3.21: the SkylakeX,
// Cooperlake and SapphireRapids cores). They take a product of at most 10^6 multiply-adds in one
// call on the calling thread, one row of output as fast as GEMV does.
inline bool blas_small_matrix_kernels()
{
    static const bool yes = [] {
        std::string core = openblas_get_corename();
        for (auto& ch : core) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        return core == "skylakex" || core == "cooperlake" || core == "sapphirerapids";
    }();
    return yes;
}
inline constexpr std::size_t blas_small_matrix_max = 1000000;

// C (+)= op(A) op(B) on [rows, cols] buffers; accumulate selects beta = 1. A product with one
// row or one column of output (a single example through a layer) goes to GEMV: OpenBLAS's GEMM
// is several times slower there (1x784 by 784x128 in float: 23 us against 3.4 us, Haswell
// kernels). One row of output goes to GEMM after all where OpenBLAS has its small-matrix kernels:
// GEMV must be called in blocks of rows to stay on one thread, and bench b's step (one example
// through 784-128-10) took 20.9 us that way against 17.8 through GEMM (`ad_bench_profile b`),
// and in float64 41.6-42.6 against 37.9-39.3 (`ad_bench --configs '' --float64 b`; Cooperlake
// kernels, AMD EPYC, family 25). A vector operand is contiguous whether it is stored as a row or
// as a column.
template <class T>
void gemm(const T* A, Dims a, bool ta, const T* B, Dims b, bool tb, T* C, Dims c, bool accumulate)
{
    const T beta = accumulate ? T(1) : T(0);
    const std::size_t k = ta ? a[0] : a[1];
    if (c[0] * c[1] * k <= small_gemm_max) {
        gemm_loops(A, a, ta, B, b, tb, C, c, accumulate);
        return;
    }
    if (k > 0 && c[0] == 1 && c[1] > 1 && !(blas_small_matrix_kernels() && c[1] * k <= blas_small_matrix_max)) {
        gemv(B, b, !tb, A, C, beta);  // c^T = op(B)^T a: B^T a when B is [k, n], B a when [n, k]
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
    gemm_block(A, a, a[1], ta, B, b, tb, C, c, accumulate);
}

}  // namespace ad::kernels
