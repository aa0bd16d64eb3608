// The seeds' worked examples, as the lectures state them.
#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xrandom.hpp>

#include <cmath>

using ad::Tape;
using ad::Tensor;
using ad::Var;

TEST_CASE("chain rule example of seed 003 gives [3/4, 0]")
{
    // g(x) = [x1 + 2 x2, x2, -x1 + 3], f(u) = u1 - 2 u2 + u3 / 4, so f(g(x)) = 3/4 (x1 + 1).
    auto f_of_g = [](const Var<double>& x) {
        auto x1 = ad::slice(x, 0, 0, 1), x2 = ad::slice(x, 0, 1, 2);
        auto g = ad::concat<double>({x1 + 2.0 * x2, x2, -x1 + 3.0}, 0);
        auto u1 = ad::slice(g, 0, 0, 1), u2 = ad::slice(g, 0, 1, 2), u3 = ad::slice(g, 0, 2, 3);
        return u1 - 2.0 * u2 + u3 / 4.0;
    };
    for (Tensor<double> x : {Tensor<double>{0.3, -1.7}, Tensor<double>{5.0, 2.0}}) {
        const Tensor<double> J = ad::jacobian<double>(f_of_g, x);
        REQUIRE(J.shape() == std::vector<std::size_t>{1, 2});
        CHECK(J(0, 0) == 0.75);
        CHECK(J(0, 1) == 0.0);
    }
}

TEST_CASE("Jacobian of f(x1, x2) = [2 x1 + x2, pi x2, -x1 / x2] from seed 003")
{
    auto f = [](const Var<double>& x) {
        auto x1 = ad::slice(x, 0, 0, 1), x2 = ad::slice(x, 0, 1, 2);
        return ad::concat<double>({2.0 * x1 + x2, M_PI * x2, -x1 / x2}, 0);
    };
    const double x1 = 1.5, x2 = -0.5;
    const Tensor<double> J = ad::jacobian<double>(f, Tensor<double>{x1, x2});
    // Rows are the outputs: [[2, 1], [0, pi], [-1/x2, x1/x2^2]].
    const Tensor<double> expected = {{2.0, 1.0}, {0.0, M_PI}, {-1.0 / x2, x1 / (x2 * x2)}};
    REQUIRE(J.shape() == expected.shape());
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 2; ++j) CHECK(J(i, j) == Approx(expected(i, j)).epsilon(1e-15));
}

TEST_CASE("gradient of J(W x) with respect to W is p x^T (seed 003)")
{
    // J(z) = sum(sin z), so p = dJ/dz = cos(W x).
    Tape<double> tape;
    xt::random::seed(3);
    const Tensor<double> W0 = xt::random::randn<double>({3, 4});
    const Tensor<double> x0 = xt::random::randn<double>({4});
    ad::Parameter<double> W(W0);
    auto x = tape.constant(x0);
    auto z = ad::matmul(tape.param(W), x);
    ad::backward(ad::sum(ad::sin(z)));
    const Tensor<double> p = xt::cos(z.value());
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 4; ++j) CHECK(W.grad(i, j) == Approx(p(i) * x0(j)).epsilon(1e-14));
}
