// conv2d's float32 kernels on oneDNN against im2col + GEMM, the reference (autodiff/backends.hpp).
//
// Both are float32 sums of the same products in other orders, so neither equals the other bit for
// bit; each must be within the worst-case rounding bound of the exact value. For a sum of K
// products in any order, |computed - exact| <= (K + 1) u sum |terms| (u = 2^-24, one rounding per
// product and per addition); sum |terms| is the same op applied to |x|, |w|, |b| and |g|, and
// the exact value is the op in float64 on the same inputs (its own error is 2^-29 smaller).
#include "gradcheck_helpers.hpp"

#include "autodiff/autodiff.hpp"
#include "autodiff/kernels/conv_dnnl.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace adtest;
using ad::Conv2dOptions;
using ad::Tape;
using ad::Tensor;

namespace {

struct Geometry {
    Shape x, w;
    Conv2dOptions o;
    std::string what;
};

template <class T>
struct Result {
    Tensor<T> y, dx, dw, db;
};

// y = conv2d(x, w, b) and the gradients of sum(y * r); with `twice`, of sum(y * r) + sum(y' * r)
// for a second convolution y' of the same x, w and b, so that each gradient is a first
// contribution and then a second one added to it.
template <class T>
Result<T> run(const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b, const Tensor<T>& r, const Conv2dOptions& o,
              bool twice = false)
{
    Tape<T> tape;
    const auto xv = tape.variable(x), wv = tape.variable(w), bv = tape.variable(b);
    const auto y = ad::conv2d(xv, wv, bv, o);
    auto loss = ad::sum(y * tape.constant(r));
    if (twice) loss = loss + ad::sum(ad::conv2d(xv, wv, bv, o) * tape.constant(r));
    const auto g = ad::grad(loss, {xv, wv, bv});
    return {y.value(), g[0], g[1], g[2]};
}

template <class From>
Tensor<float> to_float(const From& t) { return xt::cast<float>(t); }
Tensor<double> to_double(const Tensor<float>& t) { return xt::cast<double>(t); }

// Every element of got within (K + 1) u scale of exact.
void check_bound(const char* what, const Tensor<float>& got, const Tensor<double>& exact, const Tensor<double>& scale,
                 double K)
{
    CAPTURE(what, K);
    REQUIRE(got.shape() == exact.shape());
    const double u = std::ldexp(1.0, -24);
    std::size_t bad = 0;
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(double(got.flat(i)) - exact.flat(i)), bound = (K + 1) * u * scale.flat(i);
        if (err > bound) ++bad;
        if (scale.flat(i) > 0) worst = std::max(worst, err / bound);
    }
    CAPTURE(worst);
    CHECK(bad == 0);
}

}  // namespace

TEST_CASE("conv2d in float32 on oneDNN and on im2col + GEMM: values and gradients within float32's rounding bound",
          "[ops][conv][dnnl]")
{
    auto opts = [](std::size_t s, std::size_t p, std::size_t d, std::size_t groups) {
        Conv2dOptions o;
        o.stride = {s, s}, o.padding = {p, p}, o.dilation = {d, d}, o.groups = groups;
        return o;
    };
    const Geometry c = GENERATE_COPY(
        Geometry{{8, 1, 28, 28}, {16, 1, 5, 5}, opts(1, 0, 1, 1), "config f's first layer (one input channel)"},
        Geometry{{8, 16, 12, 12}, {32, 16, 5, 5}, opts(1, 0, 1, 1), "config f's second layer"},
        Geometry{{2, 3, 9, 9}, {4, 3, 3, 3}, opts(2, 1, 1, 1), "stride 2, padding 1"},
        Geometry{{2, 2, 10, 10}, {3, 2, 3, 3}, opts(1, 2, 2, 1), "dilation 2, padding 2"},
        Geometry{{2, 4, 7, 7}, {6, 2, 3, 3}, opts(1, 1, 1, 2), "two groups"},
        Geometry{{3, 8, 5, 5}, {4, 8, 1, 1}, opts(1, 0, 1, 1), "1x1"},
        Geometry{{1, 3, 6, 9}, {2, 3, 2, 4}, opts(1, 0, 1, 1), "batch 1, a 2x4 kernel"},
        Geometry{{1, 2, 7, 7}, {2, 2, 2, 2}, opts(3, 0, 1, 1), "stride 3 leaving the last row and column out"});
    CAPTURE(c.what, c.x, c.w);
    const std::size_t F = c.w[0];
    const Tensor<float> x = to_float(randn(c.x, 1)), w = to_float(randn(c.w, 2)), b = to_float(randn({F}, 3));
    const Tensor<double> xd = to_double(x), wd = to_double(w), bd = to_double(b);
    Tensor<double> rd;
    {
        Tape<double> t;
        rd = ad::conv2d(t.constant(xd), t.constant(wd), c.o).value();  // only its shape
    }
    const Tensor<float> r = to_float(randn(rd.shape(), 4));
    rd = to_double(r);

    // oneDNN takes every geometry here but the last (test below), or the comparison would be
    // im2col against itself.
    ad::kernels::ConvGeometry g;
    g.N = c.x[0], g.C = c.x[1], g.H = c.x[2], g.W = c.x[3], g.F = F, g.kh = c.w[2], g.kw = c.w[3];
    g.sh = g.sw = c.o.stride[0], g.ph = g.pw = c.o.padding[0], g.dh = g.dw = c.o.dilation[0], g.groups = c.o.groups;
    g.Ho = rd.shape()[2], g.Wo = rd.shape()[3];
    Tensor<float> y = Tensor<float>::from_shape(rd.shape());
#ifdef AD_EXPECT_DNNL
    CHECK(ad::kernels::dnnl_conv::forward(x.data(), w.data(), b.data(), g, y.data()) == (c.o.stride[0] != 3));
#endif

    const Result<double> exact = run(xd, wd, bd, rd, c.o);
    const Result<double> scale = run(Tensor<double>(xt::abs(xd)), Tensor<double>(xt::abs(wd)),
                                     Tensor<double>(xt::abs(bd)), Tensor<double>(xt::abs(rd)), c.o);
    const Shape& ys = exact.y.shape();
    const double k_y = double(c.w[1] * c.w[2] * c.w[3] + 1);                 // products and the bias
    const double k_dx = double(F / c.o.groups * c.w[2] * c.w[3]);            // at most, per input element
    const double k_dw = double(ys[0] * ys[2] * ys[3]), k_db = k_dw;         // images x output pixels

    for (bool dnnl : {true, false}) {
        CAPTURE(dnnl);
        ad::set_dnnl_enabled(dnnl);
        const Result<float> got = run(x, w, b, r, c.o);
        ad::set_dnnl_enabled(true);
        check_bound("y", got.y, exact.y, scale.y, k_y);
        check_bound("dx", got.dx, exact.dx, scale.dx, k_dx);
        check_bound("dw", got.dw, exact.dw, scale.dw, k_dw);
        check_bound("db", got.db, exact.db, scale.db, k_db);
        // Two uses: each gradient is the sum of two equal contributions, the second added to the
        // first (one more rounding), within twice the bound of the exact doubled gradient.
        ad::set_dnnl_enabled(dnnl);
        const Result<float> two = run(x, w, b, r, c.o, true);
        ad::set_dnnl_enabled(true);
        check_bound("dx, two uses", two.dx, 2.0 * exact.dx, 2.0 * scale.dx, k_dx + 1);
        check_bound("dw, two uses", two.dw, 2.0 * exact.dw, 2.0 * scale.dw, k_dw + 1);
    }
}

TEST_CASE("oneDNN takes conv2d's float32 geometries except a stride that leaves input out", "[ops][conv][dnnl]")
{
#ifdef AD_EXPECT_DNNL
    const bool built = true;
#else
    const bool built = false;
#endif
    REQUIRE(ad::dnnl_available() == built);
    CHECK(ad::dnnl_enabled() == built);
    ad::kernels::ConvGeometry g;
    g.N = 2, g.C = 3, g.H = 8, g.W = 8, g.F = 4, g.kh = 3, g.kw = 3, g.Ho = 6, g.Wo = 6;
    std::vector<float> x(g.in_size(), 1.0f), w(g.weight_size(), 0.5f), y(g.out_size(), -1.0f);
    CHECK(ad::kernels::dnnl_conv::forward(x.data(), w.data(), nullptr, g, y.data()) == built);
    if (built) CHECK(y[0] == 13.5f);  // 27 products of 1 x 0.5, exact in float32
    // H = 7, kernel 2, stride 3: rows 0-1 and 3-4 are read, 6 never; oneDNN's right padding would
    // be -1, which it cannot express: the caller keeps im2col.
    g.H = g.W = 7, g.kh = g.kw = 2, g.sh = g.sw = 3, g.Ho = g.Wo = 2;
    y.assign(g.out_size(), -1.0f);
    CHECK_FALSE(ad::kernels::dnnl_conv::forward(x.data(), w.data(), nullptr, g, y.data()));
    CHECK(y[0] == -1.0f);  // nothing written
}

TEST_CASE("a oneDNN plan serves the pool size it was made for", "[ops][conv][dnnl]")
{
    // oneDNN divides a primitive's work among the threads there are when it is made: a plan made
    // at one thread and reused at two would run on one. Each pool size gets its own plan.
    if (!ad::dnnl_available()) return;
    ad::kernels::ConvGeometry g;
    g.N = 3, g.C = 2, g.H = 9, g.W = 9, g.F = 5, g.kh = 3, g.kw = 3, g.Ho = 7, g.Wo = 7;
    std::vector<float> x(g.in_size(), 1.0f), w(g.weight_size(), 0.25f), y(g.out_size());
    const int before = ad::get_num_threads();
    auto forward_at = [&](int threads) {
        ad::set_num_threads(threads);
        REQUIRE(ad::kernels::dnnl_conv::forward(x.data(), w.data(), nullptr, g, y.data()));
        CHECK(y[0] == 4.5f);  // 18 products of 1 x 0.25
        return ad::kernels::dnnl_conv::plans_held();
    };
    const std::size_t one = forward_at(1);
    CHECK(forward_at(2) == one + 1);  // a new plan for two threads
    CHECK(forward_at(1) == one + 1);  // the one-thread plan again
    CHECK(forward_at(2) == one + 1);
    ad::set_num_threads(before);
}
