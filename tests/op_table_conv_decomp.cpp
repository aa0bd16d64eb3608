// Op table entries: Convolutions, pooling, batch norm, decompositions and recomputation.
//
// References are plain loops on doubles: a direct convolution over every (n, f, oh, ow, c, i, j),
// window loops for the pools, per-channel statistics for batch norm, Cholesky-Banachiewicz,
// forward and back substitution. Attributes (convolution and pooling options, shapes, eps, a
// transpose flag) travel in Sample::ints and Sample::reals, read by both the call and the
// reference.
#include "op_table.hpp"

#include <algorithm>
#include <random>

namespace optable {

namespace {

// The element type of the Vars a generic call receives.
template <class Vars>
using ElementOf = decltype(std::declval<const Vars&>()[0].item());

// Evenly spaced distinct values in [lo, hi], shuffled: no ties in a max-pooling window, and each
// value is at least (hi - lo) / size from every other, far more than gradcheck's step.
Tensor<double> spread(const Shape& shape, double lo, double hi, std::uint64_t seed)
{
    Tensor<double> t = Tensor<double>::from_shape(shape);
    const std::size_t n = t.size();
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = n == 1 ? lo : lo + (hi - lo) * double(i) / double(n - 1);
    std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
    std::copy(v.begin(), v.end(), t.begin());
    return t;
}

// Row-major element (a, b, c, d) of a rank-4 tensor.
double& at4(Tensor<double>& t, std::size_t a, std::size_t b, std::size_t c, std::size_t d)
{
    const auto& s = t.shape();
    return t.data()[((a * s[1] + b) * s[2] + c) * s[3] + d];
}
double at4(const Tensor<double>& t, std::size_t a, std::size_t b, std::size_t c, std::size_t d)
{
    const auto& s = t.shape();
    return t.data()[((a * s[1] + b) * s[2] + c) * s[3] + d];
}

// --- convolutions ---

// Sample::ints of a convolution: stride h, w; padding h, w; dilation h, w; groups; then, for the
// two adjoint ops, the shape of the input (conv2d_input_grad) or of the weight (conv2d_weight_grad).
ad::Conv2dOptions conv_options(const Sample& s)
{
    ad::Conv2dOptions o;
    o.stride = {std::size_t(s.ints[0]), std::size_t(s.ints[1])};
    o.padding = {std::size_t(s.ints[2]), std::size_t(s.ints[3])};
    o.dilation = {std::size_t(s.ints[4]), std::size_t(s.ints[5])};
    o.groups = std::size_t(s.ints[6]);
    return o;
}
Shape shape_after_options(const Sample& s)
{
    return Shape{std::size_t(s.ints[7]), std::size_t(s.ints[8]), std::size_t(s.ints[9]), std::size_t(s.ints[10])};
}

// The output extent of one axis: (in + 2 pad - dil (k - 1) - 1) / stride + 1.
std::size_t out_extent(std::size_t in, std::size_t k, std::ptrdiff_t stride, std::ptrdiff_t pad, std::ptrdiff_t dil)
{
    return (in + 2 * std::size_t(pad) - std::size_t(dil) * (k - 1) - 1) / std::size_t(stride) + 1;
}

// The output shape [N, F, Ho, Wo] of a convolution of x by w with the options in `opts`.
Shape conv_out_shape(const Shape& x, const Shape& w, const std::vector<std::ptrdiff_t>& opts)
{
    return {x[0], w[0], out_extent(x[2], w[2], opts[0], opts[2], opts[4]),
            out_extent(x[3], w[3], opts[1], opts[3], opts[5])};
}

// Calls visit(x index, w index, y index) for every product x[n, c, ih, iw] w[f, c', i, j] that
// adds into y[n, f, oh, ow], c = the first channel of f's group + c': the direct (7-loop)
// convolution, padding skipped. The three convolution references are this one loop nest.
template <class Visit>
void conv_products(const Shape& xs, const Shape& ws, const std::vector<std::ptrdiff_t>& opts, Visit visit)
{
    const std::size_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
    const std::size_t F = ws[0], Cg = ws[1], kh = ws[2], kw = ws[3];
    const std::ptrdiff_t sh = opts[0], sw = opts[1], ph = opts[2], pw = opts[3], dh = opts[4], dw = opts[5];
    const std::size_t groups = std::size_t(opts[6]), Fg = F / groups;
    const Shape ys = conv_out_shape(xs, ws, opts);
    const std::size_t Ho = ys[2], Wo = ys[3];
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t f = 0; f < F; ++f)
            for (std::size_t oh = 0; oh < Ho; ++oh)
                for (std::size_t ow = 0; ow < Wo; ++ow)
                    for (std::size_t cg = 0; cg < Cg; ++cg)
                        for (std::size_t i = 0; i < kh; ++i)
                            for (std::size_t j = 0; j < kw; ++j) {
                                const std::ptrdiff_t ih = std::ptrdiff_t(oh) * sh + std::ptrdiff_t(i) * dh - ph;
                                const std::ptrdiff_t iw = std::ptrdiff_t(ow) * sw + std::ptrdiff_t(j) * dw - pw;
                                if (ih < 0 || iw < 0 || ih >= std::ptrdiff_t(H) || iw >= std::ptrdiff_t(W)) continue;
                                const std::size_t c = (f / Fg) * Cg + cg;
                                visit(((n * C + c) * H + std::size_t(ih)) * W + std::size_t(iw),
                                      ((f * Cg + cg) * kh + i) * kw + j, ((n * F + f) * Ho + oh) * Wo + ow);
                            }
}

// y = conv2d(x, w) (+ b).
Tensor<double> conv_reference(const std::vector<Tensor<double>>& in, const Sample& s)
{
    const Tensor<double>& x = in[0];
    const Tensor<double>& w = in[1];
    Tensor<double> y = Tensor<double>::from_shape(conv_out_shape(shape_of(x), shape_of(w), s.ints));
    const std::size_t F = w.shape()[0], P = y.shape()[2] * y.shape()[3];
    for (std::size_t k = 0; k < y.size(); ++k) y.data()[k] = in.size() == 3 ? in[2].data()[(k / P) % F] : 0.0;
    conv_products(shape_of(x), shape_of(w), s.ints,
                  [&](std::size_t xi, std::size_t wi, std::size_t yi) { y.data()[yi] += x.data()[xi] * w.data()[wi]; });
    return y;
}

// dx = conv2d_input_grad(g, w, x's shape): dx[x index] = sum of g[y index] w[w index].
Tensor<double> conv_input_grad_reference(const std::vector<Tensor<double>>& in, const Sample& s)
{
    const Tensor<double>& g = in[0];
    const Tensor<double>& w = in[1];
    Tensor<double> dx = Tensor<double>::from_shape(shape_after_options(s));
    std::fill(dx.begin(), dx.end(), 0.0);
    conv_products(shape_of(dx), shape_of(w), s.ints,
                  [&](std::size_t xi, std::size_t wi, std::size_t yi) {
                      dx.data()[xi] += g.data()[yi] * w.data()[wi];
                  });
    return dx;
}

// dw = conv2d_weight_grad(x, g, w's shape): dw[w index] = sum of g[y index] x[x index].
Tensor<double> conv_weight_grad_reference(const std::vector<Tensor<double>>& in, const Sample& s)
{
    const Tensor<double>& x = in[0];
    const Tensor<double>& g = in[1];
    Tensor<double> dw = Tensor<double>::from_shape(shape_after_options(s));
    std::fill(dw.begin(), dw.end(), 0.0);
    conv_products(shape_of(x), shape_of(dw), s.ints,
                  [&](std::size_t xi, std::size_t wi, std::size_t yi) {
                      dw.data()[wi] += g.data()[yi] * x.data()[xi];
                  });
    return dw;
}

// A convolution's geometry: input and weight shapes and the options
// {stride h, w, padding h, w, dilation h, w, groups}.
struct ConvCase {
    std::string what;
    Shape x, w;
    std::vector<std::ptrdiff_t> opts;
};

// Geometries without padding (every product reads the input) and with it. Sizes are chosen so
// that the first, middle and last input elements are each read by some window (the NaN test
// poisons those).
std::vector<ConvCase> unpadded_cases()
{
    return {
        {"batch 2, 3 -> 4 channels, 3x3 on 5x5", {2, 3, 5, 5}, {4, 3, 3, 3}, {1, 1, 0, 0, 1, 1, 1}},
        {"batch 1, stride (2, 1), 3x2 on 7x6", {1, 2, 7, 6}, {3, 2, 3, 2}, {2, 1, 0, 0, 1, 1, 1}},
        {"dilation (2, 1), 3x3 on 7x5", {2, 2, 7, 5}, {2, 2, 3, 3}, {1, 1, 0, 0, 2, 1, 1}},
        {"stride 2 and dilation 2, 3x3 on 9x9", {1, 2, 9, 9}, {2, 2, 3, 3}, {2, 2, 0, 0, 2, 2, 1}},
        {"groups 2, 4 -> 6 channels", {2, 4, 5, 5}, {6, 2, 3, 3}, {1, 1, 0, 0, 1, 1, 2}},
        {"depthwise, groups = C = 3, 2x2 on 4x5", {1, 3, 4, 5}, {3, 1, 2, 2}, {1, 1, 0, 0, 1, 1, 3}},
        {"1x1 kernel, 3 -> 5 channels", {2, 3, 4, 4}, {5, 3, 1, 1}, {1, 1, 0, 0, 1, 1, 1}},
        {"kernel the size of the input", {2, 2, 3, 4}, {3, 2, 3, 4}, {1, 1, 0, 0, 1, 1, 1}},
    };
}
std::vector<ConvCase> padded_cases()
{
    return {
        {"batch 2, padding 1, 3x3 on 5x5", {2, 3, 5, 5}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
        {"batch 1, padding (2, 1), stride 2, 3x3 on 5x6", {1, 3, 5, 6}, {2, 3, 3, 3}, {2, 2, 2, 1, 1, 1, 1}},
        {"padding 2, dilation 2, groups 2 on 6x5", {2, 4, 6, 5}, {4, 2, 3, 3}, {1, 1, 2, 2, 2, 2, 2}},
        {"4x4 kernel on a 3x3 input padded by 1 and (1, 2)", {1, 1, 3, 3}, {2, 1, 4, 4}, {1, 1, 1, 2, 1, 1, 1}},
    };
}
const ConvCase empty_batch{"empty batch N = 0", {0, 3, 5, 5}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}};

template <class Make>
std::vector<Sample> conv_samples(const std::vector<ConvCase>& cases, std::uint64_t seed, Make make_sample)
{
    std::vector<Sample> out;
    for (const auto& c : cases) out.push_back(make_sample(c, seed++));
    return out;
}

Sample conv2d_sample(const ConvCase& c, std::uint64_t seed)
{
    return {c.what, {adtest::randn(c.x, seed), adtest::randn(c.w, seed + 100)}, c.opts};
}
Sample conv2d_bias_sample(const ConvCase& c, std::uint64_t seed)
{
    return {c.what,
            {adtest::randn(c.x, seed), adtest::randn(c.w, seed + 100), adtest::randn({c.w[0]}, seed + 200)},
            c.opts};
}
Sample input_grad_sample(const ConvCase& c, std::uint64_t seed)
{
    Sample s{c.what, {adtest::randn(conv_out_shape(c.x, c.w, c.opts), seed), adtest::randn(c.w, seed + 100)}, c.opts};
    s.ints.insert(s.ints.end(), c.x.begin(), c.x.end());
    return s;
}
Sample weight_grad_sample(const ConvCase& c, std::uint64_t seed)
{
    Sample s{c.what, {adtest::randn(c.x, seed), adtest::randn(conv_out_shape(c.x, c.w, c.opts), seed + 100)}, c.opts};
    s.ints.insert(s.ints.end(), c.w.begin(), c.w.end());
    return s;
}

std::vector<ConvCase> concat(std::vector<ConvCase> a, const std::vector<ConvCase>& b)
{
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Shapes and options conv2d (and its adjoints, through the same check) must refuse: {x, w}.
std::vector<Sample> conv2d_refused()
{
    const std::vector<std::ptrdiff_t> plain{1, 1, 0, 0, 1, 1, 1};
    auto two = [](std::string what, Shape x, Shape w, std::vector<std::ptrdiff_t> o) {
        return Sample{std::move(what), {adtest::randn(x, 1), adtest::randn(w, 2)}, std::move(o)};
    };
    return {
        two("input of rank 3", {3, 5, 5}, {4, 3, 3, 3}, plain),
        two("weight of rank 3", {1, 3, 5, 5}, {4, 3, 3}, plain),
        two("channel mismatch: 3 input channels, weight takes 2", {1, 3, 5, 5}, {4, 2, 3, 3}, plain),
        two("groups 2 do not divide 3 channels", {1, 3, 5, 5}, {4, 1, 3, 3}, {1, 1, 0, 0, 1, 1, 2}),
        two("groups 2 do not divide 3 output channels", {1, 4, 5, 5}, {3, 2, 3, 3}, {1, 1, 0, 0, 1, 1, 2}),
        two("kernel 4x4 larger than the input 3x5", {1, 2, 3, 5}, {2, 2, 4, 4}, plain),
        two("dilated kernel (3 taps, dilation 3) larger than the padded input 4 + 2", {1, 2, 4, 9}, {2, 2, 3, 3},
            {1, 1, 1, 0, 3, 1, 1}),
        two("stride 0", {1, 2, 5, 5}, {2, 2, 3, 3}, {0, 1, 0, 0, 1, 1, 1}),
        two("dilation 0", {1, 2, 5, 5}, {2, 2, 3, 3}, {1, 1, 0, 0, 1, 0, 1}),
        two("groups 0", {1, 2, 5, 5}, {2, 2, 3, 3}, {1, 1, 0, 0, 1, 1, 0}),
        two("stride 65536, past the limit of 65535", {1, 2, 5, 5}, {2, 2, 3, 3}, {65536, 1, 0, 0, 1, 1, 1}),
    };
}

// --- pooling ---

// Sample::ints of a pooling: kernel h, w; stride h, w; padding h, w.
ad::Pool2dOptions pool_options(const Sample& s)
{
    ad::Pool2dOptions o;
    o.kernel = {std::size_t(s.ints[0]), std::size_t(s.ints[1])};
    o.stride = {std::size_t(s.ints[2]), std::size_t(s.ints[3])};
    o.padding = {std::size_t(s.ints[4]), std::size_t(s.ints[5])};
    return o;
}

// Calls reduce(n, c, oh, ow, values of the window's in-range elements, number of padded taps).
template <class Reduce>
Tensor<double> pool_reference(const Tensor<double>& x, const Sample& s, Reduce reduce)
{
    const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const std::size_t kh = std::size_t(s.ints[0]), kw = std::size_t(s.ints[1]);
    const std::ptrdiff_t sh = s.ints[2], sw = s.ints[3], ph = s.ints[4], pw = s.ints[5];
    const std::size_t Ho = out_extent(H, kh, sh, ph, 1), Wo = out_extent(W, kw, sw, pw, 1);
    Tensor<double> y = Tensor<double>::from_shape({N, C, Ho, Wo});
    std::vector<double> window;
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t oh = 0; oh < Ho; ++oh)
                for (std::size_t ow = 0; ow < Wo; ++ow) {
                    window.clear();
                    std::size_t padded = 0;
                    for (std::size_t i = 0; i < kh; ++i)
                        for (std::size_t j = 0; j < kw; ++j) {
                            const std::ptrdiff_t ih = std::ptrdiff_t(oh) * sh + std::ptrdiff_t(i) - ph;
                            const std::ptrdiff_t iw = std::ptrdiff_t(ow) * sw + std::ptrdiff_t(j) - pw;
                            if (ih < 0 || iw < 0 || ih >= std::ptrdiff_t(H) || iw >= std::ptrdiff_t(W)) ++padded;
                            else window.push_back(at4(x, n, c, std::size_t(ih), std::size_t(iw)));
                        }
                    at4(y, n, c, oh, ow) = reduce(window, padded, kh * kw);
                }
    return y;
}

// The largest element of the window, NaN if any is NaN; padding counts as -infinity.
double window_max(const std::vector<double>& w, std::size_t, std::size_t)
{
    double m = -inf;
    for (const double v : w) {
        if (std::isnan(v)) return v;
        m = std::max(m, v);
    }
    return m;
}

// The mean over the whole window, padding counted as zeros: divided by kh kw.
double window_mean(const std::vector<double>& w, std::size_t, std::size_t taps)
{
    double sum = 0;
    for (const double v : w) sum += v;
    return sum / double(taps);
}

struct PoolCase {
    std::string what;
    Shape x;
    std::vector<std::ptrdiff_t> opts;  // kernel h, w; stride h, w; padding h, w
};

// Every element is in some window (so the NaN test's poisoned elements reach an output).
std::vector<PoolCase> pool_cases()
{
    return {
        {"2x2 by 2 on 4x6, batch 2", {2, 3, 4, 6}, {2, 2, 2, 2, 0, 0}},
        {"3x3 by 2, padding 1, on 5x5, batch 1", {1, 2, 5, 5}, {3, 3, 2, 2, 1, 1}},
        {"3x3 by 1 (overlapping) on 5x4", {2, 2, 5, 4}, {3, 3, 1, 1, 0, 0}},
        {"kernel (2, 3), stride (1, 2), padding (1, 0) on 5x7", {1, 3, 5, 7}, {2, 3, 1, 2, 1, 0}},
        {"one window over the whole 3x3 plane", {2, 2, 3, 3}, {3, 3, 3, 3, 0, 0}},
        {"1x1 window by 1", {1, 2, 3, 2}, {1, 1, 1, 1, 0, 0}},
    };
}

std::vector<Sample> pool_refused()
{
    auto one = [](std::string what, Shape x, std::vector<std::ptrdiff_t> o) {
        return Sample{std::move(what), {adtest::randn(x, 3)}, std::move(o)};
    };
    return {
        one("input of rank 3", {2, 4, 4}, {2, 2, 2, 2, 0, 0}),
        one("kernel 4x4 larger than the input 3x5", {1, 2, 3, 5}, {4, 4, 1, 1, 0, 0}),
        one("kernel 5 larger than the padded width 2 + 2 x 1", {1, 2, 6, 2}, {3, 5, 1, 1, 1, 1}),
        one("padding 2 more than half the kernel 3", {1, 2, 6, 6}, {3, 3, 1, 1, 2, 2}),
        one("kernel 0", {1, 2, 4, 4}, {0, 2, 1, 1, 0, 0}),
        one("stride 0", {1, 2, 4, 4}, {2, 2, 1, 0, 0, 0}),
        one("stride 65536, past the limit of 65535", {1, 2, 4, 4}, {2, 2, 65536, 1, 0, 0}),
    };
}

// --- batch norm ---

// Per channel over n (and h, w): the mean and the biased (1 / m) variance, then
// y = (x - mean) / sqrt(var + eps) gamma + beta. eps in Sample::reals[0].
Tensor<double> batch_norm_reference(const std::vector<Tensor<double>>& in, const Sample& s)
{
    const Tensor<double>& x = in[0];
    const Tensor<double>& gamma = in[1];
    const Tensor<double>& beta = in[2];
    const std::size_t N = x.shape()[0], C = x.shape()[1], P = x.size() / std::max<std::size_t>(N * C, 1);
    const double eps = s.reals[0];
    Tensor<double> y = Tensor<double>::from_shape(shape_of(x));
    for (std::size_t c = 0; c < C; ++c) {
        double sum = 0, sq = 0;
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p) sum += x.data()[(n * C + c) * P + p];
        const double mean = sum / double(N * P);
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p) {
                const double d = x.data()[(n * C + c) * P + p] - mean;
                sq += d * d;
            }
        const double var = sq / double(N * P);
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p) {
                const std::size_t k = (n * C + c) * P + p;
                y.data()[k] = (x.data()[k] - mean) / std::sqrt(var + eps) * gamma.data()[c] + beta.data()[c];
            }
    }
    return y;
}

Sample batch_norm_sample(std::string what, const Shape& x, double eps, std::uint64_t seed, bool smooth = true)
{
    const std::size_t C = x[1];
    return {std::move(what),
            {adtest::randn(x, seed, 1.5), adtest::uniform({C}, 0.5, 2, seed + 1), adtest::randn({C}, seed + 2)},
            {},
            {eps},
            smooth};
}

// y[n, c, ...] = x[n, c, ...] scale[c] + shift[c].
Tensor<double> channel_affine_reference(const std::vector<Tensor<double>>& in, const Sample&)
{
    const Tensor<double>& x = in[0];
    const std::size_t N = x.shape()[0], C = x.shape()[1], P = x.size() / std::max<std::size_t>(N * C, 1);
    Tensor<double> y = Tensor<double>::from_shape(shape_of(x));
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t p = 0; p < P; ++p) {
                const std::size_t k = (n * C + c) * P + p;
                y.data()[k] = x.data()[k] * in[1].data()[c] + in[2].data()[c];
            }
    return y;
}

// --- matrices ---

// A symmetric positive definite n x n matrix, well conditioned: B B^T + n I, B standard normal.
Tensor<double> spd(std::size_t n, std::uint64_t seed)
{
    const Tensor<double> B = adtest::randn({n, n}, seed);
    Tensor<double> A = Tensor<double>::from_shape({n, n});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = i == j ? double(n) : 0.0;
            for (std::size_t k = 0; k < n; ++k) s += B.data()[i * n + k] * B.data()[j * n + k];
            A.data()[i * n + j] = s;
        }
    return A;
}

// spd(n) plus an antisymmetric part: not symmetric, with the same symmetric part.
Tensor<double> spd_plus_antisymmetric(std::size_t n, std::uint64_t seed)
{
    Tensor<double> A = spd(n, seed);
    const Tensor<double> K = adtest::randn({n, n}, seed + 1, 0.5);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) A.data()[i * n + j] += K.data()[i * n + j] - K.data()[j * n + i];
    return A;
}

// The lower Cholesky factor of (A + A^T) / 2, Cholesky-Banachiewicz (row by row); zeros above.
// NaN where the symmetric part is not positive definite.
Tensor<double> cholesky_loops(const Tensor<double>& A)
{
    const std::size_t n = A.shape()[0];
    Tensor<double> L = Tensor<double>::from_shape({n, n});
    std::fill(L.begin(), L.end(), 0.0);
    auto S = [&](std::size_t i, std::size_t j) { return 0.5 * (A.data()[i * n + j] + A.data()[j * n + i]); };
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j <= i; ++j) {
            double s = S(i, j);
            for (std::size_t k = 0; k < j; ++k) s -= L.data()[i * n + k] * L.data()[j * n + k];
            L.data()[i * n + j] = i == j ? std::sqrt(s) : s / L.data()[j * n + j];
        }
    return L;
}

// An n x n matrix whose lower triangle is well conditioned: diagonal entries of magnitude in
// [1.5, 2.5] (signs alternating if `signs`), small entries below. Above the diagonal: zeros, or
// random values if `junk_above` (the op must not read them).
Tensor<double> lower_triangular(std::size_t n, std::uint64_t seed, bool signs, bool junk_above)
{
    Tensor<double> L = adtest::randn({n, n}, seed, 0.4);
    const Tensor<double> d = adtest::uniform({n}, 1.5, 2.5, seed + 1);
    for (std::size_t i = 0; i < n; ++i) {
        L.data()[i * n + i] = signs && i % 2 == 1 ? -d.data()[i] : d.data()[i];
        if (!junk_above)
            for (std::size_t j = i + 1; j < n; ++j) L.data()[i * n + j] = 0;
    }
    return L;
}

// X with L X = B (forward substitution) or L^T X = B (back substitution), reading L's lower
// triangle only; B [n] or [n, k]. Sample::ints[0] is the transpose flag.
Tensor<double> solve_reference(const std::vector<Tensor<double>>& in, const Sample& s)
{
    const Tensor<double>& L = in[0];
    const Tensor<double>& B = in[1];
    const bool transpose = s.ints[0] != 0;
    const std::size_t n = L.shape()[0], k = B.dimension() == 1 ? 1 : B.shape()[1];
    Tensor<double> X = Tensor<double>::from_shape(shape_of(B));
    auto l = [&](std::size_t i, std::size_t j) { return L.data()[i * n + j]; };
    for (std::size_t c = 0; c < k; ++c) {
        auto x = [&](std::size_t i) -> double& { return X.data()[i * k + c]; };
        if (!transpose) {
            for (std::size_t i = 0; i < n; ++i) {
                double r = B.data()[i * k + c];
                for (std::size_t j = 0; j < i; ++j) r -= l(i, j) * x(j);
                x(i) = r / l(i, i);
            }
        } else {
            for (std::size_t i = n; i-- > 0;) {
                double r = B.data()[i * k + c];
                for (std::size_t j = i + 1; j < n; ++j) r -= l(j, i) * x(j);
                x(i) = r / l(i, i);
            }
        }
    }
    return X;
}

// --- the entries ---

void add_conv_entries(std::vector<Entry>& table)
{
    {
        auto e = make("conv2d", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::conv2d(x[0], x[1], conv_options(s)); });
        e.reference = conv_reference;
        e.samples = [] {
            auto s = conv_samples(unpadded_cases(), 1000, conv2d_sample);
            s.push_back(conv2d_sample(empty_batch, 1050));
            return s;
        };
        e.refused = conv2d_refused;
        table.push_back(e);
    }
    {
        // With padding, a NaN weight also reaches the outputs where its tap lies on the padding:
        // the op multiplies the padding's zeros like any input (0 x NaN = NaN), as PyTorch's
        // im2col convolution does, though those outputs do not depend on the weight. So only the
        // input takes a NaN here; "conv2d" poisons the weight on unpadded samples.
        auto e = make("conv2d padded", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::conv2d(x[0], x[1], conv_options(s)); });
        e.error_name = "conv2d";
        e.reference = conv_reference;
        e.samples = [] { return conv_samples(padded_cases(), 1100, conv2d_sample); };
        e.nan_inputs = {0};
        table.push_back(e);
    }
    {
        auto e = make("conv2d with bias", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::conv2d(x[0], x[1], x[2], conv_options(s)); });
        e.error_name = "conv2d";
        e.reference = conv_reference;
        e.samples = [] {
            auto s = conv_samples(concat(unpadded_cases(), padded_cases()), 1200, conv2d_bias_sample);
            s.push_back(conv2d_bias_sample(empty_batch, 1250));
            return s;
        };
        e.refused = [] {
            auto r = conv2d_refused();
            for (auto& s : r) {  // a bias of the weight's output channels
                const std::size_t F = s.inputs[1].dimension() ? s.inputs[1].shape()[0] : 1;
                s.inputs.push_back(adtest::randn({F}, 4));
            }
            Sample bad_bias = conv2d_bias_sample(
                {"bias [3] for 4 output channels", {1, 3, 5, 5}, {4, 3, 3, 3}, {1, 1, 0, 0, 1, 1, 1}}, 5);
            bad_bias.inputs[2] = adtest::randn({3}, 6);
            r.push_back(bad_bias);
            Sample bias_rank2 = bad_bias;
            bias_rank2.what = "bias [4, 1]";
            bias_rank2.inputs[2] = adtest::randn({4, 1}, 7);
            r.push_back(bias_rank2);
            return r;
        };
        // The weight's NaN is excluded for the reason given at "conv2d padded".
        e.nan_inputs = {0, 2};
        table.push_back(e);
    }
    {
        auto e = make("conv2d_input_grad", Kind::other, [](const auto& x, const Sample& s) {
            return ad::conv2d_input_grad(x[0], x[1], shape_after_options(s), conv_options(s));
        });
        e.reference = conv_input_grad_reference;
        e.samples = [] {
            auto s = conv_samples(concat(unpadded_cases(), padded_cases()), 1300, input_grad_sample);
            s.push_back(input_grad_sample(empty_batch, 1350));
            return s;
        };
        e.refused = [] {
            const std::vector<std::ptrdiff_t> plain{1, 1, 0, 0, 1, 1, 1};
            auto two = [&](std::string what, Shape g, Shape w, Shape x, std::vector<std::ptrdiff_t> o) {
                Sample s{std::move(what), {adtest::randn(g, 1), adtest::randn(w, 2)}, std::move(o)};
                s.ints.insert(s.ints.end(), x.begin(), x.end());
                return s;
            };
            return std::vector<Sample>{
                two("cotangent [1, 4, 2, 3] for an output [1, 4, 3, 3]", {1, 4, 2, 3}, {4, 3, 3, 3}, {1, 3, 5, 5},
                    plain),
                two("cotangent of rank 3", {4, 3, 3}, {4, 3, 3, 3}, {1, 3, 5, 5}, plain),
                two("channel mismatch: input shape with 2 channels, weight takes 3", {1, 4, 3, 3}, {4, 3, 3, 3},
                    {1, 2, 5, 5}, plain),
                two("kernel 4x4 larger than the input 3x3", {1, 2, 1, 1}, {2, 2, 4, 4}, {1, 2, 3, 3}, plain),
                two("groups 2 do not divide 3 channels", {1, 4, 3, 3}, {4, 1, 3, 3}, {1, 3, 5, 5},
                    {1, 1, 0, 0, 1, 1, 2}),
            };
        };
        table.push_back(e);
    }
    auto weight_grad = [](std::string name, std::vector<ConvCase> cases, std::uint64_t seed) {
        auto e = make(std::move(name), Kind::other, [](const auto& x, const Sample& s) {
            return ad::conv2d_weight_grad(x[0], x[1], shape_after_options(s), conv_options(s));
        });
        e.error_name = "conv2d_weight_grad";
        e.reference = conv_weight_grad_reference;
        e.samples = [cases, seed] {
            auto s = conv_samples(cases, seed, weight_grad_sample);
            s.push_back(weight_grad_sample(empty_batch, seed + 50));
            return s;
        };
        return e;
    };
    {
        auto e = weight_grad("conv2d_weight_grad", unpadded_cases(), 1400);
        e.refused = [] {
            const std::vector<std::ptrdiff_t> plain{1, 1, 0, 0, 1, 1, 1};
            auto two = [&](std::string what, Shape x, Shape g, Shape w, std::vector<std::ptrdiff_t> o) {
                Sample s{std::move(what), {adtest::randn(x, 1), adtest::randn(g, 2)}, std::move(o)};
                s.ints.insert(s.ints.end(), w.begin(), w.end());
                return s;
            };
            return std::vector<Sample>{
                two("cotangent [1, 3, 3, 3] for an output [1, 4, 3, 3]", {1, 3, 5, 5}, {1, 3, 3, 3}, {4, 3, 3, 3},
                    plain),
                two("cotangent batch 2 for an input batch 1", {1, 3, 5, 5}, {2, 4, 3, 3}, {4, 3, 3, 3}, plain),
                two("channel mismatch: input 3 channels, weight shape takes 2", {1, 3, 5, 5}, {1, 4, 3, 3},
                    {4, 2, 3, 3}, plain),
                two("kernel 6x6 larger than the input 5x5", {1, 3, 5, 5}, {1, 4, 1, 1}, {4, 3, 6, 6}, plain),
                two("input of rank 3", {3, 5, 5}, {1, 4, 3, 3}, {4, 3, 3, 3}, plain),
            };
        };
        table.push_back(e);
    }
    {
        // With padding, a NaN in the cotangent reaches every weight tap through the padding's
        // zeros (0 x NaN in the GEMM against the unfolded input, as in PyTorch's im2col path),
        // including taps that do not depend on it; only the input takes a NaN here.
        auto e = weight_grad("conv2d_weight_grad padded", padded_cases(), 1500);
        e.nan_inputs = {0};
        table.push_back(e);
    }
}

void add_pool_entries(std::vector<Entry>& table)
{
    {
        auto e = make("max_pool2d", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::max_pool2d(x[0], pool_options(s)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return pool_reference(in[0], s, window_max);
        };
        e.samples = [] {
            std::vector<Sample> out;
            std::uint64_t seed = 2000;
            // Distinct values: no ties in a window, so the maximum is differentiable.
            for (const auto& c : pool_cases()) out.push_back({c.what, {spread(c.x, -2.5, 2.5, seed++)}, c.opts});
            out.push_back({"empty batch N = 0", {Tensor<double>::from_shape({0, 2, 4, 4})}, {2, 2, 2, 2, 0, 0}});
            // Edges, values only: the last row and column left out by the stride, ties, NaN and
            // infinities (a NaN in a window is its maximum, as in PyTorch).
            out.push_back({"last row and column not covered: 2x2 by 2 on 5x5", {spread({1, 2, 5, 5}, -2.5, 2.5, 2050)},
                           {2, 2, 2, 2, 0, 0}, {}, false});
            out.push_back({"ties in every window",
                           {tensor({1, 1, 2, 4}, {1, 1, 0, 0, -2, -2, 3, 3})},
                           {2, 2, 2, 2, 0, 0},
                           {},
                           false});
            out.push_back({"NaN and infinities",
                           {tensor({1, 1, 4, 4}, {nan, 1, -inf, -inf, 2, 3, -inf, -inf, inf, 0, 5, nan, -1, -2, 6, 7})},
                           {2, 2, 2, 2, 0, 0}, {}, false});
            out.push_back({"NaN and infinities, 3x3 by 1 padded",
                           {tensor({1, 1, 3, 3}, {-inf, -inf, -inf, -inf, -inf, nan, 1, inf, -inf})},
                           {3, 3, 1, 1, 1, 1}, {}, false});
            return out;
        };
        e.refused = pool_refused;
        table.push_back(e);
    }
    {
        auto e = make("avg_pool2d", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::avg_pool2d(x[0], pool_options(s)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return pool_reference(in[0], s, window_mean);
        };
        e.samples = [] {
            std::vector<Sample> out;
            std::uint64_t seed = 2100;
            for (const auto& c : pool_cases()) out.push_back({c.what, {adtest::randn(c.x, seed++)}, c.opts});
            out.push_back({"empty batch N = 0", {Tensor<double>::from_shape({0, 2, 5, 5})}, {3, 3, 2, 2, 1, 1}});
            out.push_back({"last row and column not covered: 2x2 by 2 on 5x5", {adtest::randn({1, 2, 5, 5}, 2150)},
                           {2, 2, 2, 2, 0, 0}, {}, false});
            out.push_back({"NaN and infinities",
                           {tensor({1, 1, 4, 4}, {nan, 1, inf, -inf, 2, 3, 1e300, 1e300, inf, 0, 5, 1, -1, -2, 6, 7})},
                           {2, 2, 2, 2, 0, 0}, {}, false});
            return out;
        };
        e.refused = pool_refused;
        table.push_back(e);
    }
    {
        auto e = make("global_avg_pool2d", Kind::other,
                      [](const auto& x, const Sample&) { return ad::global_avg_pool2d(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const Tensor<double>& x = in[0];
            const std::size_t N = x.shape()[0], C = x.shape()[1], P = x.shape()[2] * x.shape()[3];
            Tensor<double> y = Tensor<double>::from_shape({N, C});
            for (std::size_t i = 0; i < N * C; ++i) {
                double s = 0;
                for (std::size_t p = 0; p < P; ++p) s += x.data()[i * P + p];
                y.data()[i] = s / double(P);
            }
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"batch 2, 3 channels, 4x5", {adtest::randn({2, 3, 4, 5}, 2200)}},
                {"batch 1, 2 channels, 3x3", {adtest::randn({1, 2, 3, 3}, 2201)}},
                {"1x1 planes", {adtest::randn({3, 2, 1, 1}, 2202)}},
                {"empty batch N = 0", {Tensor<double>::from_shape({0, 3, 2, 2})}},
                {"no channels", {Tensor<double>::from_shape({2, 0, 2, 2})}},
                {"NaN and infinities", {tensor({1, 3, 1, 2}, {nan, 1, inf, 1e300, inf, -inf})}, {}, {}, false},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"input of rank 3", {adtest::randn({2, 3, 4}, 1)}},
                {"input of rank 2", {adtest::randn({2, 3}, 2)}},
                {"empty plane 0x4", {Tensor<double>::from_shape({2, 3, 0, 4})}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("flatten", Kind::other, [](const auto& x, const Sample&) { return ad::flatten(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const Tensor<double>& x = in[0];
            const std::size_t N = x.shape()[0];
            std::size_t rest = 1;
            for (std::size_t d = 1; d < x.dimension(); ++d) rest *= x.shape()[d];
            Tensor<double> y = Tensor<double>::from_shape({N, rest});
            for (std::size_t i = 0; i < x.size(); ++i) y.data()[i] = x.data()[i];
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[2, 3, 4, 5]", {adtest::randn({2, 3, 4, 5}, 2300)}},
                {"[2, 3, 4]", {adtest::randn({2, 3, 4}, 2301)}},
                {"[3, 4] (already flat)", {adtest::randn({3, 4}, 2302)}},
                {"[5] (a batch of scalars)", {adtest::randn({5}, 2303)}},
                {"empty batch [0, 3, 2]", {Tensor<double>::from_shape({0, 3, 2})}},
                {"empty features [2, 0, 3]", {Tensor<double>::from_shape({2, 0, 3})}},
            };
        };
        e.refused = [] { return std::vector<Sample>{{"a scalar", {Tensor<double>(2.5)}}}; };
        table.push_back(e);
    }
}

void add_batch_norm_entry(std::vector<Entry>& table)
{
    auto e = make("batch_norm2d", Kind::other, [](const auto& x, const Sample& s) {
        using T = ElementOf<decltype(x)>;
        return ad::batch_norm2d(x[0], x[1], x[2], T(s.reals[0]));
    });
    e.reference = batch_norm_reference;
    e.samples = [] {
        std::vector<Sample> out{
            batch_norm_sample("[2, 3, 4, 5], eps 1e-5", {2, 3, 4, 5}, 1e-5, 2400),
            batch_norm_sample("batch 1, [1, 2, 3, 3], eps 1e-5", {1, 2, 3, 3}, 1e-5, 2410),
            batch_norm_sample("odd sizes [3, 2, 3, 1], eps 0.1", {3, 2, 3, 1}, 0.1, 2420),
            batch_norm_sample("[N, C] = [6, 3], eps 1e-5", {6, 3}, 1e-5, 2430),
            batch_norm_sample("no channels [2, 0, 3, 3]", {2, 0, 3, 3}, 1e-5, 2440),
        };
        // Edges, values only: a constant channel (variance 0, so y = beta), eps = 0.
        Sample constant = batch_norm_sample("a constant channel", {2, 2, 2, 2}, 1e-5, 2450, false);
        for (std::size_t n = 0; n < 2; ++n)
            for (std::size_t p = 0; p < 4; ++p) constant.inputs[0].data()[(n * 2 + 1) * 4 + p] = 0.75;
        out.push_back(constant);
        out.push_back(batch_norm_sample("eps = 0", {2, 3, 2, 2}, 0.0, 2460, false));
        return out;
    };
    e.refused = [] {
        auto bn = [](std::string what, Shape x, Shape gamma, Shape beta) {
            return Sample{
                std::move(what), {adtest::randn(x, 1), adtest::randn(gamma, 2), adtest::randn(beta, 3)}, {}, {1e-5}};
        };
        return std::vector<Sample>{
            bn("gamma [4] for 3 channels", {2, 3, 4, 4}, {4}, {3}),
            bn("beta [2] for 3 channels", {2, 3, 4, 4}, {3}, {2}),
            bn("gamma [3, 1]", {2, 3, 4, 4}, {3, 1}, {3}),
            bn("input of rank 3", {2, 3, 4}, {3}, {3}),
            bn("input of rank 1", {3}, {3}, {3}),
            bn("empty batch: no values for the statistics", {0, 3, 2, 2}, {3}, {3}),
            bn("empty planes: no values for the statistics", {2, 3, 0, 2}, {3}, {3}),
            bn("one value per channel: no variance", {1, 3, 1, 1}, {3}, {3}),
            bn("[N, C] with N = 1", {1, 3}, {3}, {3}),
        };
    };
    table.push_back(e);
}

void add_channel_affine_entry(std::vector<Entry>& table)
{
    auto e = make("channel_affine", Kind::other,
                  [](const auto& x, const Sample&) { return ad::channel_affine(x[0], x[1], x[2]); });
    e.reference = channel_affine_reference;
    e.samples = [] {
        auto three = [](std::string what, Shape x, std::uint64_t seed) {
            const std::size_t C = x[1];
            return Sample{std::move(what),
                          {adtest::randn(x, seed), adtest::randn({C}, seed + 1), adtest::randn({C}, seed + 2)}};
        };
        return std::vector<Sample>{
            three("[2, 3, 4, 5]", {2, 3, 4, 5}, 2500),
            three("[N, C] = [5, 3]", {5, 3}, 2510),
            three("odd sizes [3, 2, 3, 1]", {3, 2, 3, 1}, 2520),
            three("one of each [1, 1, 1, 1]", {1, 1, 1, 1}, 2530),
            three("empty batch [0, 3, 2, 2]", {0, 3, 2, 2}, 2540),
            three("no channels [2, 0, 3, 3]", {2, 0, 3, 3}, 2550),
            three("empty planes [2, 3, 0, 2]", {2, 3, 0, 2}, 2560),
            three("empty batch [0, 4]", {0, 4}, 2570),
        };
    };
    e.refused = [] {
        auto three = [](std::string what, Shape x, Shape scale, Shape shift) {
            return Sample{std::move(what), {adtest::randn(x, 1), adtest::randn(scale, 2), adtest::randn(shift, 3)}};
        };
        return std::vector<Sample>{
            three("scale [4] for 3 channels", {2, 3, 4, 4}, {4}, {3}),
            three("shift [2] for 3 channels", {2, 3, 4, 4}, {3}, {2}),
            three("scale [1, 3, 1, 1], shaped to broadcast", {2, 3, 4, 4}, {1, 3, 1, 1}, {3}),
            three("shift a scalar", {4, 3}, {3}, {}),
            three("input of rank 3", {2, 3, 4}, {3}, {3}),
            three("input of rank 1", {3}, {3}, {3}),
            three("input of rank 5", {2, 3, 2, 2, 2}, {3}, {3}),
        };
    };
    table.push_back(e);
}

void add_decomposition_entries(std::vector<Entry>& table)
{
    auto spd_samples = [](std::uint64_t seed) {
        return std::vector<Sample>{
            {"SPD 3x3", {spd(3, seed)}},
            {"SPD 5x5", {spd(5, seed + 1)}},
            {"SPD 1x1", {spd(1, seed + 2)}},
            {"4x4 not symmetric, symmetric part SPD", {spd_plus_antisymmetric(4, seed + 3)}},
            {"empty 0x0", {Tensor<double>::from_shape({0, 0})}},
            // Values only: a diagonal matrix spanning the range of double.
            {"diagonal 1e-300, 1, 1e300", {tensor({3, 3}, {1e-300, 0, 0, 0, 1, 0, 0, 0, 1e300})}, {}, {}, false},
        };
    };
    auto square_refused = [] {
        return std::vector<Sample>{
            {"[2, 3] not square", {adtest::randn({2, 3}, 1)}},
            {"[3] a vector", {adtest::randn({3}, 2)}},
            {"[2, 2, 2] rank 3", {adtest::randn({2, 2, 2}, 3)}},
            {"[2, 2] indefinite", {tensor({2, 2}, {1, 2, 2, 1})}},
            {"[3, 3] negative diagonal", {tensor({3, 3}, {4, 0, 0, 0, -1, 0, 0, 0, 4})}},
        };
    };
    {
        auto e = make("cholesky", Kind::other, [](const auto& x, const Sample&) { return ad::cholesky(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) { return cholesky_loops(in[0]); };
        e.samples = [spd_samples] { return spd_samples(3000); };
        e.refused = square_refused;
        e.refuses_nan = true;  // not positive definite: an error (PyTorch 1.13 returns NaN)
        table.push_back(e);
    }
    {
        auto e = make("logdet", Kind::other, [](const auto& x, const Sample&) { return ad::logdet(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const Tensor<double> L = cholesky_loops(in[0]);
            const std::size_t n = L.shape()[0];
            double s = 0;
            for (std::size_t i = 0; i < n; ++i) s += std::log(L.data()[i * n + i]);
            Tensor<double> y = Tensor<double>::from_shape({});
            y() = 2 * s;
            return y;
        };
        e.samples = [spd_samples] { return spd_samples(3100); };
        e.refused = square_refused;
        e.refuses_nan = true;  // as cholesky
        table.push_back(e);
    }
    {
        auto e = make("solve_triangular", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::solve_triangular(x[0], x[1], ad::Transpose{s.ints[0] != 0, false}); });
        e.reference = solve_reference;
        e.samples = [] {
            std::vector<Sample> out;
            std::uint64_t seed = 3200;
            for (const std::ptrdiff_t tr : {0, 1}) {
                const std::string t = tr ? "L^T X = B, " : "L X = B, ";
                out.push_back({t + "[3, 3] with [3]",
                               {lower_triangular(3, seed, false, false), adtest::randn({3}, seed + 1)}, {tr}});
                out.push_back({t + "[4, 4] with [4, 2], upper triangle not read",
                               {lower_triangular(4, seed + 2, true, true), adtest::randn({4, 2}, seed + 3)}, {tr}});
                out.push_back({t + "[1, 1] with [1, 3]",
                               {lower_triangular(1, seed + 4, true, false), adtest::randn({1, 3}, seed + 5)}, {tr}});
                out.push_back({t + "[5, 5] with [5, 5], upper triangle not read",
                               {lower_triangular(5, seed + 6, true, true), adtest::randn({5, 5}, seed + 7)}, {tr}});
                out.push_back({t + "[3, 3] with [3, 0]",
                               {lower_triangular(3, seed + 8, false, false), Tensor<double>::from_shape({3, 0})},
                               {tr}});
                out.push_back({t + "[0, 0] with [0]",
                               {Tensor<double>::from_shape({0, 0}), Tensor<double>::from_shape({0})}, {tr}});
                // Values only: a tiny diagonal entry and a huge right-hand side.
                out.push_back({t + "tiny diagonal, huge right-hand side",
                               {tensor({2, 2}, {1e-300, 0, 1, 1}), tensor({2}, {1e-10, 1e300})}, {tr}, {}, false});
                seed += 10;
            }
            return out;
        };
        e.refused = [] {
            auto two = [](std::string what, Tensor<double> L, Shape b) {
                return Sample{std::move(what), {std::move(L), adtest::randn(b, 5)}, {0}};
            };
            return std::vector<Sample>{
                two("L [2, 3] not square", adtest::randn({2, 3}, 1), {2}),
                two("L [3] a vector", adtest::randn({3}, 2), {3}),
                two("B [4] for L [3, 3]", lower_triangular(3, 3, false, false), {4}),
                two("B [2, 3] for L [3, 3]", lower_triangular(3, 4, false, false), {2, 3}),
                two("B [3, 2, 2] rank 3", lower_triangular(3, 5, false, false), {3, 2, 2}),
                two("B a scalar", lower_triangular(3, 6, false, false), {}),
                two("singular L: L[1, 1] = 0", tensor({3, 3}, {2, 0, 0, 1, 0, 0, 1, 1, 2}), {3}),
            };
        };
        table.push_back(e);
    }
}

void add_checkpoint_entry(std::vector<Entry>& table)
{
    // The block tanh(x W), recorded as one op whose VJP runs it again.
    auto e = make("checkpoint", Kind::other, [](const auto& x, const Sample&) {
        using T = ElementOf<decltype(x)>;
        return ad::checkpoint<T>([](const std::vector<Var<T>>& in) { return ad::tanh(ad::matmul(in[0], in[1])); }, x);
    });
    e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
        const Tensor<double>& x = in[0];
        const Tensor<double>& W = in[1];
        const std::size_t n = x.shape()[0], k = x.shape()[1], m = W.shape()[1];
        Tensor<double> y = Tensor<double>::from_shape({n, m});
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < m; ++j) {
                double s = 0;
                for (std::size_t l = 0; l < k; ++l) s += x.data()[i * k + l] * W.data()[l * m + j];
                y.data()[i * m + j] = std::tanh(s);
            }
        return y;
    };
    e.samples = [] {
        return std::vector<Sample>{
            {"x [2, 3], W [3, 4]", {adtest::randn({2, 3}, 4000, 0.7), adtest::randn({3, 4}, 4001, 0.7)}},
            {"x [1, 5], W [5, 2]", {adtest::randn({1, 5}, 4002, 0.7), adtest::randn({5, 2}, 4003, 0.7)}},
            {"x [4, 1], W [1, 3]", {adtest::randn({4, 1}, 4004), adtest::randn({1, 3}, 4005)}},
            {"empty batch x [0, 3], W [3, 4]", {Tensor<double>::from_shape({0, 3}), adtest::randn({3, 4}, 4006)}},
        };
    };
    // A create_graph sweep through a checkpoint is refused: its VJP is not differentiable.
    e.twice = false;
    table.push_back(e);
}

}  // namespace

void add_conv_decomp_ops(std::vector<Entry>& table)
{
    add_conv_entries(table);
    add_pool_entries(table);
    add_batch_norm_entry(table);
    add_channel_affine_entry(table);
    add_decomposition_entries(table);
    add_checkpoint_entry(table);
}

}  // namespace optable
