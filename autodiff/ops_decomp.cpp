// Cholesky factor, triangular solve and log-determinant, with their VJPs. LAPACK's potrf and
// BLAS's trsm/gemm do the work, called through xtensor-blas's bindings (xflens) on row-major
// buffers.
#include "autodiff/ops_decomp.hpp"

#include "autodiff/op.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor-blas/xlapack.hpp>

#include <cmath>
#include <string>

namespace ad {

namespace {

using Index = xt::blas_index_t;

template <class S>
std::string dims(const S& s) { return shape_str(s); }

// A must be a square matrix (its handle already checked); n is its order.
template <class T>
std::size_t require_square(const char* op, const Var<T>& A, const char* what = "A")
{
    const auto& s = A.shape();
    if (s.size() != 2 || s[0] != s[1])
        fail(op, A, std::string(what) + " must be a square matrix [n, n], got shape " + dims(s));
    return s[0];
}

// L (row-major, [n, n]) = the Cholesky factor of (A + A^T) / 2, upper triangle zeroed.
// Row-major L is column-major L^T, an upper factor: so LAPACK is asked for 'U'. Called once the
// op is recorded at tape position `position`, which its error names as fail() does.
template <class T>
void cholesky_into(const char* op, std::size_t position, const Tensor<T>& A, Tensor<T>& L)
{
    const std::size_t n = A.shape()[0];
    L.resize({n, n});
    const T* a = A.data();
    T* l = L.data();
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) l[i * n + j] = T(0.5) * (a[i * n + j] + a[j * n + i]);
    if (n == 0) return;
    Index info = cxxlapack::potrf<Index>('U', Index(n), l, Index(n));
    // OpenBLAS's potrf stops at a pivot <= 0 but lets a NaN pivot through: refuse it the same way.
    for (std::size_t k = 0; info == 0 && k < n; ++k)
        if (!(l[k * n + k] > T(0))) info = Index(k + 1);
    if (info != 0)
        throw Error(std::string(op) + " (tape position " + std::to_string(position) + "): the matrix of shape " +
                    dims(A.shape()) +
                    " is not symmetric positive definite (the Cholesky factorisation of its "
                    "symmetric part fails at its leading " + std::to_string(info) + " x " +
                    std::to_string(info) + " minor)");
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = i + 1; j < n; ++j) l[i * n + j] = 0;
}

// B <- op(L)^{-1} B (side Left) or B op(L)^{-1} (side Right); L lower [n, n], B [rows, cols].
template <class T>
void trsm(cxxblas::Side side, bool transpose, const T* L, std::size_t n, T* B, std::size_t rows, std::size_t cols)
{
    if (rows == 0 || cols == 0) return;
    cxxblas::trsm<Index>(cxxblas::RowMajor, side, cxxblas::Lower,
                         transpose ? cxxblas::Trans : cxxblas::NoTrans, cxxblas::NonUnit, Index(rows),
                         Index(cols), T(1), L, Index(n), B, Index(cols));
}

// C = op(A) op(B) for row-major matrices, A [ra, ca], B [rb, cb], C [m, k].
template <class T>
void gemm(bool ta, bool tb, const T* A, std::size_t ra, std::size_t ca, const T* B, std::size_t rb,
          std::size_t cb, T* C)
{
    const std::size_t m = ta ? ca : ra, inner = ta ? ra : ca, k = tb ? rb : cb;
    if (m == 0 || k == 0) return;
    cxxblas::gemm<Index>(cxxblas::RowMajor, ta ? cxxblas::Trans : cxxblas::NoTrans,
                         tb ? cxxblas::Trans : cxxblas::NoTrans, Index(m), Index(k), Index(inner), T(1), A,
                         Index(std::max<std::size_t>(ca, 1)), B, Index(std::max<std::size_t>(cb, 1)), T(0), C,
                         Index(std::max<std::size_t>(k, 1)));
}

template <class T>
void keep_lower(Tensor<T>& M)
{
    const std::size_t n = M.shape()[0];
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = i + 1; j < n; ++j) M.data()[i * n + j] = 0;
}

// The [n, n] mask of the lower triangle, its diagonal scaled by `diagonal`: tril and Phi as
// constant factors in the differentiable VJPs.
template <class T>
Tensor<T> lower_mask(std::size_t n, T diagonal)
{
    Tensor<T> m = xt::zeros<T>({n, n});
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < i; ++j) m(i, j) = T(1);
        m(i, i) = diagonal;
    }
    return m;
}

template <class T>
Var<T> as_column(const Var<T>& x)
{
    return x.dimension() == 1 ? reshape(x, {x.shape()[0], 1}) : x;
}

}  // namespace

// A_s = (A + A^T)/2 = L L^T. With Lbar the cotangent of L (its lower triangle; the upper is
// constant zero):
//   P = Phi(L^T Lbar), Phi = the lower triangle with the diagonal halved,
//   S = L^{-T} P L^{-1},   Abar = (S + S^T) / 2.
// (From dA_s = dL L^T + L dL^T: L^{-1} dL = Phi(L^{-1} dA_s L^{-T}), and Phi is self-adjoint.)
template <class T>
Var<T> cholesky(const Var<T>& A)
{
    check_handles("cholesky", {A});
    require_square("cholesky", A);
    Op<T> op("cholesky", {A});
    cholesky_into("cholesky", op.index(), A.value(), op.out());
    return op.done([](Vjp<T>& v) {
        const std::size_t n = v.y.shape()[0];
        const T* L = v.y.data();
        Tensor<T> Lbar = v.g;
        keep_lower(Lbar);
        Tensor<T> S = Tensor<T>::from_shape({n, n});
        gemm(true, false, L, n, n, Lbar.data(), n, n, S.data());  // L^T Lbar
        keep_lower(S);
        for (std::size_t i = 0; i < n; ++i) S.data()[i * n + i] *= T(0.5);
        trsm(cxxblas::Left, true, L, n, S.data(), n, n);    // L^{-T} P
        trsm(cxxblas::Right, false, L, n, S.data(), n, n);  // ... L^{-1}
        v.acc(0, T(0.5) * (S + xt::transpose(S)));
    },
    [](GradVjp<T>& v) {
        const std::size_t n = v.y.shape()[0];
        const Var<T> L = v.y;
        const Var<T> P = matmul(L, v.g * v.constant(lower_mask(n, T(1))), transpose_a) * v.constant(lower_mask(n, T(0.5)));
        const Var<T> Y = solve_triangular(L, P, transpose_a);                        // L^{-T} P
        const Var<T> S = ad::transpose(solve_triangular(L, ad::transpose(Y), transpose_a));  // ... L^{-1}
        v.acc(0, (S + ad::transpose(S)) * T(0.5));
    });
}
AD_INSTANTIATE(cholesky, sig::Unary)

// X = op(L)^{-1} B.
//   op(L) = L:    Bbar = L^{-T} Xbar,  Lbar = -tril(Bbar X^T)
//   op(L) = L^T:  Bbar = L^{-1} Xbar,  Lbar = -tril(X Bbar^T)
// (dX = -op(L)^{-1} d op(L) X; only L's lower triangle is read, so Lbar is lower triangular.)
// Attribute: transpose.
template <class T>
Var<T> solve_triangular(const Var<T>& L, const Var<T>& B, Transpose t)
{
    check_handles("solve_triangular", {L, B});
    if (t.b)
        fail("solve_triangular", L,
             "transpose_b was given, but only L (the first operand) can be read transposed; B of shape " +
                 dims(B.shape()) + " is solved for as it is");
    const bool transpose = t.a;
    const std::size_t n = require_square("solve_triangular", L, "L");
    const auto& bs = B.shape();
    if (bs.size() < 1 || bs.size() > 2 || bs[0] != n)
        fail("solve_triangular", L,
             "L of shape " + dims(L.shape()) + " and B of shape " + dims(bs) + " do not match: B must be [" +
                 std::to_string(n) + "] or [" + std::to_string(n) + ", k]");
    for (std::size_t i = 0; i < n; ++i)
        if (!(L.value().data()[i * n + i] != T(0)))
            fail("solve_triangular", L,
                 "L of shape " + dims(L.shape()) + " is singular: L[" + std::to_string(i) + ", " +
                     std::to_string(i) + "] = 0");
    Op<T> op("solve_triangular", {L, B});
    xt::noalias(op.out()) = B.value();
    trsm(cxxblas::Left, transpose, L.value().data(), n, op.out().data(), n, bs.size() == 1 ? 1 : bs[1]);
    const bool tr = transpose;
    return op.done([tr](Vjp<T>& v) {
        const std::size_t n = v.x(0).shape()[0];
        const std::size_t k = v.y.dimension() == 1 ? 1 : v.y.shape()[1];
        const T* Lp = v.x(0).data();
        Tensor<T> Bbar = v.g;
        trsm(cxxblas::Left, !tr, Lp, n, Bbar.data(), n, k);
        if (v.wants(0)) {
            Tensor<T> Lbar = Tensor<T>::from_shape({n, n});
            if (!tr) gemm(false, true, Bbar.data(), n, k, v.y.data(), n, k, Lbar.data());
            else gemm(false, true, v.y.data(), n, k, Bbar.data(), n, k, Lbar.data());
            keep_lower(Lbar);
            v.acc(0, -Lbar);
        }
        v.acc(1, Bbar);
    },
    [tr](GradVjp<T>& v) {
        const Var<T> L = v.x(0);
        const Var<T> Bbar = solve_triangular(L, v.g, Transpose{!tr, false});
        if (v.wants(0)) {
            const Var<T> X = as_column(v.y), Bc = as_column(Bbar);
            const Var<T> outer = !tr ? matmul(Bc, X, transpose_b) : matmul(X, Bc, transpose_b);
            v.acc(0, -(outer * v.constant(lower_mask(L.shape()[0], T(1)))));
        }
        v.acc(1, Bbar);
    });
}
namespace sig {
template <class T> using Solve = Var<T>(const Var<T>&, const Var<T>&, Transpose);
}
AD_INSTANTIATE(solve_triangular, sig::Solve)

// y = log det A_s = 2 sum_i log L_ii;  Abar = g A_s^{-1} = g L^{-T} L^{-1}.  Saved: L
template <class T>
Var<T> logdet(const Var<T>& A)
{
    check_handles("logdet", {A});
    const std::size_t n = require_square("logdet", A);
    Op<T> op("logdet", {A});
    auto& L = op.save(0);
    cholesky_into("logdet", op.index(), A.value(), L);
    T y = 0;
    for (std::size_t i = 0; i < n; ++i) y += std::log(L.data()[i * n + i]);
    op.out().resize({});
    op.out()() = 2 * y;
    return op.done([](Vjp<T>& v) {
        const Tensor<T>& L = v.saved(0);
        const std::size_t n = L.shape()[0];
        Tensor<T> Linv = xt::eye<T>(n);
        trsm(cxxblas::Left, false, L.data(), n, Linv.data(), n, n);
        Tensor<T> Ainv = Tensor<T>::from_shape({n, n});
        gemm(true, false, Linv.data(), n, n, Linv.data(), n, n, Ainv.data());
        v.acc(0, v.g() * Ainv);
    },
    [](GradVjp<T>& v) {  // A^{-1} = L^{-T} L^{-1}, with L recomputed as an op
        const std::size_t n = v.x(0).shape()[0];
        const Var<T> Linv = solve_triangular(cholesky(v.x(0)), v.constant(xt::eye<T>(n)));
        v.acc(0, matmul(Linv, Linv, transpose_a) * v.g);
    });
}
AD_INSTANTIATE(logdet, sig::Unary)

}  // namespace ad
