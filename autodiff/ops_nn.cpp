// Neural-network functions, each one op with a closed-form VJP: fusing softmax with its log or
// with the loss keeps them finite for logits of any size and saves recording the pieces. The
// loops live in kernels/rows.hpp; the differentiable VJPs are the same formulas in tape ops.
#include "autodiff/ops_nn.hpp"

#include "autodiff/op.hpp"

#include "autodiff/kernels/rows.hpp"

#include <xtensor/xbuilder.hpp>
#include <xtensor/xstrides.hpp>

#include <cmath>

namespace ad {

using kernels::for_each_slice;

// y = exp(x - m) / s;  dx = y (g - sum_j g_j y_j)
template <class T>
Var<T> softmax(const Var<T>& x, std::ptrdiff_t axis)
{
    const std::size_t ax = normalize_axis("softmax", axis, x);
    Op<T> op("softmax", {x});
    const AxisLoop d(x.shape(), ax);
    auto& y = op.out();
    y.resize(x.shape());
    const T* xp = x.value().data();
    if (d.inner == 1)  // the last axis (attention's, a classifier's): contiguous rows
        kernels::parallel_for(d.outer, 4 * d.n, [=, yp = y.data()](std::size_t o0, std::size_t o1) {
            for (std::size_t o = o0; o < o1; ++o) kernels::softmax_row(xp + o * d.n, yp + o * d.n, d.n);
        });
    else
        for_each_slice(xp, d, [&](std::size_t o, std::size_t i, T m, T s) {
            for (std::size_t j = 0; j < d.n; ++j) y.data()[d.at(o, j, i)] = std::exp(xp[d.at(o, j, i)] - m) / s;
        });
    return op.done(
        [ax](Vjp<T>& v) {
            const AxisLoop d(v.y.shape(), ax);
            bool first;
            T* dx = v.slot(0, first).data();
            const T *y = v.y.data(), *g = v.g.data();
            if (d.inner == 1) {
                kernels::parallel_for(d.outer, 2 * d.n, [=](std::size_t o0, std::size_t o1) {
                    for (std::size_t o = o0; o < o1; ++o)
                        kernels::softmax_row_dx(y + o * d.n, g + o * d.n, dx + o * d.n, first, d.n);
                });
                return;
            }
            kernels::for_each_slice_sum(
                d, [&](std::size_t k) { return g[k] * y[k]; },
                [&](std::size_t k, T s) { dx[k] = (first ? T(0) : dx[k]) + y[k] * (g[k] - s); });
        },
        [ax](GradVjp<T>& v) { v.acc(0, v.y * (v.g - sum(v.g * v.y, std::ptrdiff_t(ax), keepdims))); });
}
AD_INSTANTIATE(softmax, sig::Axis)

// y = x - m - log s;  dx = g - exp(y) sum_j g_j
template <class T>
Var<T> log_softmax(const Var<T>& x, std::ptrdiff_t axis)
{
    const std::size_t ax = normalize_axis("log_softmax", axis, x);
    Op<T> op("log_softmax", {x});
    const AxisLoop d(x.shape(), ax);
    auto& y = op.out();
    y.resize(x.shape());
    const T* xp = x.value().data();
    for_each_slice(xp, d, [&](std::size_t o, std::size_t i, T m, T s) {
        const T lse = m + std::log(s);
        for (std::size_t j = 0; j < d.n; ++j) y.data()[d.at(o, j, i)] = xp[d.at(o, j, i)] - lse;
    });
    return op.done(
        [ax](Vjp<T>& v) {
            const AxisLoop d(v.y.shape(), ax);
            bool first;
            T* dx = v.slot(0, first).data();
            const T *y = v.y.data(), *g = v.g.data();
            kernels::for_each_slice_sum(
                d, [&](std::size_t k) { return g[k]; },
                [&](std::size_t k, T s) { dx[k] = (first ? T(0) : dx[k]) + g[k] - std::exp(y[k]) * s; });
        },
        [ax](GradVjp<T>& v) { v.acc(0, v.g - ad::exp(v.y) * sum(v.g, std::ptrdiff_t(ax), keepdims)); });
}
AD_INSTANTIATE(log_softmax, sig::Axis)

// loss = (1/B) sum_b (logsumexp(x_b) - x_b,label_b);  dx = g (softmax(x) - onehot(label)) / B.
// Saved: softmax(x), and the labels.
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const std::vector<std::int64_t>& labels)
{
    check_handles("cross_entropy", {logits});
    const auto& s = logits.shape();
    if (s.size() < 2) fail("cross_entropy", logits, "logits must be [batch, classes] or [..., classes], got shape " + shape_str(s));
    if (s.size() > 2) {  // one label per position, row-major: the same loss over [positions, classes]
        const std::size_t n = s.back() ? logits.size() / s.back() : 0;
        if (labels.size() != n)
            fail("cross_entropy", logits, "logits of shape " + shape_str(s) + " need " + std::to_string(n) +
                                              " labels (one per position), got " + std::to_string(labels.size()));
        return cross_entropy(reshape(logits, {infer, s.back()}), labels);
    }
    if (labels.size() != s[0])
        fail("cross_entropy", logits, "logits of shape " + shape_str(s) + " need " + std::to_string(s[0]) +
                                          " labels, got " + std::to_string(labels.size()));
    if (s[0] == 0 || s[1] == 0)
        fail("cross_entropy", logits, "logits of shape " + shape_str(s) + " are empty; need batch >= 1 and classes >= 1");
    for (std::size_t b = 0; b < labels.size(); ++b)
        if (labels[b] < 0 || std::size_t(labels[b]) >= s[1])
            fail("cross_entropy", logits, "label " + std::to_string(labels[b]) + " at position " + std::to_string(b) +
                                              " is out of range for " + std::to_string(s[1]) + " classes (logits " +
                                              shape_str(s) + "); expected 0 <= label < " + std::to_string(s[1]));
    Op<T> op("cross_entropy", {logits});
    op.save_indices().assign(labels.begin(), labels.end());
    auto& p = op.save(0);
    p.resize(s);
    const AxisLoop d(s, 1);
    const T* xp = logits.value().data();
    T total = 0;
    for_each_slice(xp, d, [&](std::size_t b, std::size_t, T m, T z) {
        for (std::size_t c = 0; c < d.n; ++c) p.data()[b * d.n + c] = std::exp(xp[b * d.n + c] - m) / z;
        total += m + std::log(z) - xp[b * d.n + std::size_t(labels[b])];
    });
    op.out().resize(Shape{});
    op.out()() = total / T(s[0]);
    return op.done(
        [](Vjp<T>& v) {
            const auto& p = v.saved(0);
            const auto& label = v.indices();
            const std::size_t B = p.shape()[0], C = p.shape()[1];
            const T scale = v.g() / T(B);
            const T* pp = p.data();
            const std::ptrdiff_t* lab = label.data();
            v.acc_each(0, [=](std::size_t k) {
                const T onehot = std::size_t(lab[k / C]) == k % C ? T(1) : T(0);
                return scale * (pp[k] - onehot);
            });
        },
        [](GradVjp<T>& v) {
            const auto& s = v.x(0).shape();
            Tensor<T> onehot = xt::zeros<T>(s);
            for (std::size_t b = 0; b < s[0]; ++b) onehot(b, std::size_t(v.indices()[b])) = T(1);
            v.acc(0, (softmax(v.x(0), 1) - v.constant(onehot)) * (v.g / T(s[0])));
        });
}
namespace sig {
template <class T> using Labels = Var<T>(const Var<T>&, const std::vector<std::int64_t>&);
}
AD_INSTANTIATE(cross_entropy, sig::Labels)

// loss = mean (p - t)^2;  dp = 2 (p - t) g / n, dt = -dp
template <class T>
Var<T> mse(const Var<T>& pred, const Var<T>& target)
{
    check_handles("mse", {pred, target});
    if (pred.shape() != target.shape())
        fail("mse", pred, "prediction " + shape_str(pred.shape()) + " and target " + shape_str(target.shape()) +
                              " must have the same shape");
    if (pred.size() == 0) fail("mse", pred, "empty tensors (shape " + shape_str(pred.shape()) + ")");
    Op<T> op("mse", {pred, target});
    const T *p = pred.value().data(), *t = target.value().data();
    T total = 0;  // sum of squares in blocks of 256, each summed with independent partial sums
    T block[256];
    for (std::size_t i = 0; i < pred.size(); i += 256) {
        const std::size_t n = std::min<std::size_t>(256, pred.size() - i);
        for (std::size_t j = 0; j < n; ++j) block[j] = (p[i + j] - t[i + j]) * (p[i + j] - t[i + j]);
        total += kernels::sum_all(block, n);
    }
    op.out().resize(Shape{});
    op.out()() = total / T(pred.size());
    return op.done(
        [](Vjp<T>& v) {
            const T c = T(2) * v.g() / T(v.x(0).size());
            const T *p = v.x(0).data(), *t = v.x(1).data();
            v.acc_each(0, [=](std::size_t i) { return c * (p[i] - t[i]); });
            v.acc_each(1, [=](std::size_t i) { return -c * (p[i] - t[i]); });
        },
        [](GradVjp<T>& v) {
            const auto d = (v.x(0) - v.x(1)) * (v.g * (T(2) / T(v.x(0).size())));
            v.acc(0, d);
            v.acc(1, -d);
        });
}
AD_INSTANTIATE(mse, sig::Binary)

namespace {

// The Hessian of <w, xhat(x)> applied to v, per row of the last axis, in tape ops: what
// kernels::layer_norm_row_d2x computes, written so that any order can follow.
template <class T>
Var<T> layer_norm_d2x(const Var<T>& x, const Var<T>& w, const Var<T>& v, T eps)
{
    const Var<T> xc = x - mean(x, -1, keepdims);
    const Var<T> rstd = ad::pow(mean(square(xc), -1, keepdims) + eps, T(-0.5)), xhat = xc * rstd;
    const Var<T> wc = w - mean(w, -1, keepdims), vc = v - mean(v, -1, keepdims);
    const Var<T> A = mean(w * xhat, -1, keepdims), Q = mean(v * xhat, -1, keepdims), M = mean(wc * vc, -1, keepdims);
    return square(rstd) * ((T(3) * A * Q - M) * xhat - Q * wc - A * vc);
}

// J(x) (u gamma) over the last axis, where J = dxhat/dx of layer_norm's xhat (a symmetric matrix
// per row) and gamma [n] scales every row: layer_norm's VJP for x, which its differentiable VJP
// records as this one op. `stat` is a constant holding mu and rstd of every row of x, as
// layer_norm saved them ([rows, 2]): read, never differentiated (the formulas below account for
// their dependence on x).
//   d/du <w, J (u gamma)> = gamma J w;  d/dgamma = sum_rows u J w;
//   d/dx = the Hessian of <w, xhat> applied to u gamma (kernels/rows.hpp).
template <class T>
Var<T> layer_norm_dx(const Var<T>& x, const Var<T>& u, const Var<T>& gamma, const Var<T>& stat, T eps)
{
    Op<T> op("layer_norm_dx", {x, u, gamma, stat});
    const std::size_t n = x.shape().back(), rows = x.size() / n;
    auto& y = op.out();
    y.resize(x.shape());
    const T *xp = x.value().data(), *up = u.value().data(), *gp = gamma.value().data(), *sp = stat.value().data();
    kernels::parallel_for(rows, 6 * n, [=, yp = y.data()](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r)
            kernels::layer_norm_row_dx(xp + r * n, gp, up + r * n, sp[2 * r], sp[2 * r + 1], yp + r * n, true, n);
    });
    return op.done(
        [](Vjp<T>& v) {
            const std::size_t n = v.y.shape().back(), rows = v.y.size() / n;
            const T *x = v.x(0).data(), *u = v.x(1).data(), *gamma = v.x(2).data(), *w = v.g.data();
            const T* stat = v.x(3).data();
            bool first;
            if (v.wants(0)) {
                T* dx = v.slot(0, first).data();
                kernels::parallel_for(rows, 8 * n, [=](std::size_t r0, std::size_t r1) {
                    for (std::size_t r = r0; r < r1; ++r)
                        kernels::layer_norm_row_d2x<T, true>(x + r * n, w + r * n, u + r * n, gamma, stat[2 * r],
                                                             stat[2 * r + 1], dx + r * n, first, n);
                });
            }
            T* du = nullptr;
            T* dgamma = nullptr;
            bool du_first = false;
            if (v.wants(1)) du = v.slot(1, du_first).data();
            if (v.wants(2)) {
                dgamma = v.slot(2, first).data();
                if (first) std::fill_n(dgamma, n, T(0));
            }
            if (du || dgamma)
                for (std::size_t r = 0; r < rows; ++r) {  // J w once for both
                    T* dur = du ? du + r * n : nullptr;
                    const T* ur = u + r * n;
                    kernels::layer_norm_row_jw(x + r * n, w + r * n, stat[2 * r], stat[2 * r + 1], n,
                                               [=](std::size_t j, T jw) {
                                                   if (dur) dur[j] = (du_first ? T(0) : dur[j]) + gamma[j] * jw;
                                                   if (dgamma) dgamma[j] += ur[j] * jw;
                                               });
                }
        },
        [eps](GradVjp<T>& v) {  // the same formulas in tape ops, so any order can follow
            const Var<T> x = v.x(0), u = v.x(1), gamma = v.x(2), w = v.g;
            if (v.wants(0)) v.acc(0, layer_norm_d2x(x, w, u * gamma, eps));
            if (v.wants(1) || v.wants(2)) {
                const Var<T> jw = layer_norm_dx(x, w, v.constant(xt::ones<T>(gamma.shape())), v.x(3), eps);
                v.acc(1, gamma * jw);
                v.acc(2, u * jw);  // summed over rows
            }
        });
}

// sum_rows g xhat(x), over the last axis: layer_norm's VJP for gamma, which its differentiable
// VJP records as this one op. `stat` as for layer_norm_dx.
//   d/dg <w, sum_rows g xhat> = w xhat in every row;  d/dx = J (g w).
template <class T>
Var<T> layer_norm_dgamma(const Var<T>& x, const Var<T>& g, const Var<T>& stat, T eps)
{
    Op<T> op("layer_norm_dgamma", {x, g, stat});
    const std::size_t n = x.shape().back(), rows = x.size() / n;
    auto& y = op.out();
    y.resize({n});
    std::fill(y.begin(), y.end(), T(0));
    const T *xp = x.value().data(), *gp = g.value().data(), *sp = stat.value().data();
    for (std::size_t r = 0; r < rows; ++r)  // a sum over the rows, in their order
        kernels::layer_norm_row_dgamma(xp + r * n, gp + r * n, sp[2 * r], sp[2 * r + 1], y.data(), n);
    return op.done(
        [](Vjp<T>& v) {
            const std::size_t n = v.y.size(), rows = n ? v.x(0).size() / n : 0;
            const T *x = v.x(0).data(), *g = v.x(1).data(), *w = v.g.data(), *stat = v.x(2).data();
            bool first;
            if (v.wants(0)) {
                T* dx = v.slot(0, first).data();
                kernels::parallel_for(rows, 6 * n, [=](std::size_t r0, std::size_t r1) {
                    for (std::size_t r = r0; r < r1; ++r)
                        kernels::layer_norm_row_dx(x + r * n, w, g + r * n, stat[2 * r], stat[2 * r + 1], dx + r * n,
                                                   first, n);
                });
            }
            if (v.wants(1)) {
                T* dg = v.slot(1, first).data();
                kernels::parallel_for(rows, 2 * n, [=](std::size_t r0, std::size_t r1) {
                    for (std::size_t r = r0; r < r1; ++r) {
                        const T *xr = x + r * n, mu = stat[2 * r], rstd = stat[2 * r + 1];
                        T* d = dg + r * n;
                        if (first)
                            for (std::size_t j = 0; j < n; ++j) d[j] = w[j] * ((xr[j] - mu) * rstd);
                        else
                            for (std::size_t j = 0; j < n; ++j) d[j] += w[j] * ((xr[j] - mu) * rstd);
                    }
                });
            }
        },
        [eps](GradVjp<T>& v) {
            const Var<T> x = v.x(0), g = v.x(1), w = v.g;
            if (v.wants(0)) v.acc(0, layer_norm_dx(x, g, w, v.x(2), eps));
            if (v.wants(1)) {
                const Shape n{w.size()};
                const Var<T> xhat = layer_norm(x, v.constant(xt::ones<T>(n)), v.constant(xt::zeros<T>(n)), Scalar<T>(eps));
                v.acc(1, w * xhat);
            }
        });
}

}  // namespace

// Over the last axis of n features, per row: mu = mean x, rstd = 1 / sqrt(mean (x - mu)^2 + eps),
// xhat = (x - mu) rstd, y = xhat gamma + beta. With dxhat = g gamma:
//   dx = rstd (dxhat - mean dxhat - xhat mean(dxhat xhat)), dgamma = sum_rows g xhat,
//   dbeta = sum_rows g.
// Saved: mu and rstd of every row ([rows, 2]); xhat is recomputed from x in the VJP.
template <class T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Scalar<T> eps)
{
    check_handles("layer_norm", {x, gamma, beta});
    const auto& s = x.shape();
    if (s.empty() || s.back() == 0)
        fail("layer_norm", x, "input has shape " + shape_str(s) + "; expected at least one axis, the last (features) non-empty");
    const std::size_t n = s.back();
    if (gamma.shape().size() != 1 || gamma.shape()[0] != n || beta.shape().size() != 1 || beta.shape()[0] != n)
        fail("layer_norm", x, "gamma " + shape_str(gamma.shape()) + " and beta " + shape_str(beta.shape()) +
                                  " must both have shape [" + std::to_string(n) + "], the last axis of the input " +
                                  shape_str(s));
    if (!(eps >= T(0))) fail("layer_norm", x, "eps = " + std::to_string(eps) + " must be >= 0");
    Op<T> op("layer_norm", {x, gamma, beta});
    const std::size_t rows = x.size() / n;
    auto& stat = op.save(0);
    stat.resize({rows, std::size_t(2)});
    auto& y = op.out();
    y.resize(s);
    const T *xp = x.value().data(), *gp = gamma.value().data(), *bp = beta.value().data();
    kernels::parallel_for(rows, 4 * n, [=, yp = y.data(), sp = stat.data()](std::size_t r0, std::size_t r1) {
        for (std::size_t i = r0; i < r1; ++i) {
            const auto [mu, rstd] = kernels::layer_norm_row(xp + i * n, gp, bp, yp + i * n, n, T(eps));
            sp[2 * i] = mu;
            sp[2 * i + 1] = rstd;
        }
    });
    return op.done(
        [](Vjp<T>& v) {
            const std::size_t n = v.y.shape().back(), rows = v.y.size() / n;
            bool first;
            T* dgamma = nullptr;
            T* dbeta = nullptr;
            if (v.wants(1)) {
                dgamma = v.slot(1, first).data();
                if (first) std::fill_n(dgamma, n, T(0));
            }
            if (v.wants(2)) {
                dbeta = v.slot(2, first).data();
                if (first) std::fill_n(dbeta, n, T(0));
            }
            T* dx = nullptr;
            bool dx_first = false;
            if (v.wants(0)) dx = v.slot(0, dx_first).data();
            const T *x = v.x(0).data(), *gamma = v.x(1).data(), *g = v.g.data(), *stat = v.saved(0).data();
            if (dgamma)  // a sum over the rows, in their order
                for (std::size_t r = 0; r < rows; ++r)
                    kernels::layer_norm_row_dgamma(x + r * n, g + r * n, stat[2 * r], stat[2 * r + 1], dgamma, n);
            if (dx)
                kernels::parallel_for(rows, 6 * n, [=](std::size_t r0, std::size_t r1) {
                    for (std::size_t r = r0; r < r1; ++r)
                        kernels::layer_norm_row_dx(x + r * n, gamma, g + r * n, stat[2 * r], stat[2 * r + 1], dx + r * n,
                                                   dx_first, n);
                });
            if (dbeta) kernels::add_rows(g, rows, n, dbeta);
        },
        [eps = T(eps)](GradVjp<T>& v) {  // dx = J (g gamma) and dgamma = sum_rows g xhat, one op each
            const Var<T> x = v.x(0), g = v.g, stat = v.saved(0);  // the forward's mu and rstd
            if (v.wants(0)) v.acc(0, layer_norm_dx(x, g, v.x(1), stat, eps));
            if (v.wants(1)) v.acc(1, layer_norm_dgamma(x, g, stat, eps));
            v.acc(2, g);
        });
}
namespace sig {
template <class T> using Norm = Var<T>(const Var<T>&, const Var<T>&, const Var<T>&, Scalar<T>);
}
AD_INSTANTIATE(layer_norm, sig::Norm)

// y = x m / (1 - p);  dx = g m / (1 - p). Saved: m / (1 - p)
template <class T>
Var<T> dropout(const Var<T>& x, const Tensor<T>& mask, Scalar<T> p)
{
    check_handles("dropout", {x});
    if (!(p >= T(0) && p < T(1)))
        fail("dropout", x, "probability p = " + std::to_string(p) + " is outside [0, 1)");
    if (mask.shape() != x.shape())
        fail("dropout", x, "mask of shape " + shape_str(mask.shape()) + " must have the input's shape " +
                               shape_str(x.shape()));
    for (T m : mask)
        if (m != T(0) && m != T(1)) fail("dropout", x, "mask entries must be 0 or 1, found " + std::to_string(m));
    Op<T> op("dropout", {x});
    auto& scaled = op.save(0);
    xt::noalias(scaled) = mask * (T(1) / (T(1) - p));
    xt::noalias(op.out()) = x.value() * scaled;
    auto vjp = [](auto& v) { v.acc(0, v.g * v.saved(0)); };
    return op.done(vjp, vjp);
}
namespace sig {
template <class T> using Dropout = Var<T>(const Var<T>&, const Tensor<T>&, Scalar<T>);
}
AD_INSTANTIATE(dropout, sig::Dropout)

// The loss over [positions, classes] with the labels in row-major order; the label shape is
// checked first so that an error names it.
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const xt::xarray<std::int64_t>& labels)
{
    check_handles("cross_entropy", {logits});
    const auto& s = logits.shape();
    const auto& ls = labels.shape();
    if (s.empty() || ls.size() + 1 != s.size() || !std::equal(ls.begin(), ls.end(), s.begin()))
        fail("cross_entropy", logits, "labels of shape " + shape_str(ls) + " do not fit logits " + shape_str(s) +
                                          "; expected the logits' shape without its last (classes) axis");
    // The row-major labels for the vector form, in a buffer kept between calls so that a
    // training step allocates nothing (the vector form copies what it keeps).
    thread_local std::vector<std::int64_t> flat;
    flat.assign(labels.begin(), labels.end());
    if (s.size() == 1) return cross_entropy(reshape(logits, {1, s[0]}), flat);  // one position
    return cross_entropy(logits, flat);
}
namespace sig {
template <class T> using LabelArray = Var<T>(const Var<T>&, const xt::xarray<std::int64_t>&);
}
AD_INSTANTIATE(cross_entropy, sig::LabelArray)

// index_select of the rows, reshaped to ids.shape + [D]: both ops differentiate to any order,
// and the gradient of index_select is the scatter-add into the table (index_add).
template <class T>
Var<T> embedding(const Var<T>& table, const xt::xarray<std::int64_t>& ids)
{
    check_handles("embedding", {table});
    const auto& ts = table.shape();
    if (ts.size() != 2)
        fail("embedding", table, "the table must be [num_embeddings, dim] (rank 2), got shape " + shape_str(ts) +
                                     " (ids of shape " + shape_str(ids.shape()) + ")");
    const std::size_t V = ts[0];
    thread_local std::vector<std::size_t> rows;  // kept between calls: a step allocates nothing
    rows.resize(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::int64_t id = ids.data()[i];
        if (id < 0 || std::uint64_t(id) >= V) {
            const auto index = xt::unravel_index(i, ids.shape());
            fail("embedding", table, "id " + std::to_string(id) + " at position " + shape_str(index) + " of ids " +
                                         shape_str(ids.shape()) + " is out of range for a table of " +
                                         std::to_string(V) + " rows " + shape_str(ts) + "; expected 0 <= id < " +
                                         std::to_string(V));
        }
        rows[i] = std::size_t(id);
    }
    Shape out(ids.shape().begin(), ids.shape().end());
    out.push_back(ts[1]);
    return reshape(index_select(table, 0, rows), out);
}
namespace sig {
template <class T> using Embedding = Var<T>(const Var<T>&, const xt::xarray<std::int64_t>&);
}
AD_INSTANTIATE(embedding, sig::Embedding)

}  // namespace ad
