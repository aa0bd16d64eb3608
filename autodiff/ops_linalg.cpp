// Matrix products through BLAS (kernels/blas.hpp), writing straight into the output and
// adjoint buffers, the affine map of a linear layer, and transpose.
#include "autodiff/ops_linalg.hpp"

#include "autodiff/op.hpp"

#include "autodiff/kernels/blas.hpp"

#include <xtensor/xmanipulation.hpp>

namespace ad {

namespace {

using kernels::Dims;
using kernels::gemm;

// The 2-D shapes BLAS sees: a vector is a row on the left of a product and a column on the
// right.
template <class S>
Dims left_dims(const S& s) { return s.size() == 1 ? Dims{1, s[0]} : Dims{s[0], s[1]}; }
template <class S>
Dims right_dims(const S& s) { return s.size() == 1 ? Dims{s[0], 1} : Dims{s[0], s[1]}; }

// The dims of op(A) op(B) = C as BLAS sees them.
struct Product {
    Dims a, b, c;
    template <class S1, class S2>
    Product(const S1& as, const S2& bs, bool ta, bool tb)
        : a(left_dims(as)), b(right_dims(bs)), c{ta ? a[1] : a[0], tb ? b[0] : b[1]}
    {
    }
};

template <class T>
Var<T> as_2d(const Var<T>& x, Dims d)
{
    return x.dimension() == 2 ? x : reshape(x, {d[0], d[1]});
}

template <class T>
Var<T> as_shape(const Var<T>& x, const Shape& s)
{
    return x.shape() == s ? x : reshape(x, s);
}

template <class T>
Var<T> matmul_impl(const Var<T>& A, const Var<T>& B, bool ta, bool tb)
{
    check_handles("matmul", {A, B});
    const auto& as = A.shape();
    const auto& bs = B.shape();
    const bool vectors = as.size() == 1 || bs.size() == 1;
    if (as.size() < 1 || as.size() > 2 || bs.size() < 1 || bs.size() > 2 || (vectors && (ta || tb)))
        fail("matmul", A, "operands must be matrices or vectors (transposes only of matrices), got shapes " +
                              shape_str(as) + " and " + shape_str(bs));
    const Dims a = left_dims(as), b = right_dims(bs);
    const std::size_t m = ta ? a[1] : a[0], k = ta ? a[0] : a[1];
    const std::size_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
    if (k != kb)
        fail("matmul", A, "shapes " + shape_str(as) + (ta ? "^T" : "") + " and " + shape_str(bs) +
                              (tb ? "^T" : "") + " do not chain: the inner dimensions " + std::to_string(k) +
                              " and " + std::to_string(kb) + " must be equal");
    Op<T> op("matmul", {A, B});
    Shape out;  // inline storage: no allocation per product
    if (as.size() == 2) out.push_back(m);
    if (bs.size() == 2) out.push_back(n);
    op.out().resize(out);
    gemm(A.value().data(), a, ta, B.value().data(), b, tb, op.out().data(), Dims{m, n}, false);
    // d(op(A) op(B)): d op(A) = G op(B)^T and d op(B) = op(A)^T G, each one product of the
    // stored (untransposed) operands.
    return op.done(
        [ta, tb](Vjp<T>& v) {
            const auto [a, b, c] = Product(v.x(0).shape(), v.x(1).shape(), ta, tb);
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
        },
        [ta, tb](GradVjp<T>& v) {  // the same products as matmuls, vectors seen as [1, k] and [k, 1]
            const auto [a, b, c] = Product(v.x(0).shape(), v.x(1).shape(), ta, tb);
            const Var<T> A2 = as_2d(v.x(0), a), B2 = as_2d(v.x(1), b), G = as_2d(v.g, c);
            if (v.wants(0))
                v.acc(0, as_shape(!ta ? matmul(G, B2, Transpose{false, !tb}) : matmul(B2, G, Transpose{tb, true}), v.x(0).shape()));
            if (v.wants(1))
                v.acc(1, as_shape(!tb ? matmul(A2, G, Transpose{!ta, false}) : matmul(G, A2, Transpose{true, ta}), v.x(1).shape()));
        });
}

}  // namespace

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b)
{
    return matmul_impl(a, b, false, false);
}
AD_INSTANTIATE(matmul, sig::Binary)

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, Transpose t)
{
    return matmul_impl(a, b, t.a, t.b);
}
namespace sig {
template <class T> using MatmulT = Var<T>(const Var<T>&, const Var<T>&, Transpose);
}
AD_INSTANTIATE(matmul, sig::MatmulT)

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
        fail("affine", x, "x " + shape_str(xs) + ", W " + shape_str(ws) + " and b " + shape_str(bs) +
                              " do not fit x W^T + b; expected x [batch, in] or [in], W [out, in], b [out]");
    Op<T> op("affine", {x, W, b});
    const std::size_t out = ws[0], rows = xs.size() == 2 ? xs[0] : 1;
    Shape shape;  // inline storage: no allocation per product
    if (xs.size() == 2) shape.push_back(rows);
    shape.push_back(out);
    auto& y = op.out();
    y.resize(shape);
    const T* bp = b.value().data();
    for (std::size_t r = 0; r < rows; ++r) std::copy_n(bp, out, y.data() + r * out);
    gemm(x.value().data(), Dims{rows, ws[1]}, false, W.value().data(), Dims{out, ws[1]}, true, y.data(),
         Dims{rows, out}, true);
    // [rows, in] x, [out, in] W and [rows, out] g, a single x seen as one row (rows read off
    // x's shape: with in = 0 its size says nothing)
    auto dims = [](const auto& v) {
        const auto& xs = v.tape.value(v.id(0)).shape();
        const auto& ws = v.tape.value(v.id(1)).shape();
        const std::size_t rows = xs.size() == 2 ? xs[0] : 1;
        return std::array<Dims, 3>{Dims{rows, ws[1]}, Dims{ws[0], ws[1]}, Dims{rows, ws[0]}};
    };
    return op.done(
        [dims](Vjp<T>& v) {
            const auto [xd, w, gd] = dims(v);
            const std::size_t rows = xd[0];
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
                if (first) kernels::sum_rows(G, rows, w[0], db);
                else kernels::add_rows(G, rows, w[0], db);
            }
        },
        [dims](GradVjp<T>& v) {
            const auto [xd, w, gd] = dims(v);
            const Var<T> G = as_2d(v.g, gd);
            v.acc(0, as_shape(matmul(G, v.x(1)), v.x(0).shape()));
            if (v.wants(1)) v.acc(1, matmul(G, as_2d(v.x(0), xd), transpose_a));
            v.acc(2, v.g);  // summed over the rows by acc
        });
}
AD_INSTANTIATE(affine, sig::Ternary)

// d(x^T) = g^T
template <class T>
Var<T> transpose(const Var<T>& x)
{
    Op<T> op("transpose", {x});
    xt::noalias(op.out()) = xt::transpose(x.value());
    auto vjp = [](auto& v) { v.acc(0, transpose(v.g)); };  // xt::transpose or ad::transpose
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(transpose, sig::Unary)

}  // namespace ad
