// Matrix products through BLAS (xt::blas::gemm), writing straight into the output and adjoint
// buffers, the affine map of a linear layer, and transpose.
#include "autodiff/ops.hpp"

#include "autodiff/detail/op.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xmanipulation.hpp>

#include <algorithm>
#include <array>

namespace ad {

namespace {

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
    auto Am = as_matrix(A, a);
    auto Bm = as_matrix(B, b);
    auto Cm = as_matrix(C, c);
    xt::blas::gemm(Am, Bm, Cm, ta, tb, T(1), beta);
}

// The 2-D shapes BLAS sees: a vector is a row on the left of a product and a column on the
// right. r.ints = {transpose_a, transpose_b}.
template <class S>
Dims left_dims(const S& s) { return s.size() == 1 ? Dims{1, s[0]} : Dims{s[0], s[1]}; }
template <class S>
Dims right_dims(const S& s) { return s.size() == 1 ? Dims{s[0], 1} : Dims{s[0], s[1]}; }

// d(op(A) op(B)): d op(A) = G op(B)^T and d op(B) = op(A)^T G, each written as one GEMM on the
// stored (untransposed) operands.
template <class T>
void matmul_vjp(Vjp<T>& v)
{
    const bool ta = v.r.ints[0] != 0, tb = v.r.ints[1] != 0;
    const Dims a = left_dims(v.x(0).shape()), b = right_dims(v.x(1).shape());
    const Dims c{ta ? a[1] : a[0], tb ? b[0] : b[1]};
    const T* G = v.g.data();
    bool first;
    if (v.wants(0)) {
        T* dA = v.slot(0, first).data();
        if (!ta) gemm(G, c, false, v.x(1).data(), b, !tb, dA, a, !first);
        else gemm(v.x(1).data(), b, tb, G, c, true, dA, a, !first);
    }
    if (v.wants(1)) {
        T* dB = v.slot(1, first).data();
        if (!tb) gemm(v.x(0).data(), a, !ta, G, c, false, dB, b, !first);
        else gemm(G, c, true, v.x(0).data(), a, ta, dB, b, !first);
    }
}

template <class T>
Var<T> matmul_impl(const Var<T>& A, const Var<T>& B, bool ta, bool tb)
{
    check_handles("matmul", {A, B});
    const auto& as = A.shape();
    const auto& bs = B.shape();
    const bool vectors = as.size() == 1 || bs.size() == 1;
    if (as.size() < 1 || as.size() > 2 || bs.size() < 1 || bs.size() > 2 || (vectors && (ta || tb)))
        throw Error("matmul: operands must be matrices or vectors (transposes only of matrices), "
                    "got shapes " + shape_str(as) + " and " + shape_str(bs));
    const Dims a = left_dims(as), b = right_dims(bs);
    const std::size_t m = ta ? a[1] : a[0], k = ta ? a[0] : a[1];
    const std::size_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
    if (k != kb)
        throw Error("matmul: shapes " + shape_str(as) + (ta ? "^T" : "") + " and " +
                    shape_str(bs) + (tb ? "^T" : "") + " do not chain: the inner dimensions " +
                    std::to_string(k) + " and " + std::to_string(kb) + " must be equal");
    Op<T> op("matmul", {A, B}, matmul_vjp<T>);
    op.record().ints = {ta, tb};
    typename Tensor<T>::shape_type out;  // inline storage: no allocation per product
    if (as.size() == 2) out.push_back(m);
    if (bs.size() == 2) out.push_back(n);
    op.out().resize(out);
    gemm(A.value().data(), a, ta, B.value().data(), b, tb, op.out().data(), Dims{m, n}, false);
    return op.done();
}

}  // namespace

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b)
{
    return matmul_impl(a, b, false, false);
}

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b)
{
    return matmul_impl(a, b, transpose_a, transpose_b);
}

// y = x W^T + b for x [batch, in] (or [in]), W [out, in], b [out]: the bias rows are written
// into y first and the GEMM adds into them (beta = 1). dx = G W, dW = G^T x, db = sum_rows G.
template <class T>
Var<T> affine(const Var<T>& x, const Var<T>& W, const Var<T>& b)
{
    check_handles("affine", {x, W, b});
    const auto& xs = x.shape();
    const auto& ws = W.shape();
    const auto& bs = b.shape();
    if (ws.size() != 2 || (xs.size() != 1 && xs.size() != 2) || xs.back() != ws[1] || bs.size() != 1 ||
        bs[0] != ws[0])
        throw Error("affine: x " + shape_str(xs) + ", W " + shape_str(ws) + " and b " + shape_str(bs) +
                    " do not fit x W^T + b; expected x [batch, in] or [in], W [out, in], b [out]");
    Op<T> op("affine", {x, W, b}, [](Vjp<T>& v) {
        const Dims w{v.x(1).shape()[0], v.x(1).shape()[1]};
        const std::size_t rows = v.x(0).size() / w[1];
        const Dims xd{rows, w[1]}, gd{rows, w[0]};
        const T* G = v.g.data();
        bool first;
        if (v.wants(0)) {
            T* dx = v.slot(0, first).data();
            gemm(G, gd, false, v.x(1).data(), w, false, dx, xd, !first);
        }
        if (v.wants(1)) {
            T* dW = v.slot(1, first).data();
            gemm(G, gd, true, v.x(0).data(), xd, false, dW, w, !first);
        }
        if (v.wants(2)) {
            T* db = v.slot(2, first).data();
            if (first) sum_rows(G, rows, w[0], db);
            else add_rows(G, rows, w[0], db);
        }
    });
    const std::size_t out = ws[0], rows = xs.size() == 2 ? xs[0] : 1;
    typename Tensor<T>::shape_type shape;  // inline storage: no allocation per product
    if (xs.size() == 2) shape.push_back(rows);
    shape.push_back(out);
    auto& y = op.out();
    y.resize(shape);
    const T* bp = b.value().data();
    for (std::size_t r = 0; r < rows; ++r) std::copy_n(bp, out, y.data() + r * out);
    gemm(x.value().data(), Dims{rows, ws[1]}, false, W.value().data(), Dims{out, ws[1]}, true, y.data(),
         Dims{rows, out}, true);
    return op.done();
}

// d(x^T) = g^T
template <class T>
Var<T> transpose(const Var<T>& x)
{
    Op<T> op("transpose", {x}, [](Vjp<T>& v) { v.acc(0, xt::transpose(v.g)); });
    xt::noalias(op.out()) = xt::transpose(x.value());
    return op.done();
}

#define AD_INSTANTIATE(T)                                                   \
    template Var<T> matmul(const Var<T>&, const Var<T>&);                   \
    template Var<T> matmul(const Var<T>&, const Var<T>&, bool, bool);       \
    template Var<T> affine(const Var<T>&, const Var<T>&, const Var<T>&);   \
    template Var<T> transpose(const Var<T>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
