// Cholesky factor, triangular solve and log-determinant, with their VJPs. LAPACK's potrf and
// BLAS's trsm/gemm do the work, called through xtensor-blas's bindings (xflens) on row-major
// buffers.
#include "autodiff/linalg.hpp"

#include "autodiff/detail/op.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor-blas/xlapack.hpp>

#include <cmath>
#include <string>

namespace ad {

namespace {

using Index = xt::blas_index_t;

template <class S>
std::string dims(const S& s) { return shape_str(s); }

// A must be a square matrix; n is its order.
template <class T>
std::size_t require_square(const char* op, const Var<T>& A, const char* what = "A")
{
    const auto& s = A.shape();
    if (s.size() != 2 || s[0] != s[1])
        throw Error(std::string(op) + ": " + what + " must be a square matrix [n, n], got shape " + dims(s));
    return s[0];
}

// L (row-major, [n, n]) = the Cholesky factor of (A + A^T) / 2, upper triangle zeroed.
// Row-major L is column-major L^T, an upper factor: so LAPACK is asked for 'U'.
template <class T>
void cholesky_into(const char* op, const Tensor<T>& A, Tensor<T>& L)
{
    const std::size_t n = A.shape()[0];
    L.resize({n, n});
    const T* a = A.data();
    T* l = L.data();
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) l[i * n + j] = T(0.5) * (a[i * n + j] + a[j * n + i]);
    if (n == 0) return;
    const Index info = cxxlapack::potrf<Index>('U', Index(n), l, Index(n));
    if (info != 0)
        throw Error(std::string(op) + ": the matrix of shape " + dims(A.shape()) +
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

}  // namespace

// A_s = (A + A^T)/2 = L L^T. With Lbar the cotangent of L (its lower triangle; the upper is
// constant zero):
//   P = Phi(L^T Lbar), Phi = the lower triangle with the diagonal halved,
//   S = L^{-T} P L^{-1},   Abar = (S + S^T) / 2.
// (From dA_s = dL L^T + L dL^T: L^{-1} dL = Phi(L^{-1} dA_s L^{-T}), and Phi is self-adjoint.)
template <class T>
Var<T> cholesky(const Var<T>& A)
{
    require_square("cholesky", A);
    Op<T> op("cholesky", {A}, [](Vjp<T>& v) {
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
    });
    cholesky_into("cholesky", A.value(), op.out());
    return op.done();
}

// X = op(L)^{-1} B.
//   op(L) = L:    Bbar = L^{-T} Xbar,  Lbar = -tril(Bbar X^T)
//   op(L) = L^T:  Bbar = L^{-1} Xbar,  Lbar = -tril(X Bbar^T)
// (dX = -op(L)^{-1} d op(L) X; only L's lower triangle is read, so Lbar is lower triangular.)
// r.ints = {transpose}
template <class T>
Var<T> solve_triangular(const Var<T>& L, const Var<T>& B, bool transpose)
{
    const std::size_t n = require_square("solve_triangular", L, "L");
    const auto& bs = B.shape();
    if (bs.size() < 1 || bs.size() > 2 || bs[0] != n)
        throw Error("solve_triangular: L of shape " + dims(L.shape()) + " and B of shape " + dims(bs) +
                    " do not match: B must be [" + std::to_string(n) + "] or [" + std::to_string(n) +
                    ", k]");
    for (std::size_t i = 0; i < n; ++i)
        if (!(L.value().data()[i * n + i] != T(0)))
            throw Error("solve_triangular: L of shape " + dims(L.shape()) + " is singular: L[" +
                        std::to_string(i) + ", " + std::to_string(i) + "] = 0");
    Op<T> op("solve_triangular", {L, B}, [](Vjp<T>& v) {
        const bool tr = v.r.ints[0] != 0;
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
    });
    op.record().ints = {transpose};
    xt::noalias(op.out()) = B.value();
    trsm(cxxblas::Left, transpose, L.value().data(), n, op.out().data(), n, bs.size() == 1 ? 1 : bs[1]);
    return op.done();
}

// y = log det A_s = 2 sum_i log L_ii;  Abar = g A_s^{-1} = g L^{-T} L^{-1}.  r.saved = L
template <class T>
Var<T> logdet(const Var<T>& A)
{
    const std::size_t n = require_square("logdet", A);
    Op<T> op("logdet", {A}, [](Vjp<T>& v) {
        const Tensor<T>& L = v.r.saved;
        const std::size_t n = L.shape()[0];
        Tensor<T> Linv = xt::eye<T>(n);
        trsm(cxxblas::Left, false, L.data(), n, Linv.data(), n, n);
        Tensor<T> Ainv = Tensor<T>::from_shape({n, n});
        gemm(true, false, Linv.data(), n, n, Linv.data(), n, n, Ainv.data());
        v.acc(0, v.g() * Ainv);
    });
    auto& L = op.record().saved;
    cholesky_into("logdet", A.value(), L);
    T y = 0;
    for (std::size_t i = 0; i < n; ++i) y += std::log(L.data()[i * n + i]);
    op.out().resize({});
    op.out()() = 2 * y;
    return op.done();
}

#define AD_INSTANTIATE(T)                                                      \
    template Var<T> cholesky(const Var<T>&);                                   \
    template Var<T> solve_triangular(const Var<T>&, const Var<T>&, bool);      \
    template Var<T> logdet(const Var<T>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
