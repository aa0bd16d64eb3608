// Convolution, pooling, batch normalisation and channel_affine: values against direct loops
// written from the definitions, gradients against central differences (double precision) over
// strides, paddings, dilations, groups, odd sizes and batch 1, and both against PyTorch
// (tests/fixtures/conv_fixtures.npz, made by tests/fixtures/make_conv_fixtures.py).
#include "gradcheck_helpers.hpp"

#include "nn/npz.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

using namespace adtest;
using ad::Conv2dOptions;
using ad::Pool2dOptions;
using ad::Tape;

namespace {

// y[n, f, oh, ow] = b[f] + sum_{c in group(f), i, j} w[f, c - c0, i, j] x[n, c, oh sh + i dh - ph, ow sw + j dw - pw]
Tensor<double> naive_conv(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b,
                          const Conv2dOptions& o)
{
    const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const std::size_t F = w.shape()[0], Cg = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
    const std::size_t Fg = F / o.groups;
    (void)C;
    const std::size_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
    const std::size_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
    Tensor<double> y = Tensor<double>::from_shape({N, F, Ho, Wo});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t f = 0; f < F; ++f)
            for (std::size_t oh = 0; oh < Ho; ++oh)
                for (std::size_t ow = 0; ow < Wo; ++ow) {
                    double s = b ? (*b)(f) : 0.0;
                    const std::size_t c0 = (f / Fg) * Cg;
                    for (std::size_t c = 0; c < Cg; ++c)
                        for (std::size_t i = 0; i < kh; ++i)
                            for (std::size_t j = 0; j < kw; ++j) {
                                const long ih = long(oh * o.stride[0] + i * o.dilation[0]) - long(o.padding[0]);
                                const long iw = long(ow * o.stride[1] + j * o.dilation[1]) - long(o.padding[1]);
                                if (ih < 0 || iw < 0 || ih >= long(H) || iw >= long(W)) continue;
                                s += w(f, c, i, j) * x(n, c0 + c, std::size_t(ih), std::size_t(iw));
                            }
                    y(n, f, oh, ow) = s;
                }
    return y;
}

// Max or mean over each window of the input padded with -inf (max) or 0 (mean).
Tensor<double> naive_pool(const Tensor<double>& x, const Pool2dOptions& o, bool max)
{
    const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const std::size_t Ho = (H + 2 * o.padding[0] - o.kernel[0]) / o.stride[0] + 1;
    const std::size_t Wo = (W + 2 * o.padding[1] - o.kernel[1]) / o.stride[1] + 1;
    Tensor<double> y = Tensor<double>::from_shape({N, C, Ho, Wo});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t oh = 0; oh < Ho; ++oh)
                for (std::size_t ow = 0; ow < Wo; ++ow) {
                    double m = -std::numeric_limits<double>::infinity(), s = 0;
                    for (std::size_t i = 0; i < o.kernel[0]; ++i)
                        for (std::size_t j = 0; j < o.kernel[1]; ++j) {
                            const long ih = long(oh * o.stride[0] + i) - long(o.padding[0]);
                            const long iw = long(ow * o.stride[1] + j) - long(o.padding[1]);
                            if (ih < 0 || iw < 0 || ih >= long(H) || iw >= long(W)) continue;
                            const double v = x(n, c, std::size_t(ih), std::size_t(iw));
                            m = std::max(m, v);
                            s += v;
                        }
                    y(n, c, oh, ow) = max ? m : s / double(o.kernel[0] * o.kernel[1]);
                }
    return y;
}

void check_close(const Tensor<double>& got, const Tensor<double>& want, double tol = 1e-12)
{
    REQUIRE(got.shape() == want.shape());
    double worst = 0;
    std::size_t at = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double e = std::abs(got.flat(i) - want.flat(i)) / (1 + std::abs(want.flat(i)));
        if (e > worst) worst = e, at = i;
    }
    INFO("largest error " << worst << " at flat index " << at);
    CHECK(worst <= tol);
}

struct ConvCase {
    Shape x, w;
    Conv2dOptions o;
    std::string what;
};

Conv2dOptions opts(std::size_t sh, std::size_t sw, std::size_t ph, std::size_t pw, std::size_t dh = 1,
                   std::size_t dw = 1, std::size_t groups = 1)
{
    Conv2dOptions o;
    o.stride = {sh, sw};
    o.padding = {ph, pw};
    o.dilation = {dh, dw};
    o.groups = groups;
    return o;
}

const std::vector<ConvCase>& conv_cases()
{
    static const std::vector<ConvCase> c{
        {{2, 3, 5, 6}, {4, 3, 3, 3}, opts(1, 1, 0, 0), "3x3, no padding"},
        {{1, 2, 7, 5}, {3, 2, 3, 2}, opts(2, 1, 1, 1), "batch 1, stride (2, 1), padding 1, odd sizes"},
        {{2, 2, 6, 7}, {2, 2, 2, 3}, opts(3, 2, 2, 0), "stride 3, padding (2, 0)"},
        {{1, 3, 8, 7}, {2, 3, 3, 3}, opts(1, 2, 2, 1, 2, 3), "dilation (2, 3)"},
        {{2, 4, 5, 5}, {6, 2, 3, 3}, opts(1, 1, 1, 1, 1, 1, 2), "groups 2"},
        {{2, 3, 5, 4}, {3, 1, 3, 3}, opts(2, 1, 1, 1, 1, 1, 3), "depthwise (groups = C = 3)"},
        {{1, 2, 5, 5}, {6, 1, 3, 3}, opts(1, 1, 1, 1, 1, 1, 2), "depthwise with multiplier 3"},
        {{1, 1, 4, 4}, {2, 1, 4, 4}, opts(1, 1, 0, 0), "kernel as large as the input"},
        {{2, 3, 4, 4}, {5, 3, 1, 1}, opts(1, 1, 0, 0), "1x1"},
        {{1, 1, 1, 1}, {2, 1, 3, 3}, opts(1, 1, 1, 1), "one pixel, padded"},
    };
    return c;
}

}  // namespace

TEST_CASE("conv2d equals the direct sum over the kernel, with and without bias", "[ops][conv]")
{
    const auto& c = GENERATE(from_range(conv_cases()));
    CAPTURE(c.what);
    const Tensor<double> x = randn(c.x, 1), w = randn(c.w, 2), b = randn({c.w[0]}, 3);
    Tape<double> tape;
    check_close(ad::conv2d(tape.constant(x), tape.constant(w), c.o).value(), naive_conv(x, w, nullptr, c.o));
    check_close(ad::conv2d(tape.constant(x), tape.constant(w), tape.constant(b), c.o).value(),
                naive_conv(x, w, &b, c.o));
    Tape<float> ftape;
    const Tensor<float> xf = xt::cast<float>(x), wf = xt::cast<float>(w);
    const Tensor<double> yf = xt::cast<double>(ad::conv2d(ftape.constant(xf), ftape.constant(wf), c.o).value());
    check_close(yf, naive_conv(x, w, nullptr, c.o), 1e-5);
}

TEST_CASE("conv2d gradients agree with central differences", "[ops][conv][gradcheck]")
{
    const auto& c = GENERATE(from_range(conv_cases()));
    CAPTURE(c.what);
    const Conv2dOptions o = c.o;
    const Tensor<double> x = randn(c.x, 4), w = randn(c.w, 5), b = randn({c.w[0]}, 6);
    require_gradcheck([o](const Vars& v) { return ad::conv2d(v[0], v[1], o); }, {x, w});
    require_gradcheck([o](const Vars& v) { return ad::conv2d(v[0], v[1], v[2], o); }, {x, w, b});
}

TEST_CASE("conv2d's adjoint ops give its gradients and have gradients of their own", "[ops][conv][gradcheck]")
{
    const auto& c = GENERATE(from_range(conv_cases()));
    CAPTURE(c.what);
    const Conv2dOptions o = c.o;
    const Tensor<double> x = randn(c.x, 7), w = randn(c.w, 8);
    Tape<double> tape;
    const auto xv = tape.variable(x), wv = tape.variable(w);
    const auto y = ad::conv2d(xv, wv, o);
    const Tensor<double> gy = randn(Shape(y.shape().begin(), y.shape().end()), 9);
    const auto grads = ad::vjp(y, gy, {xv, wv});
    const Shape xs = c.x, ws = c.w;
    check_close(ad::conv2d_input_grad(tape.constant(gy), tape.constant(w), xs, o).value(), grads[0]);
    check_close(ad::conv2d_weight_grad(tape.constant(x), tape.constant(gy), ws, o).value(), grads[1]);
    require_gradcheck([o, xs](const Vars& v) { return ad::conv2d_input_grad(v[0], v[1], xs, o); }, {gy, w});
    require_gradcheck([o, ws](const Vars& v) { return ad::conv2d_weight_grad(v[0], v[1], ws, o); }, {x, gy});
}

TEST_CASE("conv2d's gradient is differentiable: second derivatives agree with central differences",
          "[ops][conv][higher]")
{
    // The graph VJPs of conv2d, conv2d_input_grad and conv2d_weight_grad are written with each
    // other, so the set is closed under differentiation: checked here at second order.
    const auto& c = GENERATE(from_range(conv_cases()));
    CAPTURE(c.what);
    const Conv2dOptions o = c.o;
    const Shape xs = c.x, ws = c.w;
    const Tensor<double> x = randn(c.x, 31), w = randn(c.w, 32), b = randn({c.w[0]}, 33);
    auto check = [](const ad::MultiFn<double>& f, const std::vector<Tensor<double>>& in) {
        const auto res = ad::gradgradcheck<double>(f, in);
        INFO(res.report());
        CHECK(res.ok);
        CHECK(res.checked > 0);
    };
    check([o](const Vars& v) { return ad::conv2d(v[0], v[1], v[2], o); }, {x, w, b});
    Tape<double> tape;
    const auto y = ad::conv2d(tape.constant(x), tape.constant(w), o);
    const Tensor<double> gy = randn(Shape(y.shape().begin(), y.shape().end()), 34);
    check([o, xs](const Vars& v) { return ad::conv2d_input_grad(v[0], v[1], xs, o); }, {gy, w});
    check([o, ws](const Vars& v) { return ad::conv2d_weight_grad(v[0], v[1], ws, o); }, {x, gy});
}

TEST_CASE("max_pool2d, avg_pool2d, global_avg_pool2d and flatten have second derivatives too", "[ops][conv][higher]")
{
    Pool2dOptions po;
    po.kernel = {3, 2}, po.stride = {2, 1}, po.padding = {1, 1};
    for (const Pool2dOptions& o : {Pool2dOptions(2), po}) {
        const Tensor<double> d = distinct({2, 2, 5, 4}, 36);  // no ties
        for (auto f : {ad::MultiFn<double>([o](const Vars& v) { return ad::square(ad::max_pool2d(v[0], o)); }),
                       ad::MultiFn<double>([o](const Vars& v) { return ad::square(ad::avg_pool2d(v[0], o)); })}) {
            const auto res = ad::gradgradcheck<double>(f, {d});
            INFO(res.report());
            CHECK(res.ok);
        }
    }
    const Tensor<double> x = randn({2, 3, 3, 2}, 35);
    // squared so that the second derivative is not zero
    for (auto f : {ad::MultiFn<double>([](const Vars& v) { return ad::square(ad::global_avg_pool2d(v[0])); }),
                   ad::MultiFn<double>([](const Vars& v) { return ad::square(ad::flatten(v[0])); })}) {
        const auto res = ad::gradgradcheck<double>(f, {x});
        INFO(res.report());
        CHECK(res.ok);
    }
}

TEST_CASE("batch_norm2d has second derivatives: its graph VJP recomputes the statistics from x",
          "[ops][conv][higher]")
{
    const Shape xs = GENERATE(Shape{3, 2, 2, 3}, Shape{4, 3});
    CAPTURE(xs);
    const Tensor<double> x = randn(xs, 37, 1.5) + 0.5, gamma = randn({xs[1]}, 38), beta = randn({xs[1]}, 39);
    const auto res = ad::gradgradcheck<double>(
        [](const Vars& v) { return ad::square(ad::batch_norm2d(v[0], v[1], v[2])); }, {x, gamma, beta});
    INFO(res.report());
    CHECK(res.ok);
    CHECK(res.checked > 0);
}

TEST_CASE("pooling equals the direct max and mean over each window", "[ops][conv]")
{
    struct Case {
        Shape x;
        Pool2dOptions o;
    };
    auto po = [](std::size_t kh, std::size_t kw, std::size_t sh, std::size_t sw, std::size_t ph, std::size_t pw) {
        Pool2dOptions o;
        o.kernel = {kh, kw}, o.stride = {sh, sw}, o.padding = {ph, pw};
        return o;
    };
    const Case c = GENERATE_COPY(Case{{2, 3, 6, 6}, Pool2dOptions(2)}, Case{{1, 2, 7, 5}, po(3, 2, 2, 1, 1, 1)},
                                 Case{{2, 1, 5, 7}, po(3, 3, 1, 2, 1, 0)}, Case{{1, 1, 3, 3}, Pool2dOptions(3)},
                                 Case{{3, 2, 5, 5}, po(2, 2, 3, 3, 1, 1)});
    CAPTURE(c.x, c.o.kernel, c.o.stride, c.o.padding);
    const Pool2dOptions o = c.o;
    const Tensor<double> x = distinct(c.x, 10);  // no ties: the maximum is differentiable
    Tape<double> tape;
    check_close(ad::max_pool2d(tape.constant(x), o).value(), naive_pool(x, o, true));
    check_close(ad::avg_pool2d(tape.constant(x), o).value(), naive_pool(x, o, false));
    require_gradcheck([o](const Vars& v) { return ad::max_pool2d(v[0], o); }, {x});
    require_gradcheck([o](const Vars& v) { return ad::avg_pool2d(v[0], o); }, {x});
}

TEST_CASE("max_pool2d sends the gradient of a tie to the first maximal element", "[ops][conv]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{{{{1.0, 3.0}, {3.0, 2.0}}}});
    const auto g = ad::grad(ad::sum(ad::max_pool2d(x, Pool2dOptions(2))), {x});
    CHECK_THAT(g[0], Equals(Tensor<double>{{{{0.0, 1.0}, {0.0, 0.0}}}}));
}

TEMPLATE_TEST_CASE("max_pool2d's 2x2 windows pick the first maximum, or the first NaN, at every width",
                   "[ops][conv]", float, double)
{
    // Values from {0, 1, 2} (ties in most windows) and some NaNs, on widths 2..40: output rows of
    // 1..20 windows cover the kernel's short rows and its chunked, overlapping long ones.
    using T = TestType;
    const T nan = std::numeric_limits<T>::quiet_NaN();
    for (std::size_t W = 2; W <= 40; W += 2) {
        CAPTURE(W);
        const std::size_t N = 2, C = 3, H = 4;
        Tensor<T> x = Tensor<T>::from_shape({N, C, H, W});
        std::uint32_t state = std::uint32_t(W);
        for (auto& e : x) {
            state = state * 1664525u + 1013904223u;  // a fixed LCG: the same values everywhere
            const std::uint32_t r = (state >> 16) % 23;
            e = r == 0 ? nan : T(r % 3);
        }
        Tape<T> tape;
        const auto xv = tape.variable(x);
        const auto y = ad::max_pool2d(xv, Pool2dOptions(2));
        const Tensor<T> g = ad::grad(ad::sum(y), {xv})[0];
        // Where each window's gradient must go: the first maximum in row-major order, or the first NaN.
        Tensor<T> want_g = xt::zeros<T>(x.shape());
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t oh = 0; oh < H / 2; ++oh)
                    for (std::size_t ow = 0; ow < W / 2; ++ow) {
                        std::size_t bi = 2 * oh, bj = 2 * ow;
                        for (std::size_t k = 1; k < 4; ++k) {
                            const std::size_t i = 2 * oh + k / 2, j = 2 * ow + k % 2;
                            const T v = x(n, c, i, j), best = x(n, c, bi, bj);
                            if (std::isnan(best)) break;
                            if (std::isnan(v) || v > best) bi = i, bj = j;
                        }
                        const T got = y.value()(n, c, oh, ow), want = x(n, c, bi, bj);
                        if (std::isnan(want)) CHECK(std::isnan(got));
                        else CHECK(got == want);
                        want_g(n, c, bi, bj) = T(1);
                    }
        CHECK_THAT(g, Equals(want_g));
    }
}

TEST_CASE("global_avg_pool2d is the mean of each plane and flatten keeps the batch axis", "[ops][conv]")
{
    const Tensor<double> x = randn({2, 3, 4, 5}, 11);
    Tape<double> tape;
    const auto y = ad::global_avg_pool2d(tape.constant(x));
    REQUIRE(y.shape() == std::vector<std::size_t>{2, 3});
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t c = 0; c < 3; ++c) {
            double s = 0;
            for (std::size_t i = 0; i < 4; ++i)
                for (std::size_t j = 0; j < 5; ++j) s += x(n, c, i, j);
            // the kernel's sum of 20 terms against this loop, in another order: the planes cancel to
            // at most 1/12 of their sum |x|, so the two differ by at most 5e-14 relative
            CHECK(y.value()(n, c) == Approx(s / 20).epsilon(1e-13));
        }
    const auto f = ad::flatten(tape.constant(x));
    REQUIRE(f.shape() == std::vector<std::size_t>{2, 60});
    CHECK(f.value()(1, 27) == x(1, 1, 1, 2));
    require_gradcheck([](const Vars& v) { return ad::global_avg_pool2d(v[0]); }, {x});
    require_gradcheck([](const Vars& v) { return ad::flatten(v[0]); }, {x});
}

TEST_CASE("batch_norm2d normalises each channel over batch and pixels", "[ops][conv]")
{
    const Shape xs = GENERATE(Shape{4, 3, 5, 4}, Shape{1, 2, 3, 3}, Shape{5, 3, 1, 1}, Shape{6, 4});
    CAPTURE(xs);
    const std::size_t N = xs[0], C = xs[1], P = xs.size() == 4 ? xs[2] * xs[3] : 1;
    const Tensor<double> x = randn(xs, 12, 2.0) + 1.0, gamma = randn({C}, 13), beta = randn({C}, 14);
    Tape<double> tape;
    ad::BatchStats<double> stats;
    const auto y = ad::batch_norm2d(tape.constant(x), tape.constant(gamma), tape.constant(beta), 1e-5, &stats);
    Tensor<double> flat = x;
    flat.reshape({N, C, P});
    Tensor<double> want = Tensor<double>::from_shape({N, C, P});
    for (std::size_t c = 0; c < C; ++c) {
        double s = 0, q = 0;
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p) s += flat(n, c, p);
        const double mu = s / double(N * P);
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p) q += (flat(n, c, p) - mu) * (flat(n, c, p) - mu);
        const double var = q / double(N * P);
        // The kernel adds the same values in the same order and divides by the same count: the same
        // computation, equal on every instruction set.
        CHECK(stats.mean(c) == Approx(mu).epsilon(1e-13));
        // The same order again, but whether (x - mu)^2 is fused into the add may differ: at most
        // 2 (N P + 1) ulps apart for these non-negative terms, 1.8e-14 for N P = 80.
        CHECK(stats.var(c) == Approx(var).epsilon(5e-14));
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p)
                want(n, c, p) = (flat(n, c, p) - mu) / std::sqrt(var + 1e-5) * gamma(c) + beta(c);
    }
    want.reshape(xs);
    check_close(y.value(), want);
    require_gradcheck([](const Vars& v) { return ad::batch_norm2d(v[0], v[1], v[2]); }, {x, gamma, beta});
}

TEST_CASE("channel_affine scales and shifts each channel of [N, C, H, W] and [N, C]", "[ops][conv]")
{
    Tape<double> tape;
    const auto scale = tape.constant(Tensor<double>{2.0, -1.0}), shift = tape.constant(Tensor<double>{0.5, 10.0});
    // channel 0: 2 x + 0.5, channel 1: 10 - x
    const auto y4 = ad::channel_affine(tape.constant(Tensor<double>{{{{1.0, 2.0}}, {{3.0, 4.0}}}}), scale, shift);
    CHECK_THAT(y4.value(), Equals(Tensor<double>{{{{2.5, 4.5}}, {{7.0, 6.0}}}}));
    const auto y2 = ad::channel_affine(tape.constant(Tensor<double>{{1.0, 2.0}, {3.0, 4.0}}), scale, shift);
    CHECK_THAT(y2.value(), Equals(Tensor<double>{{2.5, 8.0}, {6.5, 6.0}}));
}

TEST_CASE("channel_affine equals its loop and is gradchecked, a factor shared by several uses included",
          "[ops][conv]")
{
    const Shape xs = GENERATE(Shape{4, 3, 5, 4}, Shape{1, 2, 3, 3}, Shape{3, 2, 1, 1}, Shape{6, 4}, Shape{1, 5});
    CAPTURE(xs);
    const std::size_t N = xs[0], C = xs[1], P = xs.size() == 4 ? xs[2] * xs[3] : 1;
    const Tensor<double> x = randn(xs, 15, 2.0), a = randn({C}, 16), b = randn({C}, 17);
    Tape<double> tape;
    const auto y = ad::channel_affine(tape.constant(x), tape.constant(a), tape.constant(b));
    Tensor<double> want = Tensor<double>::from_shape({N, C, P});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t p = 0; p < P; ++p) want(n, c, p) = x.flat((n * C + c) * P + p) * a(c) + b(c);
    want.reshape(xs);
    check_close(y.value(), want);
    require_gradcheck([](const Vars& v) { return ad::channel_affine(v[0], v[1], v[2]); }, {x, a, b});
    // One input as both scale and shift, and the factors used by two ops: their gradients add.
    require_gradcheck([](const Vars& v) { return ad::channel_affine(v[0], v[1], v[1]); }, {x, a});
    require_gradcheck(
        [](const Vars& v) { return ad::channel_affine(ad::channel_affine(v[0], v[1], v[2]), v[1], v[2]); }, {x, a, b});
}

TEST_CASE("conv2d, pooling and batch_norm2d match PyTorch's values and gradients", "[ops][conv][pytorch]")
{
    const auto archive = ad::nn::read_npz(std::string(AD_SOURCE_DIR) + "/tests/fixtures/conv_fixtures.npz");
    auto get = [&](const std::string& name) {
        for (const auto& [n, a] : archive)
            if (n == name) return a.to_tensor<double>();
        FAIL("conv_fixtures.npz has no array " << name);
        return Tensor<double>();
    };
    auto has = [&](const std::string& name) {
        for (const auto& e : archive)
            if (e.first == name) return true;
        return false;
    };
    std::size_t cases = 0;
    for (int i = 0; has("conv" + std::to_string(i) + ".x"); ++i, ++cases) {
        const std::string k = "conv" + std::to_string(i) + ".";
        CAPTURE(k);
        const Tensor<double> a = get(k + "attrs");
        const Conv2dOptions o = opts(std::size_t(a(0)), std::size_t(a(1)), std::size_t(a(2)), std::size_t(a(3)),
                                     std::size_t(a(4)), std::size_t(a(5)), std::size_t(a(6)));
        Tape<double> tape;
        const auto x = tape.variable(get(k + "x")), w = tape.variable(get(k + "w")), b = tape.variable(get(k + "b"));
        const auto y = ad::conv2d(x, w, b, o);
        check_close(y.value(), get(k + "y"));
        const auto g = ad::vjp(y, get(k + "gy"), {x, w, b});
        check_close(g[0], get(k + "dx"));
        check_close(g[1], get(k + "dw"));
        check_close(g[2], get(k + "db"));
    }
    for (const std::string kind : {"max", "avg"})
        for (int i = 0; has(kind + std::to_string(i) + ".x"); ++i, ++cases) {
            const std::string k = kind + std::to_string(i) + ".";
            CAPTURE(k);
            const Tensor<double> a = get(k + "attrs");
            Pool2dOptions o;
            o.kernel = {std::size_t(a(0)), std::size_t(a(1))};
            o.stride = {std::size_t(a(2)), std::size_t(a(3))};
            o.padding = {std::size_t(a(4)), std::size_t(a(5))};
            Tape<double> tape;
            const auto x = tape.variable(get(k + "x"));
            const auto y = kind == "max" ? ad::max_pool2d(x, o) : ad::avg_pool2d(x, o);
            check_close(y.value(), get(k + "y"));
            check_close(ad::vjp(y, get(k + "gy"), {x})[0], get(k + "dx"));
        }
    for (int i = 0; has("bn" + std::to_string(i) + ".x"); ++i, ++cases) {
        const std::string k = "bn" + std::to_string(i) + ".";
        CAPTURE(k);
        Tape<double> tape;
        const auto x = tape.variable(get(k + "x")), gamma = tape.variable(get(k + "gamma")),
                   beta = tape.variable(get(k + "beta"));
        const auto y = ad::batch_norm2d(x, gamma, beta, get(k + "attrs")(0));
        check_close(y.value(), get(k + "y"), 1e-10);
        const auto g = ad::vjp(y, get(k + "gy"), {x, gamma, beta});
        check_close(g[0], get(k + "dx"), 1e-10);
        check_close(g[1], get(k + "dgamma"), 1e-10);
        check_close(g[2], get(k + "dbeta"), 1e-10);
    }
    CHECK(cases == 14);
}

TEST_CASE("a training step through conv2d, pooling and batch_norm2d allocates no new buffers after the first",
          "[ops][conv]")
{
    // Steady state: every buffer (outputs, saved columns, adjoints) keeps its address.
    Tape<float> tape;
    ad::Parameter<float> w(xt::cast<float>(randn({4, 2, 3, 3}, 15))), b(xt::cast<float>(randn({4}, 16)));
    ad::Parameter<float> gamma(Tensor<float>(xt::ones<float>({4}))), beta(Tensor<float>(xt::zeros<float>({4})));
    const Tensor<float> x = xt::cast<float>(randn({3, 2, 8, 8}, 17));
    std::vector<const float*> first;
    for (int step = 0; step < 3; ++step) {
        tape.clear();
        w.zero_grad(), b.zero_grad(), gamma.zero_grad(), beta.zero_grad();
        auto h = ad::conv2d(tape.constant(x), tape.param(w), tape.param(b), Conv2dOptions{{1, 1}, {1, 1}});
        h = ad::batch_norm2d(h, tape.param(gamma), tape.param(beta));
        h = ad::max_pool2d(ad::relu(h), Pool2dOptions(2));
        auto loss = ad::sum(ad::flatten(ad::avg_pool2d(h, Pool2dOptions(2))));
        ad::backward(loss);
        std::vector<const float*> now;
        for (std::size_t i = 0; i < tape.size(); ++i) {
            now.push_back(tape.value(i).data());
            if (const auto* saved = tape.saved_of(tape.record(i)))
                for (const auto& t : saved->tensors) now.push_back(t.data());
        }
        if (step == 1) first = now;
        if (step == 2) CHECK(now == first);
    }
}

TEST_CASE("conv2d and pooling refuse bad input with the op's name, tape position and shapes", "[ops][conv][errors]")
{
    using Catch::Matchers::Contains;
    Tape<double> tape;
    const auto x = tape.constant(randn({2, 4, 5, 5}, 1));
    const auto w = tape.constant(randn({6, 4, 3, 3}, 2));
    // Each error gives the position the op would have had: after x, w and the constants each
    // check records (a refused op records nothing).
    SECTION("wrong rank")
    {
        CHECK_THROWS_WITH(ad::conv2d(tape.constant(randn({4, 5, 5}, 3)), w),
                          Contains("conv2d (tape position 3): "
                                   "input must be [N, C, H, W] (rank 4), got shape [4, 5, 5]"));
        CHECK_THROWS_WITH(ad::conv2d(x, tape.constant(randn({6, 4, 3}, 3))),
                          Contains("conv2d (tape position 4): "
                                   "weight must be [F, C / groups, kh, kw] (rank 4), got shape [6, 4, 3]"));
        CHECK_THROWS_WITH(ad::max_pool2d(tape.constant(randn({5, 5}, 3)), Pool2dOptions(2)),
                          Contains("max_pool2d (tape position 5): "
                                   "input must be [N, C, H, W] (rank 4), got shape [5, 5]"));
        CHECK_THROWS_WITH(ad::global_avg_pool2d(tape.constant(randn({2, 5}, 3))),
                          Contains("global_avg_pool2d (tape position 6): input must be [N, C, H, W]"));
        CHECK_THROWS_WITH(ad::batch_norm2d(tape.constant(randn({2, 3, 4}, 3)), tape.constant(randn({3}, 1)),
                                           tape.constant(randn({3}, 1))),
                          Contains("batch_norm2d (tape position 9): "
                                   "input must be [N, C, H, W] or [N, C], got shape [2, 3, 4]"));
        CHECK_THROWS_WITH(ad::channel_affine(tape.constant(randn({2, 3, 4}, 3)), tape.constant(randn({3}, 1)),
                                             tape.constant(randn({3}, 1))),
                          Contains("channel_affine (tape position 12): "
                                   "input must be [N, C, H, W] or [N, C], got shape [2, 3, 4]"));
    }
    SECTION("channel mismatch")
    {
        CHECK_THROWS_WITH(ad::conv2d(x, tape.constant(randn({6, 3, 3, 3}, 3))),
                          Contains("conv2d (tape position 3): "
                                   "channel mismatch: the weight [6, 3, 3, 3] with groups = 1 takes 3 input "
                                   "channels, the input [2, 4, 5, 5] has 4"));
        CHECK_THROWS_WITH(ad::conv2d(x, w, tape.constant(randn({5}, 3))),
                          Contains("conv2d (tape position 4): bias must have shape [F] = [6], got [5]"));
        CHECK_THROWS_WITH(ad::batch_norm2d(x, tape.constant(randn({3}, 1)), tape.constant(randn({3}, 1))),
                          Contains("batch_norm2d (tape position 6): "
                                   "gamma [3] and beta [3] must both have shape [C] = [4]"));
        CHECK_THROWS_WITH(ad::channel_affine(x, tape.constant(randn({4}, 1)), tape.constant(randn({3}, 1))),
                          Contains("channel_affine (tape position 8): scale [4] and shift [3] must both have shape "
                                   "[C] = [4] for the input [2, 4, 5, 5]"));
        // factors shaped to broadcast, [1, C, 1, 1], are not [C]
        CHECK_THROWS_WITH(ad::channel_affine(x, tape.constant(randn({1, 4, 1, 1}, 1)), tape.constant(randn({4}, 1))),
                          Contains("channel_affine (tape position 10): scale [1, 4, 1, 1] and shift [4] must both "
                                   "have shape [C] = [4]"));
    }
    SECTION("kernel larger than the padded input")
    {
        CHECK_THROWS_WITH(ad::conv2d(x, tape.constant(randn({6, 4, 7, 3}, 3))),
                          Contains("conv2d (tape position 3): "
                                   "the kernel (7 taps, dilation 1: spans 7) is larger than the padded height "
                                   "5 + 2 x 0 = 5 (input [2, 4, 5, 5], weight [6, 4, 7, 3])"));
        Conv2dOptions o;
        o.dilation = {1, 3};
        CHECK_THROWS_WITH(ad::conv2d(x, w, o), Contains("spans 7) is larger than the padded width 5 + 2 x 0 = 5"));
        CHECK_THROWS_WITH(ad::max_pool2d(x, Pool2dOptions(6)),
                          Contains("max_pool2d (tape position 3): "
                                   "the kernel [6, 6] is larger than the padded input height 5 + 2 x 0 "
                                   "(input [2, 4, 5, 5])"));
    }
    SECTION("zero stride")
    {
        Conv2dOptions o;
        o.stride = {1, 0};
        CHECK_THROWS_WITH(ad::conv2d(x, w, o),
                          Contains("conv2d (tape position 2): "
                                   "stride [1, 0] must be >= 1 (input [2, 4, 5, 5], weight [6, 4, 3, 3])"));
        Pool2dOptions p(2);
        p.stride = {0, 2};
        CHECK_THROWS_WITH(ad::avg_pool2d(x, p), Contains("avg_pool2d (tape position 2): "
                                                         "stride [0, 2] must be >= 1 (input [2, 4, 5, 5])"));
        o.stride = {70000, 1};
        CHECK_THROWS_WITH(ad::conv2d(x, w, o), Contains("must each be at most 65535"));
    }
    SECTION("groups not dividing the channels")
    {
        Conv2dOptions o;
        o.groups = 3;
        CHECK_THROWS_WITH(ad::conv2d(x, tape.constant(randn({6, 1, 3, 3}, 3)), o),
                          Contains("conv2d (tape position 3): "
                                   "groups = 3 must be >= 1 and divide both the input channels C = 4 and the "
                                   "output channels F = 6 (input [2, 4, 5, 5], weight [6, 1, 3, 3])"));
        o.groups = 0;
        CHECK_THROWS_WITH(ad::conv2d(x, w, o), Contains("conv2d (tape position 3): groups = 0 must be >= 1"));
    }
    SECTION("pooling padding more than half the kernel")
    {
        CHECK_THROWS_WITH(ad::max_pool2d(x, Pool2dOptions(2, 2, 2)),
                          Contains("max_pool2d (tape position 2): "
                                   "padding [2, 2] must be at most half the kernel [2, 2]"));
    }
}

TEST_CASE("a refused conv2d or pooling leaves no record on the tape", "[ops][conv][errors]")
{
    Tape<double> tape;
    const auto x = tape.constant(randn({2, 4, 5, 5}, 1));
    const auto w = tape.constant(randn({6, 3, 3, 3}, 2));
    const std::size_t n = tape.size();
    CHECK_THROWS_AS(ad::conv2d(x, w), ad::Error);
    CHECK_THROWS_AS(ad::max_pool2d(x, Pool2dOptions(9)), ad::Error);
    CHECK(tape.size() == n);
}
