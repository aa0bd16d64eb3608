// Losses: values from their formulas, gradients from the seeds' closed forms and from finite
// differences, both reductions, stability at logits of 1e4, and shape errors.
#include "nn/loss.hpp"
#include "nn/init.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <limits>
#include <vector>

using ad::Tape;
using ad::Tensor;
using ad::Var;
using Catch::Contains;
namespace nn = ad::nn;
using nn::Reduction;

namespace {

Tensor<double> randn(const ad::Shape& shape, std::uint64_t seed, double scale = 1.0)
{
    nn::Rng rng(seed);
    return nn::normal<double>(shape, 0.0, scale, rng);
}

// Rows of softmax, computed here in plain loops as the reference.
Tensor<double> softmax_rows(const Tensor<double>& z)
{
    Tensor<double> p = z;
    for (std::size_t b = 0; b < z.shape()[0]; ++b) {
        double m = z(b, 0), s = 0;
        for (std::size_t k = 0; k < z.shape()[1]; ++k) m = std::max(m, z(b, k));
        for (std::size_t k = 0; k < z.shape()[1]; ++k) s += std::exp(z(b, k) - m);
        for (std::size_t k = 0; k < z.shape()[1]; ++k) p(b, k) = std::exp(z(b, k) - m) / s;
    }
    return p;
}

void require_gradcheck(const ad::MultiFn<double>& f, const std::vector<Tensor<double>>& inputs)
{
    const auto res = ad::gradcheck<double>(f, inputs);
    INFO(res.report());
    CHECK(res.ok);
}

}  // namespace

TEST_CASE("mse_loss is the mean or the sum of squared errors", "[nn][loss]")
{
    const Tensor<double> yhat = randn({4, 3}, 1), y = randn({4, 3}, 2);
    const double ss = xt::sum(xt::square(yhat - y))();
    Tape<double> tape;
    const auto p = tape.variable(yhat);
    CHECK(nn::mse_loss(p, y).item() == Approx(ss / 12).epsilon(1e-14));
    CHECK(nn::mse_loss(p, y, Reduction::sum).item() == Approx(ss).epsilon(1e-14));
    const auto reduction = GENERATE(Reduction::mean, Reduction::sum);
    require_gradcheck([&](const std::vector<Var<double>>& v) { return nn::mse_loss(v[0], v[1], reduction); },
                      {yhat, y});
}

TEST_CASE("half_mse is seed 003's 1/(2n) sum (yhat - y)^2 with gradient (1/n)(yhat - y)", "[nn][loss][seeds]")
{
    SECTION("scalar outputs, a vector of n predictions")
    {
        const Tensor<double> yhat = {0.2, 0.9, -0.4, 1.5, 0.0}, y = {0.0, 1.0, 0.0, 1.0, 1.0};
        const double n = 5;
        Tape<double> tape;
        const auto p = tape.variable(yhat);
        const auto J = nn::half_mse(p, y);
        // the loss's reduction against xt::sum: 5 non-negative terms summed in orders that depend on
        // the vector width, each side within 6 ulps of the exact value
        CHECK(J.item() == Approx(xt::sum(xt::square(yhat - y))() / (2 * n)).epsilon(2e-15));
        const Tensor<double> g = ad::grad(J, {p})[0];
        CHECK(xt::allclose(g, (yhat - y) / n, 1e-15, 0.0));
    }
    SECTION("vector outputs: n is the number of examples, not of elements")
    {
        const Tensor<double> yhat = randn({6, 2}, 3), y = randn({6, 2}, 4);
        Tape<double> tape;
        CHECK(nn::half_mse(tape.variable(yhat), y).item() ==
              Approx(xt::sum(xt::square(yhat - y))() / 12.0).epsilon(1e-14));
        require_gradcheck([&](const std::vector<Var<double>>& v) { return nn::half_mse(v[0], v[1]); }, {yhat, y});
    }
}

TEST_CASE("cross_entropy_loss is -log softmax at the label, with gradient (softmax - onehot) / B",
          "[nn][loss]")
{
    const Tensor<double> z = randn({4, 5}, 5, 2.0);
    const std::vector<std::int64_t> labels = {3, 0, 4, 3};
    const Tensor<double> P = softmax_rows(z);
    double total = 0;
    for (std::size_t b = 0; b < 4; ++b) total -= std::log(P(b, labels[b]));

    Tape<double> tape;
    const auto zv = tape.variable(z);
    const auto mean_loss = nn::cross_entropy_loss(zv, labels);
    CHECK(mean_loss.item() == Approx(total / 4).epsilon(1e-14));
    CHECK(nn::cross_entropy_loss(zv, labels, Reduction::sum).item() == Approx(total).epsilon(1e-14));

    // Seed 002: the gradient of the softmax loss is sigma(u) - y, averaged over the batch.
    Tensor<double> expected = P;
    for (std::size_t b = 0; b < 4; ++b) expected(b, labels[b]) -= 1;
    CHECK(xt::allclose(ad::grad(mean_loss, {zv})[0], expected / 4.0, 1e-13, 1e-15));

    const auto reduction = GENERATE(Reduction::mean, Reduction::sum);
    require_gradcheck([&](const std::vector<Var<double>>& v) { return nn::cross_entropy_loss(v[0], labels, reduction); },
                      {z});
}

TEST_CASE("soft_cross_entropy_loss with one-hot targets equals the integer-label form", "[nn][loss]")
{
    const Tensor<double> z = randn({3, 4}, 6);
    const std::vector<std::int64_t> labels = {1, 3, 0};
    Tensor<double> onehot = xt::zeros<double>({3, 4});
    for (std::size_t b = 0; b < 3; ++b) onehot(b, labels[b]) = 1;
    Tape<double> tape;
    const auto zv = tape.variable(z);
    for (auto r : {Reduction::mean, Reduction::sum})
        CHECK(nn::soft_cross_entropy_loss(zv, onehot, r).item() ==
              Approx(nn::cross_entropy_loss(zv, labels, r).item()).epsilon(1e-14));
}

TEST_CASE("soft_cross_entropy_loss: -sum p log softmax(z), gradient softmax(z) - p per row", "[nn][loss]")
{
    const Tensor<double> z = randn({3, 4}, 7);
    const Tensor<double> targets = softmax_rows(randn({3, 4}, 8));  // rows are distributions
    const Tensor<double> P = softmax_rows(z);
    Tape<double> tape;
    const auto zv = tape.variable(z);
    const auto loss = nn::soft_cross_entropy_loss(zv, targets, Reduction::sum);
    CHECK(loss.item() == Approx(-xt::sum(targets * xt::log(P))()).epsilon(1e-14));
    CHECK(xt::allclose(ad::grad(loss, {zv})[0], P - targets, 1e-13, 1e-15));

    const auto reduction = GENERATE(Reduction::mean, Reduction::sum);
    // Gradcheck over the logits and the targets both.
    require_gradcheck(
        [&](const std::vector<Var<double>>& v) { return nn::soft_cross_entropy_loss(v[0], v[1], reduction); },
        {z, targets});
}

TEST_CASE("bce_with_logits_loss is -y log sigmoid(x) - (1 - y) log(1 - sigmoid(x))", "[nn][loss]")
{
    const Tensor<double> x = randn({5, 2}, 9, 2.0);
    const Tensor<double> y = {{0.0, 1.0}, {1.0, 1.0}, {0.0, 0.0}, {0.3, 0.9}, {1.0, 0.0}};
    double total = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double s = 1 / (1 + std::exp(-x.flat(i)));
        total += -y.flat(i) * std::log(s) - (1 - y.flat(i)) * std::log(1 - s);
    }
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto mean_loss = nn::bce_with_logits_loss(xv, y);
    CHECK(mean_loss.item() == Approx(total / 10).epsilon(1e-13));
    CHECK(nn::bce_with_logits_loss(xv, y, Reduction::sum).item() == Approx(total).epsilon(1e-13));
    const Tensor<double> s = 1.0 / (1.0 + xt::exp(-x));
    CHECK(xt::allclose(ad::grad(mean_loss, {xv})[0], (s - y) / 10.0, 1e-13, 1e-15));

    const auto reduction = GENERATE(Reduction::mean, Reduction::sum);
    require_gradcheck(
        [&](const std::vector<Var<double>>& v) { return nn::bce_with_logits_loss(v[0], v[1], reduction); }, {x, y});
}

TEST_CASE("bce_with_logits_loss has gradient 1/2 - y at a logit of exactly 0", "[nn][loss]")
{
    // A zero-initialised output layer gives logits of exactly 0; a relu/abs form would give -y.
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{0.0, 0.0});
    const auto loss = nn::bce_with_logits_loss(x, Tensor<double>{0.0, 1.0}, Reduction::sum);
    CHECK(loss.item() == Approx(2 * std::log(2.0)).epsilon(1e-15));
    const Tensor<double> g = ad::grad(loss, {x})[0];
    CHECK(g(0) == 0.5);
    CHECK(g(1) == -0.5);
}

TEMPLATE_TEST_CASE("losses stay finite for logits of 1e4, forward and backward", "[nn][loss][stability]", float,
                   double)
{
    using T = TestType;
    Tape<T> tape;
    const Tensor<T> big = {{T(1e4), T(0), T(-1e4)}, {T(-1e4), T(1e4), T(5)}};
    const auto z = tape.variable(big);

    SECTION("cross-entropy: the loss of a confident wrong answer is the logit gap")
    {
        const auto loss = nn::cross_entropy_loss(z, {1, 1}, Reduction::sum);
        // Row 0: -log softmax = 1e4 - 0; row 1: the label has the largest logit, loss e^-(1e4-5) ~ 0.
        CHECK(loss.item() == Approx(T(1e4)).epsilon(1e-6));
        const Tensor<T> g = ad::grad(loss, {z})[0];
        CHECK(xt::all(xt::isfinite(g)));
        // softmax - onehot: row 0 = [1, -1, 0], row 1 = [0, 0, 0] up to e^-1e4.
        CHECK(xt::allclose(g, Tensor<T>{{T(1), T(-1), T(0)}, {T(0), T(0), T(0)}}, T(0), T(1e-6)));
    }
    SECTION("soft cross-entropy")
    {
        const Tensor<T> p = {{T(0), T(1), T(0)}, {T(0.5), T(0.5), T(0)}};
        const auto loss = nn::soft_cross_entropy_loss(z, p, Reduction::sum);
        // Row 0: 1e4; row 1: 0.5 * 2e4 + 0.5 * 0.
        CHECK(loss.item() == Approx(T(2e4)).epsilon(1e-6));
        CHECK(xt::all(xt::isfinite(ad::grad(loss, {z})[0])));
    }
    SECTION("binary cross-entropy: loss |x| when wrong, 0 when right, gradient sigmoid(x) - y")
    {
        const Tensor<T> y = {{T(0), T(1), T(1)}, {T(1), T(1), T(0)}};
        const auto loss = nn::bce_with_logits_loss(z, y, Reduction::sum);
        // Wrong: x = 1e4 with y = 0, x = -1e4 with y = 1 (twice); the rest: log 2 at 0 with y = 1,
        // 0 at 1e4 with y = 1, and softplus(5) at x = 5 with y = 0.
        const double expected = 3e4 + std::log(2.0) + std::log1p(std::exp(5.0));
        CHECK(loss.item() == Approx(T(expected)).epsilon(1e-6));
        const Tensor<T> g = ad::grad(loss, {z})[0];
        CHECK(xt::all(xt::isfinite(g)));
        const Tensor<T> expected_g = {{T(1), T(-0.5), T(-1)}, {T(-1), T(0), T(1 / (1 + std::exp(-5.0)))}};
        CHECK(xt::allclose(g, expected_g, T(1e-6), T(1e-6)));
    }
    SECTION("mse of large values")
    {
        const auto loss = nn::mse_loss(z, Tensor<T>(xt::zeros<T>({2, 3})));
        CHECK(std::isfinite(loss.item()));
        CHECK(xt::all(xt::isfinite(ad::grad(loss, {z})[0])));
    }
}

TEST_CASE("losses name the function and the shapes when the shapes disagree", "[nn][loss][errors]")
{
    Tape<double> tape;
    const auto a = tape.variable(randn({4, 3}, 1));
    const Tensor<double> wrong = randn({4, 2}, 2);
    CHECK_THROWS_WITH(nn::mse_loss(a, wrong), Contains("mse_loss") && Contains("[4, 3]") && Contains("[4, 2]"));
    CHECK_THROWS_WITH(nn::half_mse(a, wrong), Contains("half_mse") && Contains("[4, 2]"));
    CHECK_THROWS_WITH(nn::bce_with_logits_loss(a, wrong), Contains("bce_with_logits_loss") && Contains("[4, 2]"));
    CHECK_THROWS_WITH(nn::soft_cross_entropy_loss(a, wrong), Contains("soft_cross_entropy_loss") && Contains("[4, 2]"));
    CHECK_THROWS_WITH(nn::soft_cross_entropy_loss(tape.variable(randn({3}, 1)), randn({3}, 2)),
                      Contains("[batch, classes]"));
    CHECK_THROWS_WITH(nn::cross_entropy_loss(a, {0, 1, 3, 0}, Reduction::sum), Contains("label 3"));
    CHECK_THROWS_AS(nn::cross_entropy_loss(a, {0, 1}), ad::Error);
}

TEST_CASE("labels_from turns whole-number labels into class indices and refuses any other number",
          "[nn][loss][errors]")
{
    CHECK(nn::labels_from(Tensor<double>{2, 0, 1}) == std::vector<std::int64_t>{2, 0, 1});
    Tensor<float> column = {3, 1};
    column.reshape({2, 1});
    CHECK(nn::labels_from(column) == std::vector<std::int64_t>{3, 1});
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(nn::labels_from(Tensor<double>{0, 1.5, 2}), Contains("label 1 is 1.5") && Contains("whole number"));
    CHECK_THROWS_WITH(nn::labels_from(Tensor<double>{0, -1}), Contains("label 1 is -1") && Contains("non-negative"));
    CHECK_THROWS_WITH(nn::labels_from(Tensor<double>{1, nan}), Contains("label 1 is nan"));
    CHECK_THROWS_WITH(nn::labels_from(Tensor<double>{inf, 0}), Contains("label 0 is inf"));
    CHECK_THROWS_WITH(nn::labels_from(Tensor<double>{{0, 1}, {1, 0}}), Contains("[2, 2]") && Contains("[n] or [n, 1]"));
    // The range is the loss's to check: it knows the number of classes.
    Tape<double> tape;
    const auto z = tape.variable(randn({2, 3}, 5));
    CHECK_THROWS_WITH(nn::cross_entropy_loss(z, nn::labels_from(Tensor<double>{0, 3})), Contains("label 3"));
}
