// The loops behind the convolution and pooling ops (ops_conv.cpp), on raw NCHW buffers.
//
// A convolution is lowered to matrix products. im2col unfolds the input into a matrix `cols` of
// [C kh kw, N Ho Wo]: row (c, i, j) holds, for every output pixel of every image, the input
// value the kernel tap (i, j) of channel c sees there (0 in the padding). The channels of one
// group are consecutive rows, so group g's block of cols is [Cg kh kw, N Ho Wo] and
//
//   Y_g [Fg, N Ho Wo] = W_g [Fg, Cg kh kw] cols_g                  (forward, one GEMM per group)
//   dW_g = G_g cols_g^T,   dcols_g = W_g^T G_g,   dx = col2im(dcols)  (backward)
//
// where Y and G are the output and its cotangent held channel-major ([F, N Ho Wo]); to_cnp and
// from_cnp move between that and NCHW. One GEMM covers the whole batch, so its inner dimension
// is N Ho Wo, long even for small images. Every buffer is the caller's, sized once: the kernels
// allocate nothing. The loops split over the shared pool (parallel.hpp) along an axis whose
// items write disjoint outputs: rows of cols, channels, planes, images.
#pragma once

#include "autodiff/kernels/parallel.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

namespace ad::kernels {

// The shape of one convolution: input [N, C, H, W], weight [F, C / groups, kh, kw], output
// [N, F, Ho, Wo] with Ho = (H + 2 ph - dh (kh - 1) - 1) / sh + 1 (and the same for Wo).
struct ConvGeometry {
    std::size_t N = 0, C = 0, H = 0, W = 0;
    std::size_t F = 0, kh = 1, kw = 1;
    std::size_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
    std::size_t Ho = 0, Wo = 0;

    std::size_t Cg() const { return C / groups; }
    std::size_t Fg() const { return F / groups; }
    std::size_t Kg() const { return Cg() * kh * kw; }  // a row of W_g, a column block of cols_g
    std::size_t pixels() const { return Ho * Wo; }      // output pixels of one image
    std::size_t columns() const { return N * Ho * Wo; }
    std::size_t cols_size() const { return C * kh * kw * columns(); }
    std::size_t out_size() const { return N * F * Ho * Wo; }
    std::size_t in_size() const { return N * C * H * W; }
    std::size_t weight_size() const { return F * Kg(); }
};

// A size in 64-bit arithmetic that cannot wrap: once a product or sum does not fit, the result
// is marked `overflow` and so is everything computed from it. The ops size their outputs and work
// space with it once per call, before allocating anything.
struct CheckedSize {
    std::size_t value = 0;
    bool overflow = false;
    CheckedSize(std::size_t v = 0) : value(v) {}  // NOLINT: implicit, so that sizes mix with it

    friend CheckedSize operator*(CheckedSize a, CheckedSize b)
    {
        CheckedSize r;
        r.overflow = __builtin_mul_overflow(a.value, b.value, &r.value) || a.overflow || b.overflow;
        return r;
    }
    friend CheckedSize operator+(CheckedSize a, CheckedSize b)
    {
        CheckedSize r;
        r.overflow = __builtin_add_overflow(a.value, b.value, &r.value) || a.overflow || b.overflow;
        return r;
    }
};

// (in + 2 pad - dilation (k - 1) - 1) / stride + 1, or 0 when the dilated kernel does not fit.
// The caller has checked that in + 2 pad and dilation (k - 1) + 1 fit in 64 bits (check_conv,
// check_pool).
inline std::size_t conv_out_size(std::size_t in, std::size_t k, std::size_t stride, std::size_t pad,
                                 std::size_t dilation)
{
    const std::size_t span = dilation * (k - 1) + 1;
    if (in + 2 * pad < span) return 0;
    return (in + 2 * pad - span) / stride + 1;
}

// C (+)= op(A) op(B) for row-major buffers: A is [m, k] (or [k, m] when ta), B is [k, n] (or
// [n, k] when tb), C is [m, n].
template <class T>
void matmul_into(const T* A, bool ta, const T* B, bool tb, T* C, std::size_t m, std::size_t n, std::size_t k,
          bool accumulate)
{
    if (m == 0 || n == 0) return;
    const T beta = accumulate ? T(1) : T(0);
    if (k == 0) {
        if (!accumulate) std::fill_n(C, m * n, T(0));
        return;
    }
    using D = std::array<std::size_t, 2>;
    auto Am = xt::adapt(const_cast<T*>(A), m * k, xt::no_ownership(), ta ? D{k, m} : D{m, k});
    auto Bm = xt::adapt(const_cast<T*>(B), k * n, xt::no_ownership(), tb ? D{n, k} : D{k, n});
    auto Cm = xt::adapt(C, m * n, xt::no_ownership(), D{m, n});
    xt::blas::gemm(Am, Bm, Cm, ta, tb, T(1), beta);
}

// The output columns ow whose input column ow s + d lies inside [0, W): ow0 <= ow < ow1.
inline void valid_range(std::ptrdiff_t d, std::size_t s, std::size_t W, std::size_t Wo, std::size_t& ow0,
                        std::size_t& ow1)
{
    const std::ptrdiff_t S = std::ptrdiff_t(s);
    const std::ptrdiff_t lo = d >= 0 ? 0 : (-d + S - 1) / S;              // first ow with ow s + d >= 0
    const std::ptrdiff_t hi = std::ptrdiff_t(W) - d <= 0 ? 0 : (std::ptrdiff_t(W) - d + S - 1) / S;  // ow s + d < W
    ow1 = std::size_t(std::min<std::ptrdiff_t>(hi, std::ptrdiff_t(Wo)));
    ow0 = std::min(std::size_t(lo), ow1);
}

// f(i) for every i in [0, n), in chunks of a fixed length that the compiler vectorises whole
// (a loop of run-time length n, 12 say, would leave most of it to a scalar remainder under
// AVX-512); the last chunk overlaps the one before, so f must give the same result when called
// twice for one i.
template <class F>
void in_chunks(std::size_t n, F f)
{
    auto run = [&](auto L) {
        for (std::size_t s = 0;; s += L) {
            const std::size_t at = std::min(s, n - L);
            for (std::size_t i = 0; i < L; ++i) f(at + i);
            if (at == n - L) return;
        }
    };
    if (n >= 8) run(std::integral_constant<std::size_t, 8>());
    else if (n >= 4) run(std::integral_constant<std::size_t, 4>());
    else
        for (std::size_t i = 0; i < n; ++i) f(i);
}

// d[0, n) += s[0, n), rows that do not overlap (col2im's rows are a few pixels long: restrict
// spares the loop its run-time overlap test).
template <class T>
void add_into(T* __restrict d, const T* __restrict s, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i) d[i] += s[i];
}

// cols [C kh kw, N Ho Wo] from x [N, C, H, W].
template <class T>
void im2col(const T* __restrict x, const ConvGeometry& g, T* __restrict cols)
{
    const std::size_t P = g.pixels(), NP = g.columns();
    parallel_for(g.C * g.kh * g.kw, NP, [=](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) {
            const std::size_t c = r / (g.kh * g.kw), i = r / g.kw % g.kh, j = r % g.kw;
            T* row = cols + r * NP;
            const std::ptrdiff_t di = std::ptrdiff_t(i * g.dh) - std::ptrdiff_t(g.ph);
            const std::ptrdiff_t dj = std::ptrdiff_t(j * g.dw) - std::ptrdiff_t(g.pw);
            std::size_t ow0, ow1;
            valid_range(dj, g.sw, g.W, g.Wo, ow0, ow1);
            for (std::size_t n = 0; n < g.N; ++n) {
                const T* plane = x + (n * g.C + c) * g.H * g.W;
                T* out = row + n * P;
                for (std::size_t oh = 0; oh < g.Ho; ++oh) {
                    const std::ptrdiff_t ih = std::ptrdiff_t(oh * g.sh) + di;
                    T* o = out + oh * g.Wo;
                    if (ih < 0 || ih >= std::ptrdiff_t(g.H)) {
                        std::fill_n(o, g.Wo, T(0));
                        continue;
                    }
                    const T* src = plane + std::size_t(ih) * g.W;
                    std::fill_n(o, ow0, T(0));
                    if (ow0 < ow1) {
                        const T* first = src + (std::ptrdiff_t(ow0 * g.sw) + dj);  // x(ih, ow0 s + dj)
                        if (g.sw == 1) in_chunks(ow1 - ow0, [=](std::size_t k) { o[ow0 + k] = first[k]; });
                        else
                            for (std::size_t ow = ow0; ow < ow1; ++ow) o[ow] = first[(ow - ow0) * g.sw];
                    }
                    std::fill(o + ow1, o + g.Wo, T(0));
                }
            }
        }
    });
}

// dx [N, C, H, W] += the columns folded back (im2col's adjoint: every entry of cols adds into the
// input element it was copied from; padding entries are dropped).
template <class T>
void col2im_add(const T* __restrict cols, const ConvGeometry& g, T* __restrict dx)
{
    const std::size_t P = g.pixels(), NP = g.columns();
    // Split over channels: the rows of channel c add into channel c's planes only.
    parallel_for(g.C, g.kh * g.kw * NP, [=](std::size_t c0, std::size_t c1) {
        for (std::size_t c = c0; c < c1; ++c)
            for (std::size_t i = 0; i < g.kh; ++i)
                for (std::size_t j = 0; j < g.kw; ++j) {
                    const T* row = cols + ((c * g.kh + i) * g.kw + j) * NP;
                    const std::ptrdiff_t di = std::ptrdiff_t(i * g.dh) - std::ptrdiff_t(g.ph);
                    const std::ptrdiff_t dj = std::ptrdiff_t(j * g.dw) - std::ptrdiff_t(g.pw);
                    std::size_t ow0, ow1;
                    valid_range(dj, g.sw, g.W, g.Wo, ow0, ow1);
                    for (std::size_t n = 0; n < g.N; ++n) {
                        T* plane = dx + (n * g.C + c) * g.H * g.W;
                        const T* in = row + n * P;
                        for (std::size_t oh = 0; oh < g.Ho; ++oh) {
                            const std::ptrdiff_t ih = std::ptrdiff_t(oh * g.sh) + di;
                            if (ih < 0 || ih >= std::ptrdiff_t(g.H)) continue;
                            T* dst = plane + std::size_t(ih) * g.W;
                            const T* s = in + oh * g.Wo;
                            if (g.sw == 1) add_into(dst + dj + std::ptrdiff_t(ow0), s + ow0, ow1 - ow0);
                            else
                                for (std::size_t ow = ow0; ow < ow1; ++ow) dst[std::ptrdiff_t(ow * g.sw) + dj] += s[ow];
                        }
                    }
                }
    });
}

// cnp [F, N P] from y [N, F, P].
template <class T>
void to_cnp(const T* __restrict y, std::size_t N, std::size_t F, std::size_t P, T* __restrict cnp)
{
    parallel_for(N * F, P, [=](std::size_t k0, std::size_t k1) {
        for (std::size_t k = k0; k < k1; ++k) {
            const std::size_t n = k / F, f = k % F;
            std::copy_n(y + k * P, P, cnp + f * N * P + n * P);
        }
    });
}

// y [N, F, P] (+)= cnp [F, N P] (+ bias[f] when bias is given).
template <class T>
void from_cnp(const T* __restrict cnp, std::size_t N, std::size_t F, std::size_t P, const T* bias,
              T* __restrict y, bool accumulate)
{
    parallel_for(N * F, P, [=](std::size_t k0, std::size_t k1) {
        for (std::size_t k = k0; k < k1; ++k) {
            const std::size_t n = k / F, f = k % F;
            const T* s = cnp + f * N * P + n * P;
            T* d = y + k * P;
            const T b = bias ? bias[f] : T(0);
            if (accumulate)
                for (std::size_t p = 0; p < P; ++p) d[p] += s[p] + b;
            else
                for (std::size_t p = 0; p < P; ++p) d[p] = s[p] + b;
        }
    });
}

// y [N, F, Ho, Wo] = conv(x, w) (+ bias). cols [C kh kw, N P] and ybuf [F, N P] are work space;
// cols keeps the unfolded input afterwards (the weight gradient reads it).
template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, const ConvGeometry& g, T* cols, T* ybuf, T* y)
{
    im2col(x, g, cols);
    const std::size_t Fg = g.Fg(), Kg = g.Kg(), NP = g.columns();
    for (std::size_t k = 0; k < g.groups; ++k)
        matmul_into(w + k * Fg * Kg, false, cols + k * Kg * NP, false, ybuf + k * Fg * NP, Fg, NP, Kg, false);
    from_cnp(ybuf, g.N, g.F, g.pixels(), bias, y, false);
}

// dw [F, Cg, kh, kw] (+)= G cols^T per group, for gcnp = the output cotangent as [F, N P] and
// cols = im2col(x).
template <class T>
void conv2d_weight_grad(const T* gcnp, const T* cols, const ConvGeometry& g, T* dw, bool accumulate)
{
    const std::size_t Fg = g.Fg(), Kg = g.Kg(), NP = g.columns();
    for (std::size_t k = 0; k < g.groups; ++k)
        matmul_into(gcnp + k * Fg * NP, false, cols + k * Kg * NP, true, dw + k * Fg * Kg, Fg, Kg, NP, accumulate);
}

// dx [N, C, H, W] (+)= col2im(W^T G) per group; dcols [C kh kw, N P] is work space.
template <class T>
void conv2d_input_grad(const T* gcnp, const T* w, const ConvGeometry& g, T* dcols, T* dx, bool accumulate)
{
    const std::size_t Fg = g.Fg(), Kg = g.Kg(), NP = g.columns();
    for (std::size_t k = 0; k < g.groups; ++k)
        matmul_into(w + k * Fg * Kg, true, gcnp + k * Fg * NP, false, dcols + k * Kg * NP, Kg, NP, Fg, false);
    if (!accumulate) std::fill_n(dx, g.in_size(), T(0));
    col2im_add(dcols, g, dx);
}

// s[0] + ... + s[n - 1] in eight interleaved partial sums (a loop the compiler vectorises; one
// running sum is a chain of dependent adds), added up at the end: the order is fixed by n alone.
template <class T>
T sum_of(const T* s, std::size_t n)
{
    constexpr std::size_t L = 8;
    const std::size_t whole = n - n % L;
    T part[L] = {};
    for (std::size_t p = 0; p < whole; p += L)
        for (std::size_t i = 0; i < L; ++i) part[i] += s[p + i];
    T total = 0;
    for (std::size_t i = 0; i < L; ++i) total += part[i];
    for (std::size_t p = whole; p < n; ++p) total += s[p];
    return total;
}

// db [F] (+)= sum of g [N, F, P] over images and pixels.
template <class T>
void bias_grad(const T* gy, std::size_t N, std::size_t F, std::size_t P, T* db, bool accumulate)
{
    if (!accumulate) std::fill_n(db, F, T(0));
    // Split over channels, each summed over the images in order into a local sum: the channels
    // of db share a cache line, which two threads writing it on every image would pass back and
    // forth (4x slower at two threads than at one).
    parallel_for(F, N * P, [=](std::size_t f0, std::size_t f1) {
        for (std::size_t f = f0; f < f1; ++f) {
            T total = db[f];
            for (std::size_t n = 0; n < N; ++n) total += sum_of(gy + (n * F + f) * P, P);
            db[f] = total;
        }
    });
}

// --- pooling: windows of kh x kw with strides sh, sw over an input padded by ph, pw ---
struct PoolGeometry {
    std::size_t N = 0, C = 0, H = 0, W = 0;
    std::size_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
    std::size_t Ho = 0, Wo = 0;
    std::size_t in_size() const { return N * C * H * W; }
    std::size_t out_size() const { return N * C * Ho * Wo; }
};

// For every output position of every plane: f(nc, o, i0, i1, j0, j1), o the flat output index and
// rows [i0, i1) by columns [j0, j1) its window clipped to the input plane (padding left out).
// The planes are split over the pool: f must only write plane nc's outputs.
template <class F>
void for_each_window(const PoolGeometry& g, F f)
{
    parallel_for(g.N * g.C, g.Ho * g.Wo * g.kh * g.kw, [=](std::size_t p0, std::size_t p1) {
        for (std::size_t nc = p0; nc < p1; ++nc)
            for (std::size_t oh = 0; oh < g.Ho; ++oh) {
                const std::ptrdiff_t h0 = std::ptrdiff_t(oh * g.sh) - std::ptrdiff_t(g.ph);
                const std::size_t i0 = std::size_t(std::max<std::ptrdiff_t>(h0, 0));
                const std::size_t i1 = std::size_t(std::min<std::ptrdiff_t>(h0 + std::ptrdiff_t(g.kh), std::ptrdiff_t(g.H)));
                for (std::size_t ow = 0; ow < g.Wo; ++ow) {
                    const std::ptrdiff_t w0 = std::ptrdiff_t(ow * g.sw) - std::ptrdiff_t(g.pw);
                    const std::size_t j0 = std::size_t(std::max<std::ptrdiff_t>(w0, 0));
                    const std::size_t j1 =
                        std::size_t(std::min<std::ptrdiff_t>(w0 + std::ptrdiff_t(g.kw), std::ptrdiff_t(g.W)));
                    f(nc, (nc * g.Ho + oh) * g.Wo + ow, i0, i1, j0, j1);
                }
            }
    });
}

// y = the maximum of each window (padding counts as -infinity); arg = the position of that
// maximum within its input plane (the first one on ties, in row-major window order).
template <class T>
void max_pool2d_forward(const T* __restrict x, const PoolGeometry& g, T* __restrict y, std::ptrdiff_t* __restrict arg)
{
    // v replaces the running maximum if larger, or if it is the first NaN.
    auto better = [](T v, T best) { return v > best || (v != v && best == best); };
    if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0) {
        // The usual 2x2 window moved by 2: the four candidates in row-major order. Written so that
        // the compiler vectorises it (`better` as !(v <= m) && m == m, an if per candidate, fixed
        // chunks of windows): as scalar code the comparisons are mispredicted branches on real
        // data, 9x slower on a [64, 16, 24, 24] input.
        parallel_for(g.N * g.C, 4 * g.Ho * g.Wo, [=](std::size_t p0, std::size_t p1) {
            for (std::size_t nc = p0; nc < p1; ++nc)
                for (std::size_t oh = 0; oh < g.Ho; ++oh) {
                    const T* r0 = x + nc * g.H * g.W + 2 * oh * g.W;
                    const T* r1 = r0 + g.W;
                    T* yo = y + (nc * g.Ho + oh) * g.Wo;
                    std::ptrdiff_t* ao = arg + (nc * g.Ho + oh) * g.Wo;
                    const std::ptrdiff_t base = std::ptrdiff_t(2 * oh * g.W), W = std::ptrdiff_t(g.W);
                    in_chunks(g.Wo, [=](std::size_t ow) {
                        const std::ptrdiff_t j = std::ptrdiff_t(2 * ow);
                        const T b = r0[j + 1], c = r1[j], d = r1[j + 1];
                        T m = r0[j];
                        std::ptrdiff_t at = base + j;
                        if (!(b <= m) && m == m) m = b, at = base + j + 1;
                        if (!(c <= m) && m == m) m = c, at = base + W + j;
                        if (!(d <= m) && m == m) m = d, at = base + W + j + 1;
                        yo[ow] = m;
                        ao[ow] = at;
                    });
                }
        });
        return;
    }
    for_each_window(g, [&](std::size_t nc, std::size_t o, std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
        const T* plane = x + nc * g.H * g.W;
        T best = -std::numeric_limits<T>::infinity();
        std::ptrdiff_t at = std::ptrdiff_t(i0 * g.W + j0);
        for (std::size_t i = i0; i < i1; ++i)
            for (std::size_t j = j0; j < j1; ++j) {
                const T v = plane[i * g.W + j];
                if (better(v, best)) {  // the first NaN wins, as in PyTorch
                    best = v;
                    at = std::ptrdiff_t(i * g.W + j);
                }
            }
        y[o] = best;
        arg[o] = at;
    });
}

// dx (+)= g scattered to the saved positions of the maxima.
template <class T>
void max_pool2d_backward(const T* __restrict gy, const std::ptrdiff_t* __restrict arg, const PoolGeometry& g,
                         T* __restrict dx, bool accumulate)
{
    if (!accumulate) std::fill_n(dx, g.in_size(), T(0));
    const std::size_t P = g.Ho * g.Wo;
    parallel_for(g.N * g.C, P, [=](std::size_t p0, std::size_t p1) {
        for (std::size_t nc = p0; nc < p1; ++nc) {
            T* plane = dx + nc * g.H * g.W;
            for (std::size_t p = 0; p < P; ++p) plane[arg[nc * P + p]] += gy[nc * P + p];
        }
    });
}

// y = g gathered from the saved positions of the maxima: the adjoint of max_pool2d_backward.
template <class T>
void max_pool2d_gather(const T* __restrict u, const std::ptrdiff_t* __restrict arg, const PoolGeometry& g,
                       T* __restrict y, bool accumulate)
{
    const std::size_t P = g.Ho * g.Wo;
    parallel_for(g.N * g.C, P, [=](std::size_t p0, std::size_t p1) {
        for (std::size_t nc = p0; nc < p1; ++nc) {
            const T* plane = u + nc * g.H * g.W;
            for (std::size_t p = 0; p < P; ++p) {
                const T v = plane[arg[nc * P + p]];
                y[nc * P + p] = accumulate ? y[nc * P + p] + v : v;
            }
        }
    });
}

// y = the mean of each window, padding counted as zeros (divisor kh kw: PyTorch's default,
// count_include_pad = true).
template <class T>
void avg_pool2d_forward(const T* __restrict x, const PoolGeometry& g, T* __restrict y)
{
    const T scale = T(1) / T(g.kh * g.kw);
    for_each_window(g, [&](std::size_t nc, std::size_t o, std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
        const T* plane = x + nc * g.H * g.W;
        T s = 0;
        for (std::size_t i = i0; i < i1; ++i)
            for (std::size_t j = j0; j < j1; ++j) s += plane[i * g.W + j];
        y[o] = s * scale;
    });
}

// dx (+)= g / (kh kw) spread over each window (avg_pool2d's adjoint).
template <class T>
void avg_pool2d_backward(const T* __restrict gy, const PoolGeometry& g, T* __restrict dx, bool accumulate)
{
    if (!accumulate) std::fill_n(dx, g.in_size(), T(0));
    const T scale = T(1) / T(g.kh * g.kw);
    for_each_window(g, [&](std::size_t nc, std::size_t o, std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
        T* plane = dx + nc * g.H * g.W;
        const T v = gy[o] * scale;
        for (std::size_t i = i0; i < i1; ++i)
            for (std::size_t j = j0; j < j1; ++j) plane[i * g.W + j] += v;
    });
}

// --- batch normalisation over the channels of [N, C, P] ---

// Per channel c, over n and p: mean[c], var[c] (biased) and rstd[c] = 1 / sqrt(var[c] + eps); then
// y = (x - mean) rstd gamma + beta.
template <class T>
void batch_norm_forward(const T* __restrict x, const T* __restrict gamma, const T* __restrict beta,
                        std::size_t N, std::size_t C, std::size_t P, T eps, T* __restrict mean,
                        T* __restrict rstd, T* __restrict var, T* __restrict y)
{
    const T count = T(N * P);
    for (std::size_t c = 0; c < C; ++c) {
        T s = 0;
        for (std::size_t n = 0; n < N; ++n) {
            const T* row = x + (n * C + c) * P;
            for (std::size_t p = 0; p < P; ++p) s += row[p];
        }
        const T mu = s / count;
        T v = 0;
        for (std::size_t n = 0; n < N; ++n) {
            const T* row = x + (n * C + c) * P;
            for (std::size_t p = 0; p < P; ++p) v += (row[p] - mu) * (row[p] - mu);
        }
        const T r = T(1) / std::sqrt(v / count + eps);
        mean[c] = mu;
        var[c] = v / count;
        rstd[c] = r;
        const T a = r * gamma[c], b = beta[c] - mu * r * gamma[c];
        for (std::size_t n = 0; n < N; ++n) {
            const T* row = x + (n * C + c) * P;
            T* out = y + (n * C + c) * P;
            for (std::size_t p = 0; p < P; ++p) out[p] = row[p] * a + b;
        }
    }
}

// With xhat = (x - mean) rstd and m = N P: dbeta = sum g, dgamma = sum g xhat,
// dx = gamma rstd (g - dbeta / m - xhat dgamma / m). Any of dx, dgamma, dbeta may be null.
template <class T>
void batch_norm_backward(const T* __restrict x, const T* __restrict gamma, const T* __restrict gy,
                         const T* __restrict mean, const T* __restrict rstd, std::size_t N, std::size_t C,
                         std::size_t P, T* dx, bool dx_accumulate, T* dgamma, bool dgamma_accumulate, T* dbeta,
                         bool dbeta_accumulate)
{
    const T count = T(N * P);
    for (std::size_t c = 0; c < C; ++c) {
        const T mu = mean[c], r = rstd[c];
        T sg = 0, sgx = 0;
        for (std::size_t n = 0; n < N; ++n) {
            const T* xr = x + (n * C + c) * P;
            const T* gr = gy + (n * C + c) * P;
            for (std::size_t p = 0; p < P; ++p) {
                sg += gr[p];
                sgx += gr[p] * (xr[p] - mu);
            }
        }
        sgx *= r;  // sum g xhat
        if (dbeta) dbeta[c] = dbeta_accumulate ? dbeta[c] + sg : sg;
        if (dgamma) dgamma[c] = dgamma_accumulate ? dgamma[c] + sgx : sgx;
        if (!dx) continue;
        const T k = gamma[c] * r, m1 = sg / count, m2 = sgx / count;
        for (std::size_t n = 0; n < N; ++n) {
            const T* xr = x + (n * C + c) * P;
            const T* gr = gy + (n * C + c) * P;
            T* d = dx + (n * C + c) * P;
            for (std::size_t p = 0; p < P; ++p) {
                const T v = k * (gr[p] - m1 - (xr[p] - mu) * r * m2);
                d[p] = dx_accumulate ? d[p] + v : v;
            }
        }
    }
}

// --- a per-channel affine map over the channels of [N, C, P] ---

// y = x scale[c] + shift[c] over each (n, c) plane of P values.
template <class T>
void channel_affine_forward(const T* __restrict x, const T* __restrict scale, const T* __restrict shift,
                            std::size_t N, std::size_t C, std::size_t P, T* __restrict y)
{
    if (P == 1) {  // [N, C]: planes of one value, so the loop runs along the channels
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t c = 0; c < C; ++c) y[n * C + c] = x[n * C + c] * scale[c] + shift[c];
        return;
    }
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c) {
            const T a = scale[c], b = shift[c];
            const T* in = x + (n * C + c) * P;
            T* out = y + (n * C + c) * P;
            for (std::size_t p = 0; p < P; ++p) out[p] = in[p] * a + b;
        }
}

// {sum g, sum g x} over n values, in independent partial sums: vectorisable, and shorter float
// rounding chains.
template <class T>
std::array<T, 2> sum_and_dot(const T* __restrict g, const T* __restrict x, std::size_t n)
{
    constexpr std::size_t L = 16;
    T sg[L] = {}, sgx[L] = {};
    std::size_t i = 0;
    for (; i + L <= n; i += L)
        for (std::size_t l = 0; l < L; ++l) {
            sg[l] += g[i + l];
            sgx[l] += g[i + l] * x[i + l];
        }
    std::array<T, 2> total{T(0), T(0)};
    for (; i < n; ++i) total[0] += g[i], total[1] += g[i] * x[i];
    for (std::size_t l = 0; l < L; ++l) total[0] += sg[l], total[1] += sgx[l];
    return total;
}

// channel_affine's VJP: dx = g scale[c]; dscale[c] = sum g x, dshift[c] = sum g over n and p. Each
// is written, or added to when its flag says so; any may be null. dscale and dshift may be one
// buffer (scale and shift one input).
template <class T>
void channel_affine_backward(const T* __restrict x, const T* __restrict scale, const T* __restrict gy,
                             std::size_t N, std::size_t C, std::size_t P, T* dx, bool dx_accumulate, T* dscale,
                             bool dscale_accumulate, T* dshift, bool dshift_accumulate)
{
    if (P == 1) {
        if (dscale && !dscale_accumulate) std::fill_n(dscale, C, T(0));
        if (dshift && !dshift_accumulate) std::fill_n(dshift, C, T(0));
        for (std::size_t n = 0; n < N; ++n) {
            const T* g = gy + n * C;
            const T* xr = x + n * C;
            if (dscale)
                for (std::size_t c = 0; c < C; ++c) dscale[c] += g[c] * xr[c];
            if (dshift)
                for (std::size_t c = 0; c < C; ++c) dshift[c] += g[c];
            if (!dx) continue;
            T* d = dx + n * C;
            if (dx_accumulate)
                for (std::size_t c = 0; c < C; ++c) d[c] += g[c] * scale[c];
            else
                for (std::size_t c = 0; c < C; ++c) d[c] = g[c] * scale[c];
        }
        return;
    }
    for (std::size_t c = 0; c < C; ++c) {
        const T a = scale[c];
        T sg = 0, sgx = 0;
        for (std::size_t n = 0; n < N; ++n) {
            const std::size_t at = (n * C + c) * P;
            if (dscale || dshift) {
                const std::array<T, 2> s = sum_and_dot(gy + at, x + at, P);
                sg += s[0], sgx += s[1];
            }
            if (!dx) continue;
            const T* g = gy + at;
            T* d = dx + at;
            if (dx_accumulate)
                for (std::size_t p = 0; p < P; ++p) d[p] += g[p] * a;
            else
                for (std::size_t p = 0; p < P; ++p) d[p] = g[p] * a;
        }
        if (dscale) dscale[c] = dscale_accumulate ? dscale[c] + sgx : sgx;
        if (dshift) dshift[c] = dshift_accumulate ? dshift[c] + sg : sg;
    }
}

}  // namespace ad::kernels
