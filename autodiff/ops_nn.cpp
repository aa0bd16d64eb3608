// Neural-network functions, each one op with a closed-form VJP: fusing softmax with its log or
// with the loss keeps them finite for logits of any size and saves recording the pieces.
#include "autodiff/ops.hpp"

#include "autodiff/detail/op.hpp"

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <limits>

namespace ad {

namespace {

// For every slice along the axis: m = max_j x_j and s = sum_j exp(x_j - m), then f(o, i, m, s).
template <class T, class F>
void for_each_slice(const Tensor<T>& x, const AxisLoop& d, F f)
{
    const T* xp = x.data();
    for (std::size_t o = 0; o < d.outer; ++o)
        for (std::size_t i = 0; i < d.inner; ++i) {
            T m = -std::numeric_limits<T>::infinity();
            for (std::size_t j = 0; j < d.n; ++j) m = std::max(m, xp[d.at(o, j, i)]);
            T s = 0;
            for (std::size_t j = 0; j < d.n; ++j) s += std::exp(xp[d.at(o, j, i)] - m);
            f(o, i, m, s);
        }
}

// dst = v (first contribution) or dst += v, elementwise over n values.
template <class T>
inline void put(T& dst, T v, bool first) { dst = first ? v : dst + v; }

}  // namespace

// y = exp(x - m) / s; dx = y (g - sum_j g_j y_j). r.ints = {axis}
template <class T>
Var<T> softmax(const Var<T>& x, std::ptrdiff_t axis)
{
    const std::size_t ax = normalize_axis("softmax", axis, x);
    Op<T> op("softmax", {x}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const AxisLoop d(v.y.shape(), std::size_t(v.r.ints[0]));
        bool first;
        T* dx = v.slot(0, first).data();
        const T *y = v.y.data(), *g = v.g.data();
        for (std::size_t o = 0; o < d.outer; ++o)
            for (std::size_t i = 0; i < d.inner; ++i) {
                T s = 0;
                for (std::size_t j = 0; j < d.n; ++j) s += g[d.at(o, j, i)] * y[d.at(o, j, i)];
                for (std::size_t j = 0; j < d.n; ++j) {
                    const auto k = d.at(o, j, i);
                    put(dx[k], y[k] * (g[k] - s), first);
                }
            }
    });
    op.record().ints = {std::ptrdiff_t(ax)};
    const AxisLoop d(x.shape(), ax);
    auto& y = op.out();
    y.resize(x.shape());
    const T* xp = x.value().data();
    for_each_slice(x.value(), d, [&](std::size_t o, std::size_t i, T m, T s) {
        for (std::size_t j = 0; j < d.n; ++j) y.data()[d.at(o, j, i)] = std::exp(xp[d.at(o, j, i)] - m) / s;
    });
    return op.done();
}

// y = x - m - log s; dx = g - exp(y) sum_j g_j. r.ints = {axis}
template <class T>
Var<T> log_softmax(const Var<T>& x, std::ptrdiff_t axis)
{
    const std::size_t ax = normalize_axis("log_softmax", axis, x);
    Op<T> op("log_softmax", {x}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const AxisLoop d(v.y.shape(), std::size_t(v.r.ints[0]));
        bool first;
        T* dx = v.slot(0, first).data();
        const T *y = v.y.data(), *g = v.g.data();
        for (std::size_t o = 0; o < d.outer; ++o)
            for (std::size_t i = 0; i < d.inner; ++i) {
                T s = 0;
                for (std::size_t j = 0; j < d.n; ++j) s += g[d.at(o, j, i)];
                for (std::size_t j = 0; j < d.n; ++j) {
                    const auto k = d.at(o, j, i);
                    put(dx[k], g[k] - std::exp(y[k]) * s, first);
                }
            }
    });
    op.record().ints = {std::ptrdiff_t(ax)};
    const AxisLoop d(x.shape(), ax);
    auto& y = op.out();
    y.resize(x.shape());
    const T* xp = x.value().data();
    for_each_slice(x.value(), d, [&](std::size_t o, std::size_t i, T m, T s) {
        const T lse = m + std::log(s);
        for (std::size_t j = 0; j < d.n; ++j) y.data()[d.at(o, j, i)] = xp[d.at(o, j, i)] - lse;
    });
    return op.done();
}

// loss = (1/B) sum_b (logsumexp(x_b) - x_b,label_b); dx = g (softmax(x) - onehot(label)) / B.
// r.saved = softmax(x), r.ints = labels
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const std::vector<std::int64_t>& labels)
{
    check_handles("cross_entropy", {logits});
    const auto& s = logits.shape();
    if (s.size() != 2)
        throw Error("cross_entropy: logits must be [batch, classes], got shape " + shape_str(s));
    if (labels.size() != s[0])
        throw Error("cross_entropy: logits of shape " + shape_str(s) + " need " + std::to_string(s[0]) +
                    " labels, got " + std::to_string(labels.size()));
    if (s[0] == 0 || s[1] == 0)
        throw Error("cross_entropy: logits of shape " + shape_str(s) + " are empty; need batch >= 1 and classes >= 1");
    for (std::size_t b = 0; b < labels.size(); ++b)
        if (labels[b] < 0 || std::size_t(labels[b]) >= s[1])
            throw Error("cross_entropy: label " + std::to_string(labels[b]) + " at position " + std::to_string(b) +
                        " is out of range for " + std::to_string(s[1]) + " classes (logits " + shape_str(s) +
                        "); expected 0 <= label < " + std::to_string(s[1]));
    Op<T> op("cross_entropy", {logits}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const auto& p = v.r.saved;
        const std::size_t B = p.shape()[0], C = p.shape()[1];
        const T scale = v.g() / T(B);
        bool first;
        T* dx = v.slot(0, first).data();
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t c = 0; c < C; ++c) {
                const T onehot = std::size_t(v.r.ints[b]) == c ? T(1) : T(0);
                put(dx[b * C + c], scale * (p.data()[b * C + c] - onehot), first);
            }
    });
    auto& r = op.record();
    r.ints.assign(labels.begin(), labels.end());
    r.saved.resize(s);
    const AxisLoop d(s, 1);
    const T* xp = logits.value().data();
    T total = 0;
    for_each_slice(logits.value(), d, [&](std::size_t b, std::size_t, T m, T z) {
        for (std::size_t c = 0; c < d.n; ++c) r.saved.data()[b * d.n + c] = std::exp(xp[b * d.n + c] - m) / z;
        total += m + std::log(z) - xp[b * d.n + std::size_t(labels[b])];
    });
    op.out().resize(Shape{});
    op.out()() = total / T(s[0]);
    return op.done();
}

// loss = mean (p - t)^2; dp = 2 (p - t) g / n, dt = -dp
template <class T>
Var<T> mse(const Var<T>& pred, const Var<T>& target)
{
    check_handles("mse", {pred, target});
    if (pred.shape() != target.shape())
        throw Error("mse: prediction " + shape_str(pred.shape()) + " and target " +
                    shape_str(target.shape()) + " must have the same shape");
    if (pred.size() == 0) throw Error("mse: empty tensors (shape " + shape_str(pred.shape()) + ")");
    Op<T> op("mse", {pred, target}, [](Vjp<T>& v) {
        const T c = T(2) * v.g() / T(v.x(0).size());
        const T *p = v.x(0).data(), *t = v.x(1).data();
        const std::size_t n = v.x(0).size();
        bool first;
        for (std::size_t k = 0; k < 2; ++k) {
            if (!v.wants(k)) continue;
            T* d = v.slot(k, first).data();
            const T ck = k == 0 ? c : -c;
            if (first)
                for (std::size_t i = 0; i < n; ++i) d[i] = ck * (p[i] - t[i]);
            else
                for (std::size_t i = 0; i < n; ++i) d[i] += ck * (p[i] - t[i]);
        }
    });
    const T *p = pred.value().data(), *t = target.value().data();
    T total = 0;  // sum of squares in blocks of 256, each summed with independent partial sums
    T block[256];
    for (std::size_t i = 0; i < pred.size(); i += 256) {
        const std::size_t n = std::min<std::size_t>(256, pred.size() - i);
        for (std::size_t j = 0; j < n; ++j) block[j] = (p[i + j] - t[i + j]) * (p[i + j] - t[i + j]);
        total += sum_all(block, n);
    }
    op.out().resize(Shape{});
    op.out()() = total / T(pred.size());
    return op.done();
}

namespace {

// Row kernels of layer_norm. Their sums run in SIMD lanes (xsimd) and add the lanes at the end:
// left to itself the compiler keeps a float sum in one serial chain, or vectorises across rows
// of 16 only when a row has 256 elements or more.
template <class T>
using Batch = xsimd::batch<T>;

// sum_j (x_j - c)^k over one row, k = 1 or 2.
template <class T, int k>
T sum_centred(const T* x, T c, std::size_t n)
{
    constexpr std::size_t W = Batch<T>::size;
    const Batch<T> vc(c);
    Batch<T> acc(T(0));
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
        const Batch<T> d = Batch<T>::load_unaligned(x + j) - vc;
        acc += k == 1 ? d : d * d;
    }
    T total = xsimd::hadd(acc);
    for (; j < n; ++j) total += k == 1 ? x[j] - c : (x[j] - c) * (x[j] - c);
    return total;
}

// y = (x - mu) rstd gamma + beta for one row; returns {mu, rstd}.
template <class T>
std::pair<T, T> layer_norm_row(const T* __restrict x, const T* __restrict gamma, const T* __restrict beta,
                               T* __restrict y, std::size_t n, T eps)
{
    const T mu = sum_centred<T, 1>(x, T(0), n) / T(n);
    const T rstd = T(1) / std::sqrt(sum_centred<T, 2>(x, mu, n) / T(n) + eps);
    for (std::size_t j = 0; j < n; ++j) y[j] = (x[j] - mu) * rstd * gamma[j] + beta[j];
    return {mu, rstd};
}

// One row of layer_norm's VJP for x: dx (+)= rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat)).
template <class T>
void layer_norm_row_dx(const T* __restrict x, const T* __restrict gamma, const T* __restrict g, T mu, T rstd,
                       T* __restrict dx, bool first, std::size_t n)
{
    constexpr std::size_t W = Batch<T>::size;
    const Batch<T> vmu(mu), vrstd(rstd);
    Batch<T> a1(T(0)), a2(T(0));
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
        const Batch<T> d = Batch<T>::load_unaligned(g + j) * Batch<T>::load_unaligned(gamma + j);
        a1 += d;
        a2 += d * ((Batch<T>::load_unaligned(x + j) - vmu) * vrstd);
    }
    T t1 = xsimd::hadd(a1), t2 = xsimd::hadd(a2);
    for (; j < n; ++j) {
        const T d = g[j] * gamma[j];
        t1 += d;
        t2 += d * ((x[j] - mu) * rstd);
    }
    const T m1 = t1 / T(n), m2 = t2 / T(n);
    if (first)
        for (j = 0; j < n; ++j) dx[j] = rstd * (g[j] * gamma[j] - m1 - ((x[j] - mu) * rstd) * m2);
    else
        for (j = 0; j < n; ++j) dx[j] += rstd * (g[j] * gamma[j] - m1 - ((x[j] - mu) * rstd) * m2);
}

// dgamma += g xhat over one row.
template <class T>
void layer_norm_row_dgamma(const T* __restrict x, const T* __restrict g, T mu, T rstd, T* __restrict dgamma,
                           std::size_t n)
{
    for (std::size_t j = 0; j < n; ++j) dgamma[j] += g[j] * ((x[j] - mu) * rstd);
}

}  // namespace

// Over the last axis of n features, per row: mu = mean x, rstd = 1 / sqrt(mean (x - mu)^2 + eps),
// xhat = (x - mu) rstd, y = xhat gamma + beta. With dxhat = g gamma:
//   dx = rstd (dxhat - mean dxhat - xhat mean(dxhat xhat)), dgamma = sum_rows g xhat,
//   dbeta = sum_rows g.
// r.saved = [rows, 2]: mu and rstd of every row; xhat is recomputed from x in the VJP.
template <class T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Scalar<T> eps)
{
    check_handles("layer_norm", {x, gamma, beta});
    const auto& s = x.shape();
    if (s.empty() || s.back() == 0)
        throw Error("layer_norm: input has shape " + shape_str(s) +
                    "; expected at least one axis, the last (features) non-empty");
    const std::size_t n = s.back();
    if (gamma.shape().size() != 1 || gamma.shape()[0] != n || beta.shape().size() != 1 || beta.shape()[0] != n)
        throw Error("layer_norm: gamma " + shape_str(gamma.shape()) + " and beta " + shape_str(beta.shape()) +
                    " must both have shape [" + std::to_string(n) + "], the last axis of the input " +
                    shape_str(s));
    if (!(eps >= T(0))) throw Error("layer_norm: eps = " + std::to_string(eps) + " must be >= 0");
    Op<T> op("layer_norm", {x, gamma, beta}, [](Vjp<T>& v) {
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
        const T *x = v.x(0).data(), *gamma = v.x(1).data(), *g = v.g.data(), *stat = v.r.saved.data();
        for (std::size_t r = 0; r < rows; ++r) {
            if (dgamma) layer_norm_row_dgamma(x + r * n, g + r * n, stat[2 * r], stat[2 * r + 1], dgamma, n);
            if (dx) layer_norm_row_dx(x + r * n, gamma, g + r * n, stat[2 * r], stat[2 * r + 1], dx + r * n, dx_first, n);
        }
        if (dbeta) add_rows(g, rows, n, dbeta);
    });
    auto& r = op.record();
    const std::size_t rows = x.size() / n;
    r.saved.resize({rows, std::size_t(2)});
    auto& y = op.out();
    y.resize(s);
    const T *xp = x.value().data(), *gp = gamma.value().data(), *bp = beta.value().data();
    for (std::size_t i = 0; i < rows; ++i) {
        const auto [mu, rstd] = layer_norm_row(xp + i * n, gp, bp, y.data() + i * n, n, T(eps));
        r.saved.data()[2 * i] = mu;
        r.saved.data()[2 * i + 1] = rstd;
    }
    return op.done();
}

// y = x m / (1 - p); dx = g m / (1 - p). r.saved = m / (1 - p)
template <class T>
Var<T> dropout(const Var<T>& x, const Tensor<T>& mask, Scalar<T> p)
{
    if (!(p >= T(0) && p < T(1)))
        throw Error("dropout: probability p = " + std::to_string(p) + " is outside [0, 1)");
    check_handles("dropout", {x});
    if (mask.shape() != x.shape())
        throw Error("dropout: mask of shape " + shape_str(mask.shape()) + " must have the input's shape " +
                    shape_str(x.shape()));
    for (T m : mask)
        if (m != T(0) && m != T(1)) throw Error("dropout: mask entries must be 0 or 1, found " + std::to_string(m));
    Op<T> op("dropout", {x}, [](Vjp<T>& v) { v.acc(0, v.g * v.r.saved); });
    op.record().a = p;
    op.record().saved = mask * (T(1) / (T(1) - p));
    xt::noalias(op.out()) = x.value() * op.record().saved;
    return op.done();
}

#define AD_INSTANTIATE(T)                                                              \
    template Var<T> softmax(const Var<T>&, std::ptrdiff_t);                            \
    template Var<T> log_softmax(const Var<T>&, std::ptrdiff_t);                        \
    template Var<T> cross_entropy(const Var<T>&, const std::vector<std::int64_t>&);    \
    template Var<T> mse(const Var<T>&, const Var<T>&);                                 \
    template Var<T> dropout(const Var<T>&, const Tensor<T>&, Scalar<T>);               \
    template Var<T> layer_norm(const Var<T>&, const Var<T>&, const Var<T>&, Scalar<T>);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
