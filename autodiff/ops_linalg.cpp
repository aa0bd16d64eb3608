// Matrix products through BLAS (kernels/blas.hpp), writing straight into the output and
// adjoint buffers, the affine map of a linear layer, and transpose.
#include "autodiff/ops_linalg.hpp"

#include "autodiff/op.hpp"

#include "autodiff/kernels/blas.hpp"

#include <xtensor/xmanipulation.hpp>

#include <optional>

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

// The geometry of a batched product op(A) op(B) under torch.matmul's rules: a 1-D operand is
// promoted to a matrix ([k] -> [1, k] on the left, [k, 1] on the right) whose axis the result
// drops; the axes before the last two broadcast. An operand that is one matrix beside a batch of
// the other is read with stride 0. When B is one matrix and A a whole batch read untransposed,
// the batch is folded into A's rows: one GEMM of [count m, k] x op(B).
struct Batched {
    Shape batch;             // the broadcast batch axes of the result
    Dims a{}, b{}, c{};      // one matrix of each operand and of the result, as stored
    std::size_t k = 0;       // the inner dimension
    std::size_t count = 1;   // products to run (1 when folded)
    bool a_spread = false, b_spread = false;  // read more than once: their gradients add
    Shape a_batch, b_batch;  // each operand's batch axes, aligned with `batch` (1 where absent)

    template <class S1, class S2>
    Batched(const S1& as, const S2& bs, bool ta, bool tb)
    {
        const std::size_t ra = std::max<std::size_t>(as.size(), 2) - 2, rb = std::max<std::size_t>(bs.size(), 2) - 2;
        a = as.size() == 1 ? Dims{1, as[0]} : Dims{as[ra], as[ra + 1]};
        b = bs.size() == 1 ? Dims{bs[0], 1} : Dims{bs[rb], bs[rb + 1]};
        c = {ta ? a[1] : a[0], tb ? b[0] : b[1]};
        k = ta ? a[0] : a[1];
        const std::size_t r = std::max(ra, rb);
        batch.resize(r);
        a_batch.assign(r, 1);
        b_batch.assign(r, 1);
        std::size_t na = 1, nb = 1;
        for (std::size_t d = 0; d < r; ++d) {
            if (d + ra >= r) a_batch[d] = as[d + ra - r];
            if (d + rb >= r) b_batch[d] = bs[d + rb - r];
            batch[d] = a_batch[d] == 1 ? b_batch[d] : a_batch[d];
            count *= batch[d];
            na *= a_batch[d];
            nb *= b_batch[d];
        }
        a_spread = na != count;
        b_spread = nb != count;
        if (nb == 1 && !a_spread && !ta && count > 1) {  // fold the batch into A's rows
            a[0] *= count;
            c[0] *= count;
            count = 1;
            b_spread = false;  // one product reads B once
        }
    }
    // Whether the batch axes broadcast (each pair equal or 1).
    bool broadcasts() const
    {
        for (std::size_t d = 0; d < batch.size(); ++d)
            if (a_batch[d] != b_batch[d] && a_batch[d] != 1 && b_batch[d] != 1) return false;
        return true;
    }
    // Offsets (in elements) of A's and B's matrices in product i of the batch, read row-major.
    std::pair<std::size_t, std::size_t> offsets(std::size_t i) const
    {
        std::size_t oa = 0, ob = 0, sa = 1, sb = 1;
        for (std::size_t d = batch.size(); d-- > 0;) {
            const std::size_t at = i % batch[d];
            i /= batch[d];
            if (a_batch[d] != 1) oa += at * sa;
            if (b_batch[d] != 1) ob += at * sb;
            sa *= a_batch[d];
            sb *= b_batch[d];
        }
        return {oa * a[0] * a[1], ob * b[0] * b[1]};
    }
    // f(i) for every product i. Many products (attention's heads) are split over the pool, each
    // on one thread: OpenBLAS runs a GEMM called inside the pool on the calling thread, and small
    // GEMMs gain little from its own threading. A few products run in turn, each GEMM threaded.
    // `shared`: the products write into one buffer (a spread operand's gradient), so in turn.
    template <class F>
    void each(F f, bool shared = false) const
    {
        if (count >= 4 && !shared)
            kernels::parallel_for(count, c[0] * c[1] * k, [f](std::size_t b, std::size_t e) {
                for (std::size_t i = b; i < e; ++i) f(i);
            });
        else
            for (std::size_t i = 0; i < count; ++i) f(i);
    }
};

// The result's shape: the batch axes, then m unless A is a vector, then n unless B is.
template <class S1, class S2>
Shape batched_out(const S1& as, const S2& bs, bool ta, bool tb, const Shape& batch)
{
    Shape out = batch;
    if (as.size() >= 2) out.push_back(as[as.size() - (ta ? 1 : 2)]);
    if (bs.size() >= 2) out.push_back(bs[bs.size() - (tb ? 2 : 1)]);
    return out;
}

// A's or B's gradient over the broadcast batch, summed over the batch axes the operand was
// spread across and put back in the operand's shape (a vector's axis taken out again).
template <class T>
Var<T> batch_reduced(const Var<T>& d, const Var<T>& promoted, const Shape& s)
{
    const Var<T> r = d.shape() == promoted.shape() ? d : sum_to(d, promoted.shape());
    return as_shape(r, s);
}

// torch.matmul beyond two matrices: vectors and batches of matrices, one GEMM per product of
// the batch on pointers into the operands (none when folded), written into the output and,
// in the VJP, straight into the adjoints. Its graph VJP is the same products as matmuls.
template <class T>
Var<T> matmul_batched(const Var<T>& A, const Var<T>& B, bool ta, bool tb)
{
    const auto& as = A.shape();
    const auto& bs = B.shape();
    const auto both = [&] { return shape_str(as) + (ta ? "^T" : "") + " and " + shape_str(bs) + (tb ? "^T" : ""); };
    if (as.empty() || bs.empty())
        fail("matmul", A, "operands must be vectors, matrices or batches of matrices (rank >= 1), got shapes " + both());
    if ((ta && as.size() == 1) || (tb && bs.size() == 1))
        fail("matmul", A, "transposes only of matrices (rank >= 2): a vector has no transpose, got shapes " + both());
    const Batched p(as, bs, ta, tb);
    const std::size_t k = ta ? p.a[0] : p.a[1], kb = tb ? p.b[1] : p.b[0];
    if (k != kb)
        fail("matmul", A, "shapes " + both() + " do not chain: the inner dimensions " + std::to_string(k) + " and " +
                              std::to_string(kb) + " must be equal");
    if (!p.broadcasts())
        fail("matmul", A, "the batch axes of shapes " + both() + " do not broadcast: " + shape_str(p.a_batch) +
                              " against " + shape_str(p.b_batch) + " (aligned from the right, each pair equal or 1)");
    Op<T> op("matmul", {A, B});
    op.out().resize(batched_out(as, bs, ta, tb, p.batch));
    const T *a = A.value().data(), *b = B.value().data();
    T* c = op.out().data();
    const std::size_t cn = p.c[0] * p.c[1];
    p.each([&p, a, b, c, cn, ta, tb](std::size_t i) {
        const auto [oa, ob] = p.offsets(i);
        gemm(a + oa, p.a, ta, b + ob, p.b, tb, c + i * cn, p.c, false);
    });
    // Per product, as in the rank-2 VJP: d op(A) = G op(B)^T, d op(B) = op(A)^T G. An operand
    // read by several products gathers their gradients (zeroed first, then accumulated).
    return op.done(
        [ta, tb](Vjp<T>& v) {
            const Batched p(v.x(0).shape(), v.x(1).shape(), ta, tb);
            const T *a = v.x(0).data(), *b = v.x(1).data(), *G = v.g.data();
            const std::size_t cn = p.c[0] * p.c[1];
            bool first;
            if (v.wants(0)) {
                T* dA = v.slot(0, first).data();
                if (p.a_spread && first) std::fill_n(dA, v.x(0).size(), T(0));
                const bool add = p.a_spread || !first;
                p.each([&p, b, G, dA, cn, add, ta, tb](std::size_t i) {
                    const auto [oa, ob] = p.offsets(i);
                    if (!ta) gemm(G + i * cn, p.c, false, b + ob, p.b, !tb, dA + oa, p.a, add);
                    else gemm(b + ob, p.b, tb, G + i * cn, p.c, true, dA + oa, p.a, add);
                }, p.a_spread);
            }
            if (v.wants(1)) {
                T* dB = v.slot(1, first).data();
                if (p.b_spread && first) std::fill_n(dB, v.x(1).size(), T(0));
                const bool add = p.b_spread || !first;
                p.each([&p, a, G, dB, cn, add, ta, tb](std::size_t i) {
                    const auto [oa, ob] = p.offsets(i);
                    if (!tb) gemm(a + oa, p.a, !ta, G + i * cn, p.c, false, dB + ob, p.b, add);
                    else gemm(G + i * cn, p.c, true, a + oa, p.a, ta, dB + ob, p.b, add);
                }, p.b_spread);
            }
        },
        [ta, tb](GradVjp<T>& v) {  // vectors as [1, k] and [k, 1], g with their axes put back
            const Shape as = v.x(0).shape(), bs = v.x(1).shape();
            const Var<T> A = as.size() == 1 ? reshape(v.x(0), {1, as[0]}) : v.x(0);
            const Var<T> B = bs.size() == 1 ? reshape(v.x(1), {bs[0], 1}) : v.x(1);
            Shape gs = v.g.shape();
            if (bs.size() == 1) gs.push_back(1);
            if (as.size() == 1) gs.insert(gs.end() - 1, 1);
            const Var<T> G = as_shape(v.g, gs);
            if (v.wants(0))
                v.acc(0, batch_reduced(!ta ? matmul(G, B, Transpose{false, !tb}) : matmul(B, G, Transpose{tb, true}), A, as));
            if (v.wants(1))
                v.acc(1, batch_reduced(!tb ? matmul(A, G, Transpose{!ta, false}) : matmul(G, A, Transpose{true, ta}), B, bs));
        });
}

template <class T>
Var<T> matmul_impl(const Var<T>& A, const Var<T>& B, bool ta, bool tb)
{
    check_handles("matmul", {A, B});
    const auto& as = A.shape();
    const auto& bs = B.shape();
    const bool vectors = as.size() == 1 || bs.size() == 1;
    // Two matrices, or a vector and a matrix read as stored; everything else is the batched form.
    if (as.size() < 1 || as.size() > 2 || bs.size() < 1 || bs.size() > 2 || (vectors && (ta || tb)))
        return matmul_batched(A, B, ta, tb);
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
            const Product dims(v.x(0).shape(), v.x(1).shape(), ta, tb);
            const Dims a = dims.a, b = dims.b, c = dims.c;  // not bindings: the lambdas below capture them
            const T *G = v.g.data(), *A = v.x(0).data(), *B = v.x(1).data();
            bool first_A = false, first_B = false;
            T* dA = v.wants(0) ? v.slot(0, first_A).data() : nullptr;
            T* dB = v.wants(1) ? v.slot(1, first_B).data() : nullptr;
            // The two side by side, unless A and B are one tensor with one adjoint
            const bool split = dA && dB && dA != dB && c[0] * c[1] * (ta ? a[0] : a[1]) >= kernels::concurrent_gemm_min;
            kernels::parallel_invoke(
                split,
                [&] {
                    if (!dA) return;
                    if (!ta) gemm(G, c, false, B, b, !tb, dA, a, !first_A);
                    else gemm(B, b, tb, G, c, true, dA, a, !first_A);
                },
                [&] {
                    if (!dB) return;
                    if (!tb) gemm(A, a, !ta, G, c, false, dB, b, !first_B);
                    else gemm(G, c, true, A, a, ta, dB, b, !first_B);
                });
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
    if (ws.size() != 2 || xs.empty() || xs.back() != ws[1] || bs.size() != 1 || bs[0] != ws[0])
        fail("affine", x, "x " + shape_str(xs) + ", W " + shape_str(ws) + " and b " + shape_str(bs) +
                              " do not fit x W^T + b; expected x [..., in] or [in], W [out, in], b [out]");
    Op<T> op("affine", {x, W, b});
    // x [..., in] is a matrix of rows [prod(...), in], one GEMM for all of them.
    const std::size_t out = ws[0];
    std::size_t rows = 1;
    Shape shape;  // inline storage up to rank 4: no allocation per product
    for (std::size_t d = 0; d + 1 < xs.size(); ++d) {
        rows *= xs[d];
        shape.push_back(xs[d]);
    }
    shape.push_back(out);
    auto& y = op.out();
    y.resize(shape);
    const T* bp = b.value().data();
    T* yp = y.data();
    kernels::parallel_for(rows, out, [=](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) std::copy_n(bp, out, yp + r * out);
    });
    gemm(x.value().data(), Dims{rows, ws[1]}, false, W.value().data(), Dims{out, ws[1]}, true, y.data(),
         Dims{rows, out}, true);
    // [rows, in] x, [out, in] W and [rows, out] g, a single x seen as one row (rows read off
    // x's shape: with in = 0 its size says nothing)
    auto dims = [](const auto& v) {
        const auto& xs = v.tape.value(v.id(0)).shape();
        const auto& ws = v.tape.value(v.id(1)).shape();
        std::size_t rows = 1;
        for (std::size_t d = 0; d + 1 < xs.size(); ++d) rows *= xs[d];
        return std::array<Dims, 3>{Dims{rows, ws[1]}, Dims{ws[0], ws[1]}, Dims{rows, ws[0]}};
    };
    return op.done(
        [dims](Vjp<T>& v) {
            const auto d = dims(v);
            const Dims xd = d[0], w = d[1], gd = d[2];  // not bindings: the lambdas below capture them
            const std::size_t rows = xd[0];
            const T *G = v.g.data(), *x = v.x(0).data(), *W = v.x(1).data();
            bool first, first_x = false, first_W = false;
            T* dx = v.wants(0) ? v.slot(0, first_x).data() : nullptr;
            T* dW = v.wants(1) ? v.slot(1, first_W).data() : nullptr;
            const std::size_t out = w[0], in = w[1];
            const bool large = rows >= 2 && out >= 2 && rows * out * in >= kernels::concurrent_gemm_min;
            if (large && dW && dx != dW) {
                // In two halves of the output features, half h on thread h of a two-thread pool:
                // dW's rows in half h are G[:, half h]^T x, and dx = G W is the sum over the halves
                // of G[:, half h] W[half h, :]. Each thread reads and writes only its own rows of W
                // and dW, the rows the forward GEMM's thread read and the optimiser's update
                // (parallel_for) will write: a row read by the other core costs the invalidation of
                // that copy on every store (ad_bench_shared_lines). The halves are the same at any
                // thread count, and so are the sums.
                std::optional<typename Sweep<T>::Temporary> share;  // half 1's share of dx
                if (dx) share.emplace(v.sweep, Shape{rows, in});
                T* part = dx ? share->tensor().data() : nullptr;
                auto half = [&](std::size_t h) {
                    const std::size_t o0 = out * h / 2, o1 = out * (h + 1) / 2;
                    const Dims gh{rows, o1 - o0}, wh{o1 - o0, in};
                    kernels::gemm_block(G + o0, gh, out, true, x, xd, false, dW + o0 * in, wh, !first_W);
                    if (dx) kernels::gemm_block(G + o0, gh, out, false, W + o0 * in, wh, false, h == 0 ? dx : part, xd,
                                                h == 0 && !first_x);
                };
                kernels::parallel_invoke(true, [&] { half(0); }, [&] { half(1); });
                if (dx)
                    kernels::parallel_for(rows * in, 1, [dx, part](std::size_t b, std::size_t e) {
                        for (std::size_t k = b; k < e; ++k) dx[k] += part[k];
                    });
            } else {  // a small layer, or x and W one tensor with one adjoint: dx = G W, dW = G^T x
                if (dx) gemm(G, gd, false, W, w, false, dx, xd, !first_x);
                if (dW) gemm(G, gd, true, x, xd, false, dW, w, !first_W);
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
