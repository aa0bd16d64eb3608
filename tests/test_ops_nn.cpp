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
    CHECK(L.item() == Approx(loss).epsilon(1e-13).margin(1e-15));
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
    CHECK(L.item() == Approx(ss / n).epsilon(1e-14));
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
    CHECK(composed({zv}).item() == Approx(ad::cross_entropy(zv, labels).item()).epsilon(1e-14));
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
