// Neural-network functions: softmax and log_softmax along any axis, cross-entropy from logits,
// mean squared error and dropout, against their formulas and central differences; and all of
// them finite, forward and backward, at logits of magnitude 1e4 in float and in double.
#include "gradcheck_helpers.hpp"

#include <xtensor/xmath.hpp>

#include <cmath>

using namespace adtest;
using ad::Tape;

namespace {

// exp(x) / sum exp(x) along the axis, naively: fine for the moderate inputs it is used on.
Tensor<double> naive_softmax(const Tensor<double>& x, std::size_t axis)
{
    const Tensor<double> e = xt::exp(x);
    const Tensor<double> s = xt::sum(e, {axis}, xt::keep_dims | xt::evaluation_strategy::immediate);
    return e / s;
}

void check_close(const Tensor<double>& got, const Tensor<double>& want)
{
    CAPTURE(got, want);
    REQUIRE(got.shape() == want.shape());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got.flat(i) == Approx(want.flat(i)).epsilon(1e-13).margin(1e-300));
}

const std::vector<Shape> shapes{{4}, {3, 4}, {2, 3, 4}};

}  // namespace

TEST_CASE("softmax(x) = exp(x) / sum exp(x) along an axis: positive, each slice sums to 1", "[ops][nn]")
{
    const Shape shape = GENERATE(from_range(shapes));
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    CAPTURE(shape, axis);
    const std::size_t ax = std::size_t(axis < 0 ? axis + rank : axis);
    const Tensor<double> x = randn(shape, 1, 2.0);
    Tape<double> tape;
    const auto y = ad::softmax(tape.constant(x), axis);
    check_close(y.value(), naive_softmax(x, ax));
    CHECK(xt::all(y.value() > 0.0));
    const Tensor<double> sums = xt::sum(y.value(), {ax}, xt::evaluation_strategy::immediate);
    // at most 4 terms: however they are summed, rounding keeps the sum within 7 ulps of 1
    for (double s : sums) CHECK(s == Approx(1.0).epsilon(1e-15));
    require_gradcheck([=](const Vars& v) { return ad::softmax(v[0], axis); }, {x});
}

TEST_CASE("softmax and log_softmax default to the last axis", "[ops][nn]")
{
    const Tensor<double> x = randn({3, 4}, 2);
    Tape<double> tape;
    const auto xv = tape.constant(x);
    CHECK_THAT(ad::softmax(xv).value(), Equals(ad::softmax(xv, 1).value()));
    CHECK_THAT(ad::log_softmax(xv).value(), Equals(ad::log_softmax(xv, 1).value()));
}

TEST_CASE("log_softmax(x) = x - log sum exp(x) = log(softmax(x)) along an axis", "[ops][nn]")
{
    const Shape shape = GENERATE(from_range(shapes));
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    CAPTURE(shape, axis);
    const std::size_t ax = std::size_t(axis < 0 ? axis + rank : axis);
    const Tensor<double> x = randn(shape, 3, 2.0);
    Tape<double> tape;
    const auto y = ad::log_softmax(tape.constant(x), axis);
    check_close(y.value(), Tensor<double>(xt::log(naive_softmax(x, ax))));
    require_gradcheck([=](const Vars& v) { return ad::log_softmax(v[0], axis); }, {x});
}

TEST_CASE("cross_entropy = mean_b -log softmax(z_b)_label with gradient (softmax(z) - onehot) / B", "[ops][nn]")
{
    using Case = std::pair<Tensor<double>, std::vector<std::int64_t>>;
    const Case c = GENERATE(Case{randn({4, 5}, 4, 2.0), {0, 3, 4, 3}}, Case{randn({1, 3}, 5), {2}},
                            Case{randn({3, 1}, 6), {0, 0, 0}});
    const Tensor<double>& z = c.first;
    const auto& labels = c.second;
    const std::size_t B = z.shape()[0], C = z.shape()[1];
    const Tensor<double> p = naive_softmax(z, 1);
    double loss = 0;
    Tensor<double> expected_grad = p / double(B);
    for (std::size_t b = 0; b < B; ++b) {
        loss -= std::log(p(b, std::size_t(labels[b]))) / double(B);
        expected_grad(b, std::size_t(labels[b])) -= 1.0 / double(B);
    }
    Tape<double> tape;
    const auto zv = tape.variable(z);
    const auto L = ad::cross_entropy(zv, labels);
    CHECK(L.dimension() == 0);
    // the op's max-shifted std::exp and log against xt::exp's softmax and its log: a few ulps of
    // each -log p and of the logits, 3e-15 of the loss at most for these cases (0 exactly for C = 1)
    CHECK(L.item() == Approx(loss).epsilon(1e-14).margin(1e-15));
    check_close(ad::grad(L, {zv})[0], expected_grad);
    CAPTURE(B, C);
    require_gradcheck([&](const Vars& v) { return ad::cross_entropy(v[0], labels); }, {z});
}

TEST_CASE("mse(p, t) = mean (p - t)^2 with gradients 2 (p - t) / n and -2 (p - t) / n", "[ops][nn]")
{
    const Shape shape = GENERATE(Shape{}, Shape{5}, Shape{3, 4});
    const Tensor<double> p = randn(shape, 7), t = randn(shape, 8);
    const double n = double(p.size());
    Tape<double> tape;
    const auto pv = tape.variable(p), tv = tape.variable(t);
    const auto L = ad::mse(pv, tv);
    double ss = 0;
    for (std::size_t i = 0; i < p.size(); ++i) ss += (p.flat(i) - t.flat(i)) * (p.flat(i) - t.flat(i));
    // the same order of summation, but the loop may fuse its multiply-add: non-negative terms,
    // 2 (n + 1) ulps apart at most, 2.9e-15 for n = 12
    CHECK(L.item() == Approx(ss / n).epsilon(5e-15));
    const auto g = ad::grad(L, {pv, tv});
    check_close(g[0], Tensor<double>(2.0 * (p - t) / n));
    check_close(g[1], Tensor<double>(-2.0 * (p - t) / n));
    require_gradcheck([](const Vars& v) { return ad::mse(v[0], v[1]); }, {p, t});
}

TEST_CASE("dropout(x, m, p) = x m / (1 - p), and its gradient is m / (1 - p)", "[ops][nn]")
{
    const double p = GENERATE(0.0, 0.25, 0.5, 0.9);
    const Tensor<double> x = randn({3, 4}, 9);
    const Tensor<double> mask{{1, 0, 1, 1}, {0, 0, 1, 0}, {1, 1, 1, 0}};
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = ad::dropout(xv, mask, p);
    check_close(y.value(), Tensor<double>(x * mask / (1 - p)));
    check_close(ad::grad(ad::sum(y), {xv})[0], Tensor<double>(mask / (1 - p)));
    require_gradcheck([&](const Vars& v) { return ad::dropout(v[0], mask, p); }, {x});
}

TEST_CASE("softmax cross-entropy composed from log_softmax and gather equals the fused op", "[ops][nn]")
{
    const Tensor<double> z = randn({3, 4}, 10);
    const std::vector<std::int64_t> labels{1, 3, 0};
    const Tensor<double> onehot{{0, 1, 0, 0}, {0, 0, 0, 1}, {1, 0, 0, 0}};
    auto composed = [&](const Vars& v) { return -ad::sum(ad::log_softmax(v[0]) * v[0].tape().constant(onehot)) / 3.0; };
    Tape<double> tape;
    const auto zv = tape.variable(z);
    // the same lse - z per row (log_softmax negates it exactly), the three summed in at most another
    // order and divided by 3: 6 ulps apart at most
    CHECK(composed({zv}).item() == Approx(ad::cross_entropy(zv, labels).item()).epsilon(1e-15));
    require_gradcheck(composed, {z});
}

// Logits of +-1e4 overflow exp() in both types; the stable forms shift by the maximum first.
TEMPLATE_TEST_CASE("at inputs of magnitude 1e4 softmax, log_softmax, logsumexp, cross_entropy, sigmoid and softplus stay finite forward and backward", "[ops][nn][stability]", float, double)
{
    using T = TestType;
    Tape<T> tape;
    const auto x = tape.variable(Tensor<T>{{1e4, -1e4, 0}, {-1e4, 1e4, 5e3}});
    const Tensor<T> c{{1, 2, 3}, {4, 5, 6}};
    auto finite = [](const Tensor<T>& t) { return std::all_of(t.begin(), t.end(), [](T v) { return std::isfinite(v); }); };
    auto check_values = [](const Tensor<T>& got, const Tensor<double>& want) {
        CAPTURE(got, want);
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); ++i) CHECK(got.flat(i) == Approx(want.flat(i)));
    };

    SECTION("softmax: one-hot rows, gradient y (c - sum c y) = 0")
    {
        const auto y = ad::softmax(x);
        check_values(y.value(), {{1, 0, 0}, {0, 1, 0}});
        const Tensor<T> g = ad::vjp(y, c, {x})[0];
        CHECK(finite(g));
        check_values(g, {{0, 0, 0}, {0, 0, 0}});
    }
    SECTION("log_softmax: x - max, gradient c - softmax sum c")
    {
        const auto y = ad::log_softmax(x);
        check_values(y.value(), {{0, -2e4, -1e4}, {-2e4, 0, -5e3}});
        const Tensor<T> g = ad::vjp(y, c, {x})[0];
        CHECK(finite(g));
        check_values(g, {{1 - 6, 2, 3}, {4, 5 - 15, 6}});
    }
    SECTION("logsumexp: the maximum, gradient softmax")
    {
        const auto y = ad::logsumexp(x, -1);
        check_values(y.value(), {1e4, 1e4});
        const Tensor<T> g = ad::grad(ad::sum(y), {x})[0];
        CHECK(finite(g));
        check_values(g, {{1, 0, 0}, {0, 1, 0}});
    }
    SECTION("cross_entropy: losses 0 and 5e3, gradient (softmax - onehot) / 2")
    {
        const auto L = ad::cross_entropy(x, {0, 2});
        CHECK(L.item() == Approx(2500.0));
        const Tensor<T> g = ad::grad(L, {x})[0];
        CHECK(finite(g));
        check_values(g, {{0, 0, 0}, {0, 0.5, -0.5}});
    }
    SECTION("sigmoid saturates at 1 and 0 with gradient 0")
    {
        const auto y = ad::sigmoid(x);
        check_values(y.value(), {{1, 0, 0.5}, {0, 1, 1}});
        const Tensor<T> g = ad::grad(ad::sum(y), {x})[0];
        CHECK(finite(g));
        check_values(g, {{0, 0, 0.25}, {0, 0, 0}});
    }
    SECTION("softplus is x for large x and 0 for very negative x, gradient sigmoid(x)")
    {
        const auto y = ad::softplus(x);
        check_values(y.value(), {{1e4, 0, std::log(2.0)}, {0, 1e4, 5e3}});
        const Tensor<T> g = ad::grad(ad::sum(y), {x})[0];
        CHECK(finite(g));
        check_values(g, {{1, 0, 0.5}, {0, 1, 1}});
    }
}

namespace {

// Layer norm written out per row: (x - mean) / sqrt(mean (x - mean)^2 + eps) * gamma + beta.
Tensor<double> layer_norm_by_rows(const Tensor<double>& x, const Tensor<double>& gamma, const Tensor<double>& beta,
                                  double eps)
{
    const std::size_t n = x.shape().back();
    Tensor<double> y = x;
    for (std::size_t r = 0; r < x.size() / n; ++r) {
        double mu = 0, var = 0;
        for (std::size_t j = 0; j < n; ++j) mu += x.flat(r * n + j) / double(n);
        for (std::size_t j = 0; j < n; ++j) var += (x.flat(r * n + j) - mu) * (x.flat(r * n + j) - mu) / double(n);
        for (std::size_t j = 0; j < n; ++j)
            y.flat(r * n + j) = (x.flat(r * n + j) - mu) / std::sqrt(var + eps) * gamma(j) + beta(j);
    }
    return y;
}

// The same map composed from primitive ops.
Var<double> layer_norm_composed(const Var<double>& x, const Var<double>& gamma, const Var<double>& beta, double eps)
{
    const auto centred = x - ad::mean(x, -1, ad::keepdims);
    const auto var = ad::mean(ad::square(centred), -1, ad::keepdims);
    return centred / ad::sqrt(var + eps) * gamma + beta;
}

void check_close_to(const Tensor<double>& got, const Tensor<double>& want, double tol)
{
    CAPTURE(got, want);
    REQUIRE(got.shape() == want.shape());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got.flat(i) == Approx(want.flat(i)).epsilon(tol).margin(tol));
}

}  // namespace

TEST_CASE("layer_norm(x, gamma, beta) = (x - mean) / sqrt(var + eps) gamma + beta over the last axis, "
          "equal to its composition from primitive ops",
          "[ops][nn][layer_norm]")
{
    const Shape shape = GENERATE(Shape{5}, Shape{3, 4}, Shape{2, 3, 4}, Shape{3, 1});
    const double eps = GENERATE(1e-5, 0.5);
    CAPTURE(shape, eps);
    const std::size_t n = shape.back();
    const Tensor<double> x = randn(shape, 21, 3.0) + 2.0;
    const Tensor<double> gamma = randn({n}, 22) + 1.0, beta = randn({n}, 23);
    Tape<double> tape;
    const auto xv = tape.variable(x), gv = tape.variable(gamma), bv = tape.variable(beta);
    const auto y = ad::layer_norm(xv, gv, bv, eps);
    check_close_to(y.value(), layer_norm_by_rows(x, gamma, beta, eps), 1e-12);
    const auto z = layer_norm_composed(xv, gv, bv, eps);
    check_close_to(y.value(), z.value(), 1e-12);
    // The same gradients as the composition, for a random cotangent.
    const Tensor<double> c = randn(shape, 24);
    const auto fused = ad::vjp(y, c, {xv, gv, bv});
    const auto composed = ad::vjp(z, c, {xv, gv, bv});
    for (std::size_t k = 0; k < 3; ++k) check_close_to(fused[k], composed[k], 1e-10);
}

TEST_CASE("layer_norm with eps = 0 is seed 001's sqrt(m) / s v (z - zbar) + u", "[ops][nn][layer_norm][seeds]")
{
    const std::size_t m = 6;
    const Tensor<double> z = randn({4, m}, 25, 3.0), v = randn({m}, 26) + 1.0, u = randn({m}, 27);
    Tape<double> tape;
    const auto y = ad::layer_norm(tape.constant(z), tape.constant(v), tape.constant(u), 0.0);
    for (std::size_t r = 0; r < 4; ++r) {
        double zbar = 0, s2 = 0;
        for (std::size_t i = 0; i < m; ++i) zbar += z(r, i) / double(m);
        for (std::size_t i = 0; i < m; ++i) s2 += (z(r, i) - zbar) * (z(r, i) - zbar);
        for (std::size_t i = 0; i < m; ++i)
            // the kernel's vectorised mean and variance against this loop's: about 19 ulps of |v xhat|
            // plus the means' errors times rstd |v|; adding u cancels, up to 5.2e-14 of y here
            CHECK(y.value()(r, i) == Approx(std::sqrt(double(m)) / std::sqrt(s2) * v(i) * (z(r, i) - zbar) + u(i)).epsilon(1e-13));
    }
}

TEST_CASE("layer_norm is gradchecked in x, gamma and beta, gamma and beta broadcast over every row",
          "[ops][nn][layer_norm][gradcheck]")
{
    const Shape shape = GENERATE(Shape{5}, Shape{4, 5}, Shape{2, 3, 4}, Shape{3, 1}, Shape{2, 2});
    CAPTURE(shape);
    const std::size_t n = shape.back();
    const Tensor<double> x = randn(shape, 31, 2.0), gamma = randn({n}, 32) + 1.0, beta = randn({n}, 33);
    require_gradcheck([](const Vars& v) { return ad::layer_norm(v[0], v[1], v[2], 1e-5); }, {x, gamma, beta});
    require_gradcheck([](const Vars& v) { return ad::layer_norm(v[0], v[1], v[2], 0.25); }, {x, gamma, beta});
}

// layer_norm's differentiable VJP records J (g gamma) and sum_rows g xhat as one op each, whose
// own VJPs are closed-form second derivatives; checking the gradient of the gradient at second
// order checks those VJPs, and at third order the tape ops their differentiable VJPs record.
// With loss sum(y c) the cotangent reaching layer_norm is the constant c; with sum(tanh(y) c),
// as in a Hessian-vector product, it depends on the inputs and is differentiated too.
TEST_CASE("layer_norm is checked at third order: gradgradcheck of its gradient in x, gamma and beta",
          "[ops][nn][layer_norm][gradcheck][higher]")
{
    const Shape shape = GENERATE(Shape{5}, Shape{3, 4}, Shape{2, 1, 3});
    const bool through_tanh = GENERATE(false, true);
    CAPTURE(shape, through_tanh);
    const std::size_t n = shape.back();
    const Tensor<double> x = randn(shape, 41, 2.0), gamma = randn({n}, 42) + 1.0, beta = randn({n}, 43);
    const Tensor<double> c = randn(shape, 44);
    // the gradient in x, gamma, beta; with the constant cotangent beta's, sum_rows c, is constant
    for (std::size_t k = 0; k < (through_tanh ? 3u : 2u); ++k) {
        CAPTURE(k);
        const auto dlayer_norm = [&c, k, through_tanh](const Vars& v) {
            const auto y = ad::layer_norm(v[0], v[1], v[2], 0.1);
            const auto loss = ad::sum((through_tanh ? ad::tanh(y) : y) * v[0].tape().constant(c));
            return ad::grad(loss, {v[0], v[1], v[2]}, ad::create_graph)[k];
        };
        require_gradcheck(dlayer_norm, {x, gamma, beta});
    }
}

TEST_CASE("layer_norm of a feature axis of size 1 is beta, with zero gradient for x and gamma",
          "[ops][nn][layer_norm]")
{
    const Tensor<double> x = randn({3, 1}, 34), gamma{1.5}, beta{-0.25};
    Tape<double> tape;
    const auto xv = tape.variable(x), gv = tape.variable(gamma), bv = tape.variable(beta);
    const auto y = ad::layer_norm(xv, gv, bv);
    CHECK_THAT(y.value(), Equals(Tensor<double>(Shape{3, 1}, -0.25)));
    const auto g = ad::grad(ad::sum(y), {xv, gv, bv});
    CHECK_THAT(g[0], Equals(Tensor<double>(Shape{3, 1}, 0.0)));
    CHECK_THAT(g[1], Equals({0}));
    CHECK_THAT(g[2], Equals({3}));
}

TEST_CASE("layer_norm in float agrees with double to float precision", "[ops][nn][layer_norm]")
{
    const Tensor<double> x = randn({4, 7}, 35, 2.0), gamma = randn({7}, 36) + 1.0, beta = randn({7}, 37);
    const Tensor<double> c = randn({4, 7}, 38);
    Tape<double> td;
    const auto xd = td.variable(x), gd = td.variable(gamma), bd = td.variable(beta);
    const auto yd = ad::layer_norm(xd, gd, bd);
    const auto grads_d = ad::vjp(yd, c, {xd, gd, bd});
    Tape<float> tf;
    const auto xf = tf.variable(Tensor<float>(xt::cast<float>(x))), gf = tf.variable(Tensor<float>(xt::cast<float>(gamma)));
    const auto bf = tf.variable(Tensor<float>(xt::cast<float>(beta)));
    const auto yf = ad::layer_norm(xf, gf, bf);
    const auto grads_f = ad::vjp(yf, Tensor<float>(xt::cast<float>(c)), {xf, gf, bf});
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(yf.value().flat(i) == Approx(yd.value().flat(i)).epsilon(1e-5).margin(1e-5));
    for (std::size_t k = 0; k < 3; ++k)
        for (std::size_t i = 0; i < grads_d[k].size(); ++i)
            CHECK(grads_f[k].flat(i) == Approx(grads_d[k].flat(i)).epsilon(1e-4).margin(1e-4));
}

TEST_CASE("layer_norm refuses gamma or beta not of shape [features], and an input without axes",
          "[ops][nn][layer_norm][errors]")
{
    Tape<double> tape;
    const auto x = tape.constant(randn({4, 5}, 39));
    const auto g5 = tape.constant(randn({5}, 40)), b5 = tape.constant(randn({5}, 41));
    CHECK_THROWS_AS(ad::layer_norm(x, tape.constant(randn({4}, 1)), b5), ad::Error);
    CHECK_THROWS_WITH(ad::layer_norm(x, tape.constant(randn({4}, 1)), b5),
                      Catch::Contains("layer_norm") && Catch::Contains("[4]") && Catch::Contains("[5]") &&
                          Catch::Contains("[4, 5]"));
    CHECK_THROWS_WITH(ad::layer_norm(x, g5, tape.constant(randn({1, 5}, 2))),
                      Catch::Contains("layer_norm") && Catch::Contains("beta [1, 5]") && Catch::Contains("[5]"));
    CHECK_THROWS_WITH(ad::layer_norm(tape.constant(Tensor<double>(3.0)), g5, b5),
                      Catch::Contains("layer_norm") && Catch::Contains("input has shape []"));
    CHECK_THROWS_WITH(ad::layer_norm(x, g5, b5, -1.0), Catch::Contains("layer_norm") && Catch::Contains("eps"));
}

TEST_CASE("affine(x, W, b) = x W^T + b, equal to matmul and a broadcast add, gradchecked", "[ops][nn][affine]")
{
    const Shape xs = GENERATE(Shape{4, 3}, Shape{3}, Shape{1, 3});
    CAPTURE(xs);
    const Tensor<double> x = randn(xs, 42), W = randn({5, 3}, 43), b = randn({5}, 44);
    Tape<double> tape;
    const auto xv = tape.variable(x), Wv = tape.variable(W), bv = tape.variable(b);
    const auto y = ad::affine(xv, Wv, bv);
    const auto z = xs.size() == 2 ? ad::matmul(xv, Wv, ad::transpose_b) + bv : ad::matmul(Wv, xv) + bv;
    check_close_to(y.value(), z.value(), 1e-14);
    const Tensor<double> c = randn(Shape(y.shape().begin(), y.shape().end()), 45);
    const auto fused = ad::vjp(y, c, {xv, Wv, bv});
    const auto composed = ad::vjp(z, c, {xv, Wv, bv});
    for (std::size_t k = 0; k < 3; ++k) check_close_to(fused[k], composed[k], 1e-13);
    require_gradcheck([](const Vars& v) { return ad::affine(v[0], v[1], v[2]); }, {x, W, b});
    // x used twice: both contributions reach its gradient.
    require_gradcheck([&](const Vars& v) { return ad::affine(v[0], v[1], v[2]) + ad::affine(v[0], v[1], v[2]); },
                      {x, W, b});
}

TEST_CASE("affine refuses shapes that do not fit x W^T + b", "[ops][nn][affine][errors]")
{
    Tape<double> tape;
    const auto x = tape.constant(randn({4, 3}, 46)), W = tape.constant(randn({5, 3}, 47));
    CHECK_THROWS_WITH(ad::affine(x, W, tape.constant(randn({4}, 48))),
                      Catch::Contains("affine") && Catch::Contains("[4, 3]") && Catch::Contains("[5, 3]") &&
                          Catch::Contains("b [4]"));
    CHECK_THROWS_WITH(ad::affine(tape.constant(randn({4, 2}, 49)), W, tape.constant(randn({5}, 50))),
                      Catch::Contains("affine") && Catch::Contains("x [4, 2]") && Catch::Contains("[out, in]"));
    CHECK_THROWS_WITH(ad::affine(tape.constant(randn({2, 4, 2}, 51)), W, tape.constant(randn({5}, 52))),
                      Catch::Contains("x [2, 4, 2]") && Catch::Contains("[..., in]"));
    CHECK_THROWS_AS(ad::affine(tape.constant(randn({}, 53)), W, tape.constant(randn({5}, 54))), ad::Error);
}

// Table [3, 2], ids [[0, 2], [0, 0]]: the result is those rows, and the gradient of its sum counts
// each row's uses (row 0 three times, row 1 never, row 2 once) in every column.
TEST_CASE("embedding picks table rows by ids of any shape and adds the gradients of repeated ids", "[ops][nn][embedding]")
{
    Tape<double> tape;
    const auto table = tape.variable(Tensor<double>{{1, 2}, {3, 4}, {5, 6}});
    const xt::xarray<std::int64_t> ids = {{0, 2}, {0, 0}};
    const auto y = ad::embedding(table, ids);
    CHECK_THAT(y.value(), Equals(Tensor<double>{{{1, 2}, {5, 6}}, {{1, 2}, {1, 2}}}));
    CHECK_THAT(ad::grad(ad::sum(y), {table})[0], Equals(Tensor<double>{{3, 3}, {0, 0}, {1, 1}}));
    const auto one = ad::embedding(table, xt::xarray<std::int64_t>(2));  // a 0-d id: one row
    CHECK_THAT(one.value(), Equals({5, 6}));
}

TEST_CASE("embedding names the id, its position and the table size it refuses, cross_entropy the label shape",
          "[ops][nn][embedding][errors]")
{
    using Catch::Matchers::Contains;
    Tape<double> tape;
    const auto table = tape.variable(randn({5, 3}, 91));
    const xt::xarray<std::int64_t> bad = {{0, 1}, {7, 2}};
    CHECK_THROWS_AS(ad::embedding(table, bad), ad::Error);
    CHECK_THROWS_WITH(ad::embedding(table, bad),
                      Contains("embedding (tape position 1): id 7 at position [1, 0] of ids [2, 2] is out of range "
                               "for a table of 5 rows [5, 3]; expected 0 <= id < 5"));
    CHECK_THROWS_WITH(ad::embedding(tape.variable(randn({5}, 92)), bad),
                      Contains("embedding") && Contains("rank 2") && Contains("[5]"));
    const auto logits = tape.variable(randn({2, 3, 4}, 93));
    const xt::xarray<std::int64_t> labels = xt::zeros<std::int64_t>({3, 2});
    CHECK_THROWS_AS(ad::cross_entropy(logits, labels), ad::Error);
    CHECK_THROWS_WITH(ad::cross_entropy(logits, labels),
                      Contains("cross_entropy (tape position 3): labels of shape [3, 2] do not fit logits [2, 3, 4]"));
}

// [B, T, V] logits against [B, T] labels is the rank-2 loss over the B T rows: the same value
// and, reshaped, the same gradient.
TEST_CASE("cross_entropy over [2, 3, 4] logits equals the rank-2 loss over the 6 rows", "[ops][nn]")
{
    const Tensor<double> x = randn({2, 3, 4}, 94);
    const xt::xarray<std::int64_t> labels = {{0, 3, 1}, {2, 2, 0}};
    Tape<double> tape;
    const auto X = tape.variable(x);
    Tensor<double> rows = x;
    rows.reshape({6, 4});
    const auto R = tape.variable(rows);
    const auto l3 = ad::cross_entropy(X, labels), l2 = ad::cross_entropy(R, {0, 3, 1, 2, 2, 0});
    CHECK(l3.item() == Approx(l2.item()).epsilon(1e-14));
    Tensor<double> g3 = ad::grad(l3, {X})[0];
    g3.reshape({6, 4});
    CHECK(xt::allclose(g3, ad::grad(l2, {R})[0], 1e-14, 1e-14));
}
