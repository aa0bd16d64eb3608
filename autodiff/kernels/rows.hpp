// Row kernels of the fused neural-network ops: softmax over one axis and layer normalisation
// over the last. Their sums run in SIMD lanes (xsimd) and add the lanes at the end: left to
// itself the compiler keeps a float sum in one serial chain.
#pragma once

#include "autodiff/kernels/reduce.hpp"

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <limits>
#include <utility>

namespace ad::kernels {

// For every slice of x along the axis d: m = max_j x_j and s = sum_j exp(x_j - m), then
// f(o, i, m, s). A slice holding a NaN has m = NaN.
template <class T, class F>
void for_each_slice(const T* x, const AxisLoop& d, F f)
{
    for (std::size_t o = 0; o < d.outer; ++o)
        for (std::size_t i = 0; i < d.inner; ++i) {
            T m = -std::numeric_limits<T>::infinity();
            for (std::size_t j = 0; j < d.n; ++j) {
                const T v = x[d.at(o, j, i)];
                m = v > m || v != v ? v : m;
            }
            T s = 0;
            for (std::size_t j = 0; j < d.n; ++j) s += std::exp(x[d.at(o, j, i)] - m);
            f(o, i, m, s);
        }
}

// For every slice along the axis d: s = sum_j term(k_j), then each(k_j, s), where k_j is the
// flat index of the slice's j-th element (a softmax-like VJP: a sum per slice, then a pass).
template <class Term, class Each>
void for_each_slice_sum(const AxisLoop& d, Term term, Each each)
{
    for (std::size_t o = 0; o < d.outer; ++o)
        for (std::size_t i = 0; i < d.inner; ++i) {
            decltype(term(std::size_t(0))) s = 0;
            for (std::size_t j = 0; j < d.n; ++j) s += term(d.at(o, j, i));
            for (std::size_t j = 0; j < d.n; ++j) each(d.at(o, j, i), s);
        }
}

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

// y = softmax(x) over one contiguous row of n: exp(x - max) computed once, in SIMD lanes, then
// scaled by 1 / sum. A row holding a NaN gives NaN throughout (its max is NaN).
template <class T>
void softmax_row(const T* __restrict x, T* __restrict y, std::size_t n)
{
    T m = -std::numeric_limits<T>::infinity();
    for (std::size_t j = 0; j < n; ++j) m = x[j] > m || x[j] != x[j] ? x[j] : m;
    constexpr std::size_t W = Batch<T>::size;
    const Batch<T> vm(m);
    Batch<T> acc(T(0));
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
        const Batch<T> e = xsimd::exp(Batch<T>::load_unaligned(x + j) - vm);
        e.store_unaligned(y + j);
        acc += e;
    }
    T s = xsimd::hadd(acc);
    for (; j < n; ++j) s += (y[j] = std::exp(x[j] - m));
    const T r = T(1) / s;
    for (j = 0; j < n; ++j) y[j] *= r;
}

// softmax's VJP over one contiguous row: dx (+)= y (g - sum_j g_j y_j).
template <class T>
void softmax_row_dx(const T* __restrict y, const T* __restrict g, T* __restrict dx, bool first, std::size_t n)
{
    constexpr std::size_t W = Batch<T>::size;
    Batch<T> acc(T(0));
    std::size_t j = 0;
    for (; j + W <= n; j += W) acc += Batch<T>::load_unaligned(g + j) * Batch<T>::load_unaligned(y + j);
    T s = xsimd::hadd(acc);
    for (; j < n; ++j) s += g[j] * y[j];
    if (first)
        for (j = 0; j < n; ++j) dx[j] = y[j] * (g[j] - s);
    else
        for (j = 0; j < n; ++j) dx[j] += y[j] * (g[j] - s);
}

// {mu, rstd} of one row of n: its mean and 1 / sqrt(its variance + eps).
template <class T>
std::pair<T, T> layer_norm_stats(const T* __restrict x, std::size_t n, T eps)
{
    const T mu = sum_centred<T, 1>(x, T(0), n) / T(n);
    return {mu, T(1) / std::sqrt(sum_centred<T, 2>(x, mu, n) / T(n) + eps)};
}

// y = (x - mu) rstd gamma + beta for one row of n; returns {mu, rstd}.
template <class T>
std::pair<T, T> layer_norm_row(const T* __restrict x, const T* __restrict gamma, const T* __restrict beta,
                               T* __restrict y, std::size_t n, T eps)
{
    const auto [mu, rstd] = layer_norm_stats(x, n, eps);
    for (std::size_t j = 0; j < n; ++j) y[j] = (x[j] - mu) * rstd * gamma[j] + beta[j];
    return {mu, rstd};
}

// {mean d, mean(d xhat)} over one row, with d = g gamma, or g alone (Scaled = false): the two
// sums of layer_norm's VJP for x.
template <class T, bool Scaled>
std::pair<T, T> dxhat_means(const T* __restrict x, const T* __restrict gamma, const T* __restrict g, T mu, T rstd,
                            std::size_t n)
{
    auto d_at = [&](std::size_t j) {
        if constexpr (Scaled) return g[j] * gamma[j];
        else return g[j];
    };
    auto d_batch = [&](std::size_t j) {
        if constexpr (Scaled) return Batch<T>::load_unaligned(g + j) * Batch<T>::load_unaligned(gamma + j);
        else return Batch<T>::load_unaligned(g + j);
    };
    constexpr std::size_t W = Batch<T>::size;
    const Batch<T> vmu(mu), vrstd(rstd);
    Batch<T> a1(T(0)), a2(T(0));
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
        const Batch<T> d = d_batch(j);
        a1 += d;
        a2 += d * ((Batch<T>::load_unaligned(x + j) - vmu) * vrstd);
    }
    T t1 = xsimd::hadd(a1), t2 = xsimd::hadd(a2);
    for (; j < n; ++j) {
        t1 += d_at(j);
        t2 += d_at(j) * ((x[j] - mu) * rstd);
    }
    return {t1 / T(n), t2 / T(n)};
}

// One row of layer_norm's VJP for x:
// dx (+)= rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat)).
// Without gamma (Scaled = false) it is the VJP of xhat alone, J g, with J = dxhat/dx symmetric.
template <class T, bool Scaled = true>
void layer_norm_row_dx(const T* __restrict x, const T* __restrict gamma, const T* __restrict g, T mu, T rstd,
                       T* __restrict dx, bool first, std::size_t n)
{
    auto dxhat = [&](std::size_t j) {
        if constexpr (Scaled) return g[j] * gamma[j];
        else return g[j];
    };
    const auto [m1, m2] = dxhat_means<T, Scaled>(x, gamma, g, mu, rstd, n);
    if (first)
        for (std::size_t j = 0; j < n; ++j) dx[j] = rstd * (dxhat(j) - m1 - ((x[j] - mu) * rstd) * m2);
    else
        for (std::size_t j = 0; j < n; ++j) dx[j] += rstd * (dxhat(j) - m1 - ((x[j] - mu) * rstd) * m2);
}

// One row of J w, J = dxhat/dx (symmetric): (J w)_j = rstd (w_j - mean w - xhat_j mean(w xhat)),
// handed to out(j, (J w)_j) element by element.
template <class T, class Out>
void layer_norm_row_jw(const T* __restrict x, const T* __restrict w, T mu, T rstd, std::size_t n, Out out)
{
    const auto [m1, m2] = dxhat_means<T, false>(x, nullptr, w, mu, rstd, n);
    for (std::size_t j = 0; j < n; ++j) out(j, rstd * (w[j] - m1 - ((x[j] - mu) * rstd) * m2));
}

// One row of the second derivative of xhat: the Hessian of <w, xhat(x)> applied to v,
// dx (+)= rstd^2 (3 A Q xhat - Q (w - mean w) - A (v - mean v) - M xhat),
// with A = mean(w xhat), Q = mean(v xhat), M = mean((w - mean w)(v - mean v)); v = u, or
// u gamma (Scaled).
template <class T, bool Scaled = false>
void layer_norm_row_d2x(const T* __restrict x, const T* __restrict w, const T* __restrict u,
                        const T* __restrict gamma, T mu, T rstd, T* __restrict dx, bool first, std::size_t n)
{
    auto v = [&](std::size_t j) {
        if constexpr (Scaled) return u[j] * gamma[j];
        else return u[j];
    };
    auto v_batch = [&](std::size_t j) {
        if constexpr (Scaled) return Batch<T>::load_unaligned(u + j) * Batch<T>::load_unaligned(gamma + j);
        else return Batch<T>::load_unaligned(u + j);
    };
    constexpr std::size_t W = Batch<T>::size;
    const Batch<T> vmu(mu), vrstd(rstd);
    Batch<T> bw(T(0)), bv(T(0)), bwv(T(0)), bA(T(0)), bQ(T(0));
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
        const Batch<T> xh = (Batch<T>::load_unaligned(x + j) - vmu) * vrstd;
        const Batch<T> wj = Batch<T>::load_unaligned(w + j), vj = v_batch(j);
        bw += wj;
        bv += vj;
        bwv += wj * vj;
        bA += wj * xh;
        bQ += vj * xh;
    }
    T sw = xsimd::hadd(bw), sv = xsimd::hadd(bv), swv = xsimd::hadd(bwv), A = xsimd::hadd(bA), Q = xsimd::hadd(bQ);
    for (; j < n; ++j) {
        const T xh = (x[j] - mu) * rstd;
        sw += w[j];
        sv += v(j);
        swv += w[j] * v(j);
        A += w[j] * xh;
        Q += v(j) * xh;
    }
    const T wbar = sw / T(n), vbar = sv / T(n), M = swv / T(n) - wbar * vbar;
    A /= T(n);
    Q /= T(n);
    const T r2 = rstd * rstd;
    if (first)
        for (j = 0; j < n; ++j) dx[j] = r2 * ((T(3) * A * Q - M) * ((x[j] - mu) * rstd) - Q * (w[j] - wbar) - A * (v(j) - vbar));
    else
        for (j = 0; j < n; ++j) dx[j] += r2 * ((T(3) * A * Q - M) * ((x[j] - mu) * rstd) - Q * (w[j] - wbar) - A * (v(j) - vbar));
}

// dgamma += g xhat over one row.
template <class T>
void layer_norm_row_dgamma(const T* __restrict x, const T* __restrict g, T mu, T rstd, T* __restrict dgamma,
                           std::size_t n)
{
    for (std::size_t j = 0; j < n; ++j) dgamma[j] += g[j] * ((x[j] - mu) * rstd);
}

}  // namespace ad::kernels
