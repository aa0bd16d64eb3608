// Cholesky factor, triangular solve and log-determinant: values against their defining
// equations (L L^T = A, L X = B, log det from the determinant), gradients against central
// differences in double over several sizes, and every bad input.
#include "autodiff/autodiff.hpp"
#include "autodiff/ops_decomp.hpp"

#include <catch2/catch.hpp>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xmanipulation.hpp>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

using ad::Shape;
using ad::Tape;
using ad::Tensor;
using ad::Var;
using Vars = std::vector<Var<double>>;
using Catch::Matchers::Contains;

namespace {

Tensor<double> gaussian(const Shape& shape, std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> d(0, 1);
    auto t = Tensor<double>::from_shape(shape);
    for (auto& v : t) v = d(gen);
    return t;
}

// X X^T / n + I: symmetric, eigenvalues >= 1.
Tensor<double> spd(std::size_t n, std::uint64_t seed)
{
    const Tensor<double> X = gaussian({n, n}, seed);
    Tensor<double> A = xt::linalg::dot(X, xt::transpose(X)) / double(n) + xt::eye<double>(n);
    return A;
}

// Lower triangle random with |diagonal| in [1, 2] (signs mixed), upper triangle random too:
// the solve must not read it.
Tensor<double> lower_with_junk_above(std::size_t n, std::uint64_t seed)
{
    Tensor<double> L = gaussian({n, n}, seed);
    for (std::size_t i = 0; i < n; ++i) L(i, i) = (i % 2 ? -1.0 : 1.0) * (1.0 + std::abs(std::sin(double(i + seed))));
    return L;
}

Tensor<double> tril(const Tensor<double>& M)
{
    Tensor<double> L = M;
    for (std::size_t i = 0; i < L.shape()[0]; ++i)
        for (std::size_t j = i + 1; j < L.shape()[1]; ++j) L(i, j) = 0;
    return L;
}

void require_gradcheck(const ad::MultiFn<double>& f, const std::vector<Tensor<double>>& inputs)
{
    const auto res = ad::gradcheck<double>(f, inputs);
    INFO(res.report());
    CHECK(res.ok);
    CHECK(res.checked > 0);
}

// f(inputs) throws ad::Error whose message holds every one of `parts`, and leaves no record on
// the tape.
void require_error(const std::vector<Tensor<double>>& inputs, const std::function<void(const Vars&)>& f,
                   const std::vector<std::string>& parts)
{
    Tape<double> tape;
    Vars v;
    for (const auto& x : inputs) v.push_back(tape.variable(x));
    const std::size_t before = tape.size();
    try {
        f(v);
        FAIL("no ad::Error was raised");
    } catch (const ad::Error& e) {
        for (const auto& p : parts) CHECK_THAT(e.what(), Contains(p));
    }
    CHECK(tape.size() == before);
}

}  // namespace

// --- cholesky ---

TEST_CASE("cholesky of [[4, 2], [2, 3]] is [[2, 0], [1, sqrt 2]]", "[ops][decomp]")
{
    Tape<double> tape;
    const auto L = ad::cholesky(tape.constant(Tensor<double>{{4., 2.}, {2., 3.}}));
    CHECK(L.value()(0, 0) == Approx(2.0).epsilon(1e-15));
    CHECK(L.value()(0, 1) == 0.0);
    CHECK(L.value()(1, 0) == Approx(1.0).epsilon(1e-15));
    CHECK(L.value()(1, 1) == Approx(std::sqrt(2.0)).epsilon(1e-15));
}

TEST_CASE("cholesky: L is lower triangular with a positive diagonal and L L^T = A", "[ops][decomp]")
{
    const std::size_t n = GENERATE(1, 2, 3, 5, 8, 20);
    CAPTURE(n);
    const Tensor<double> A = spd(n, 10 + n);
    Tape<double> tape;
    const Tensor<double> L = ad::cholesky(tape.constant(A)).value();
    REQUIRE(L.shape() == Shape{n, n});
    for (std::size_t i = 0; i < n; ++i) {
        CHECK(L(i, i) > 0);
        for (std::size_t j = i + 1; j < n; ++j) CHECK(L(i, j) == 0.0);
    }
    CHECK(xt::allclose(xt::linalg::dot(L, xt::transpose(L)), A, 0.0, 1e-13));
}

TEST_CASE("cholesky reads A as its symmetric part (A + A^T)/2", "[ops][decomp]")
{
    const Tensor<double> S = spd(4, 3);
    const Tensor<double> K = gaussian({4, 4}, 4);
    const Tensor<double> skew = K - xt::transpose(K);
    Tape<double> tape;
    const Tensor<double> L1 = ad::cholesky(tape.constant(S)).value();
    const Tensor<double> L2 = ad::cholesky(tape.constant(Tensor<double>(S + 0.3 * skew))).value();
    CHECK(xt::allclose(L1, L2, 0.0, 1e-14));
}

TEST_CASE("cholesky: gradient against central differences", "[ops][decomp][gradcheck]")
{
    const std::size_t n = GENERATE(1, 2, 3, 5, 8);
    CAPTURE(n);
    require_gradcheck([](const Vars& v) { return ad::cholesky(v[0]); }, {spd(n, 20 + n)});
}

TEST_CASE("cholesky: the gradient is symmetric and a scalar of L checks too", "[ops][decomp][gradcheck]")
{
    // sum(L * C) for a fixed C: a one-element output, so every entry of the gradient is checked
    // directly rather than through a random cotangent.
    const Tensor<double> A = spd(5, 31), C = gaussian({5, 5}, 32);
    auto f = [&](const Vars& v) {
        auto& tape = v[0].tape();
        return ad::sum(ad::cholesky(v[0]) * tape.constant(C));
    };
    require_gradcheck(f, {A});
    Tape<double> tape;
    const auto a = tape.variable(A);
    const Tensor<double> g = ad::grad(f({a}), {a})[0];
    CHECK(xt::allclose(g, xt::transpose(g), 0.0, 1e-14));
}

// --- solve_triangular ---

TEST_CASE("solve_triangular: L X = B and L^T X = B, reading only L's lower triangle", "[ops][decomp]")
{
    const std::size_t n = GENERATE(1, 3, 6);
    const std::size_t k = GENERATE(0, 1, 4);  // 0: B is a vector [n]
    const bool transpose = GENERATE(false, true);
    CAPTURE(n, k, transpose);
    const Tensor<double> Lfull = lower_with_junk_above(n, 40 + n), L = tril(Lfull);
    const Tensor<double> B = k ? gaussian({n, k}, 50 + k) : gaussian({n}, 50);
    Tape<double> tape;
    const Tensor<double> X = ad::solve_triangular(tape.constant(Lfull), tape.constant(B), ad::Transpose{transpose, false}).value();
    REQUIRE(X.shape() == B.shape());
    const Tensor<double> opL = transpose ? Tensor<double>(xt::transpose(L)) : L;
    CHECK(xt::allclose(xt::linalg::dot(opL, X), B, 0.0, 1e-12));
}

TEST_CASE("solve_triangular: gradients of L and B against central differences", "[ops][decomp][gradcheck]")
{
    const std::size_t n = GENERATE(1, 2, 3, 5);
    const std::size_t k = GENERATE(0, 1, 3);
    const bool transpose = GENERATE(false, true);
    CAPTURE(n, k, transpose);
    const Tensor<double> L = lower_with_junk_above(n, 60 + n);
    const Tensor<double> B = k ? gaussian({n, k}, 70 + k) : gaussian({n}, 70);
    require_gradcheck([&](const Vars& v) { return ad::solve_triangular(v[0], v[1], ad::Transpose{transpose, false}); }, {L, B});
}

TEST_CASE("solve_triangular: the strict upper triangle of L gets zero gradient", "[ops][decomp]")
{
    const Tensor<double> L = lower_with_junk_above(4, 80), B = gaussian({4, 2}, 81);
    Tape<double> tape;
    const auto l = tape.variable(L), b = tape.variable(B);
    const Tensor<double> gL = ad::grad(ad::sum(ad::solve_triangular(l, b)), {l})[0];
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = i + 1; j < 4; ++j) CHECK(gL(i, j) == 0.0);
}

// --- logdet ---

TEST_CASE("logdet of [[4, 2], [2, 3]] is log 8, and of diag(d) is sum log d", "[ops][decomp]")
{
    Tape<double> tape;
    CHECK(ad::logdet(tape.constant(Tensor<double>{{4., 2.}, {2., 3.}})).item() == Approx(std::log(8.0)).epsilon(1e-15));
    const Tensor<double> d = {0.5, 2.0, 1e-3, 7.0};
    CHECK(ad::logdet(tape.constant(Tensor<double>(xt::diag(d)))).item() ==
          Approx(std::log(0.5) + std::log(2.0) + std::log(1e-3) + std::log(7.0)).epsilon(1e-14));
}

TEST_CASE("logdet agrees with log det(A), and stays finite where det(A) underflows", "[ops][decomp]")
{
    const std::size_t n = GENERATE(1, 2, 5, 12);
    CAPTURE(n);
    const Tensor<double> A = spd(n, 90 + n);
    Tape<double> tape;
    CHECK(ad::logdet(tape.constant(A)).item() == Approx(std::log(xt::linalg::det(A))).epsilon(1e-12));
    // 1e-3 I of order 200: det = 1e-600 is 0 in double, log det = -600 log 10.
    const auto tiny = ad::logdet(tape.constant(Tensor<double>(1e-3 * xt::eye<double>(200))));
    CHECK(tiny.item() == Approx(-600 * std::log(10.0)).epsilon(1e-13));
}

TEST_CASE("logdet: d log det A / dA = A^{-1}, and central differences agree", "[ops][decomp][gradcheck]")
{
    const std::size_t n = GENERATE(1, 2, 3, 5, 8);
    CAPTURE(n);
    const Tensor<double> A = spd(n, 100 + n);
    Tape<double> tape;
    const auto a = tape.variable(A);
    const Tensor<double> g = ad::grad(ad::logdet(a), {a})[0];
    CHECK(xt::allclose(g, xt::linalg::inv(A), 0.0, 1e-12));
    require_gradcheck([](const Vars& v) { return ad::logdet(v[0]); }, {A});
}

TEST_CASE("a Gaussian negative log-likelihood through cholesky, solve_triangular and logdet", "[ops][decomp][gradcheck]")
{
    // 1/2 [log det C + sum_i x_i^T C^{-1} x_i] with C^{-1} applied as L^{-T} L^{-1}: the
    // quadratic form is |L^{-1} x|^2.
    const Tensor<double> C = spd(4, 110), X = gaussian({4, 6}, 111);
    auto nll = [](const Vars& v) {
        const auto Z = ad::solve_triangular(ad::cholesky(v[0]), v[1]);
        return 0.5 * (ad::logdet(v[0]) + ad::sum(ad::square(Z)));
    };
    require_gradcheck(nll, {C, X});
    Tape<double> tape;
    const double want = 0.5 * (std::log(xt::linalg::det(C)) +
                               xt::sum(X * xt::linalg::dot(xt::linalg::inv(C), X))());
    CHECK(nll({tape.constant(C), tape.constant(X)}).item() == Approx(want).epsilon(1e-12));
}

TEST_CASE("the decompositions run in float too", "[ops][decomp]")
{
    const Tensor<double> A = spd(5, 120);
    const Tensor<float> Af = xt::cast<float>(A);
    Tape<float> tape;
    const auto a = tape.variable(Af);
    const auto L = ad::cholesky(a);
    const Tensor<float> LLt = xt::linalg::dot(L.value(), xt::transpose(L.value()));
    CHECK(xt::allclose(LLt, Af, 0.0f, 1e-5f));
    const auto X = ad::solve_triangular(L, tape.constant(Tensor<float>(xt::ones<float>({5}))), ad::transpose_a);
    CHECK(X.shape() == Shape{5});
    const Tensor<float> g = ad::grad(ad::logdet(a), {a})[0];
    CHECK(xt::allclose(g, xt::cast<float>(xt::linalg::inv(A)), 1e-4f, 1e-4f));
}

// --- bad input ---

TEST_CASE("cholesky and logdet refuse a matrix that is not square", "[ops][decomp][errors]")
{
    const std::vector<std::pair<Shape, std::string>> bad{{{2, 3}, "[2, 3]"}, {{4}, "[4]"}, {{2, 2, 2}, "[2, 2, 2]"}};
    for (const auto& [shape, text] : bad) {
        const Tensor<double> x = xt::ones<double>(shape);
        require_error({x}, [](const Vars& v) { ad::cholesky(v[0]); }, {"cholesky (tape position 1): A", "square", text});
        require_error({x}, [](const Vars& v) { ad::logdet(v[0]); },
                      {"logdet (tape position 1): A", "square", text});
    }
}

TEST_CASE("cholesky and logdet refuse a matrix that is not positive definite", "[ops][decomp][errors]")
{
    // Eigenvalues 3 and -1: the leading 1 x 1 minor is fine, the 2 x 2 is not.
    const Tensor<double> indefinite = {{1., 2.}, {2., 1.}};
    require_error({indefinite}, [](const Vars& v) { ad::cholesky(v[0]); },
                  {"cholesky (tape position 1): ", "[2, 2]", "not symmetric positive definite", "leading 2 x 2 minor"});
    require_error({indefinite}, [](const Vars& v) { ad::logdet(v[0]); },
                  {"logdet (tape position 1): ", "[2, 2]", "not symmetric positive definite"});
    require_error({xt::zeros<double>({3, 3})}, [](const Vars& v) { ad::cholesky(v[0]); },
                  {"cholesky", "[3, 3]", "leading 1 x 1 minor"});
    // A skew-symmetric part cannot rescue an indefinite symmetric part.
    const Tensor<double> skewed = {{1., 5.}, {-1., 1.}};  // symmetric part [[1, 2], [2, 1]]
    require_error({skewed}, [](const Vars& v) { ad::cholesky(v[0]); }, {"cholesky", "not symmetric positive definite"});
}

TEST_CASE("solve_triangular refuses mismatched shapes and a singular L", "[ops][decomp][errors]")
{
    const Tensor<double> L = tril(lower_with_junk_above(3, 130));
    auto solve = [](const Vars& v) { ad::solve_triangular(v[0], v[1]); };
    require_error({xt::ones<double>({3, 2}), L}, solve, {"solve_triangular (tape position 2): L", "square", "[3, 2]"});
    require_error({L, xt::ones<double>({4, 2})}, solve,
                  {"solve_triangular (tape position 2): ", "[3, 3]", "[4, 2]", "B must be [3] or [3, k]"});
    require_error({L, xt::ones<double>({3, 2, 1})}, solve, {"solve_triangular", "[3, 2, 1]"});
    Tensor<double> singular = L;
    singular(1, 1) = 0;
    require_error({singular, xt::ones<double>({3})}, solve,
                  {"solve_triangular (tape position 2): ", "singular", "L[1, 1] = 0"});
    // Only L can be read transposed: asking for B's transpose is refused, not ignored.
    require_error({L, xt::ones<double>({3, 2})}, [](const Vars& v) { ad::solve_triangular(v[0], v[1], ad::transpose_b); },
                  {"solve_triangular (tape position 2): ", "transpose_b", "[3, 2]"});
}

TEST_CASE("cholesky, logdet and solve_triangular report a handle from before clear() under their own name",
          "[ops][decomp][errors]")
{
    using Catch::Matchers::StartsWith;
    Tape<double> tape;
    const auto stale = tape.variable(spd(3, 140));
    tape.clear();
    const auto A = tape.variable(spd(3, 141));
    const auto b = tape.variable(Tensor<double>(xt::ones<double>({3})));
    // Checked before any shape is read: reading it first would report "value" or "shape".
    CHECK_THROWS_WITH(ad::cholesky(stale), StartsWith("cholesky: ") && Contains("tape.clear()"));
    CHECK_THROWS_WITH(ad::logdet(stale), StartsWith("logdet: ") && Contains("tape.clear()"));
    CHECK_THROWS_WITH(ad::solve_triangular(stale, b), StartsWith("solve_triangular: ") && Contains("tape.clear()"));
    CHECK_THROWS_WITH(ad::solve_triangular(A, stale), StartsWith("solve_triangular: ") && Contains("tape.clear()"));
    CHECK(tape.size() == 2);
}
