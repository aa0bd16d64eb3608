// Elementwise ops: values against the formulas, derivatives against their closed forms and
// against central differences, broadcasting summed back to each input's shape, and the
// documented choices where an op has a kink.
#include "gradcheck_helpers.hpp"

#include <cmath>
#include <limits>
#include <string>

using namespace adtest;
using ad::Tape;

namespace {

using Unary = std::function<Var<double>(const Var<double>&)>;
using Binary = std::function<Var<double>(const Var<double>&, const Var<double>&)>;
using Real = std::function<double(double)>;

// y = f(x) elementwise with y_i = value(x_i) and dy_i/dx_i = derivative(x_i), and the sweep
// agrees with central differences.
void check_unary(const Unary& f, const Real& value, const Real& derivative, const Tensor<double>& x)
{
    CAPTURE(x);
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = f(xv);
    REQUIRE(y.shape() == x.shape());
    const Tensor<double> g = ad::grad(ad::sum(y), {xv})[0];
    // xsimd's vectorised functions against <cmath>, each a few ulps from exact on any instruction
    // set: 1e-13 relative (450 ulps) is far above that and far below a wrong formula.
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(y.value().flat(i) == Approx(value(x.flat(i))).epsilon(1e-13));
        CHECK(g.flat(i) == Approx(derivative(x.flat(i))).epsilon(1e-13));
    }
    require_gradcheck([&](const Vars& v) { return f(v[0]); }, {x});
}

// z = f(a, b) broadcasts like `expected` (the same formula on xtensor's broadcasting), and both
// inputs' gradients agree with central differences.
template <class Expected>
void check_binary(const Binary& f, const Tensor<double>& a, const Tensor<double>& b, Expected expected)
{
    CAPTURE(a.shape(), b.shape());
    Tape<double> tape;
    const auto z = f(tape.variable(a), tape.variable(b));
    const Tensor<double> want = expected(a, b);
    REQUIRE(z.shape() == want.shape());
    // The same correctly rounded operation on the same pair of doubles (+, -, *, /, max, min):
    // equal on any instruction set; 1e-15 only allows for a fused or reordered broadcast loop.
    CHECK(xt::allclose(z.value(), want, 1e-15, 0.0));
    require_gradcheck([&](const Vars& v) { return f(v[0], v[1]); }, {a, b});
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
// erfc, not 1 + erf, which cancels in the left tail (1 + erf(-3.6 / sqrt 2) is about 3e-4).
double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double phi(double x) { return std::exp(-x * x / 2) / std::sqrt(2 * M_PI); }

}  // namespace

// --- binary ops over broadcasting pairs ---

TEST_CASE("d(a + b) = (g, g), each summed back to its input's shape", "[ops][elementwise]")
{
    const auto shapes = GENERATE(from_range(broadcast_pairs()));
    const Tensor<double> a = randn(shapes.first, 1), b = randn(shapes.second, 2);
    check_binary([](auto x, auto y) { return x + y; }, a, b, [](auto x, auto y) { return x + y; });

    // d sum(a + b) / da counts how many outputs each entry of a reached.
    Tape<double> tape;
    const auto av = tape.variable(a), bv = tape.variable(b);
    const auto z = av + bv;
    const auto g = ad::grad(ad::sum(z), {av, bv});
    Tensor<double> copies_of_a = a, copies_of_b = b;
    copies_of_a.fill(double(z.size() / a.size()));
    copies_of_b.fill(double(z.size() / b.size()));
    CHECK_THAT(g[0], Equals(copies_of_a));
    CHECK_THAT(g[1], Equals(copies_of_b));
}

TEST_CASE("d(a - b) = (g, -g)", "[ops][elementwise]")
{
    const auto shapes = GENERATE(from_range(broadcast_pairs()));
    check_binary([](auto x, auto y) { return x - y; }, randn(shapes.first, 3), randn(shapes.second, 4),
                 [](auto x, auto y) { return x - y; });
}

TEST_CASE("d(a b) = (g b, g a)", "[ops][elementwise]")
{
    const auto shapes = GENERATE(from_range(broadcast_pairs()));
    check_binary([](auto x, auto y) { return x * y; }, randn(shapes.first, 5), randn(shapes.second, 6),
                 [](auto x, auto y) { return x * y; });
}

TEST_CASE("d(a / b) = (g / b, -g a / b^2) for b away from 0", "[ops][elementwise]")
{
    const auto shapes = GENERATE(from_range(broadcast_pairs()));
    check_binary([](auto x, auto y) { return x / y; }, randn(shapes.first, 7),
                 away_from_zero(shapes.second, 8, 0.5, 1.5), [](auto x, auto y) { return x / y; });
}

TEST_CASE("d max(a, b) goes to the larger input and d min(a, b) to the smaller, away from ties", "[ops][elementwise]")
{
    const auto shapes = GENERATE(from_range(broadcast_pairs()));
    // Multiples of 0.1 against multiples of 0.1 shifted by 0.05: never within 0.05 of a tie.
    const Tensor<double> a = distinct(shapes.first, 9), b = distinct(shapes.second, 10, 0.05);
    check_binary([](auto x, auto y) { return ad::maximum(x, y); }, a, b,
                 [](auto x, auto y) { return xt::maximum(x, y); });
    check_binary([](auto x, auto y) { return ad::minimum(x, y); }, a, b,
                 [](auto x, auto y) { return xt::minimum(x, y); });
}

TEST_CASE("x + s, x - s, s - x, s x, x / s, s / x have derivatives 1, 1, -1, s, 1/s, -s/x^2", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    const double s = -1.75;
    const Tensor<double> x = away_from_zero(shape, 11, 0.5, 2.0);
    check_unary([&](auto v) { return v + s; }, [&](double t) { return t + s; }, [](double) { return 1.0; }, x);
    check_unary([&](auto v) { return s + v; }, [&](double t) { return s + t; }, [](double) { return 1.0; }, x);
    check_unary([&](auto v) { return v - s; }, [&](double t) { return t - s; }, [](double) { return 1.0; }, x);
    check_unary([&](auto v) { return s - v; }, [&](double t) { return s - t; }, [](double) { return -1.0; }, x);
    check_unary([&](auto v) { return v * s; }, [&](double t) { return t * s; }, [&](double) { return s; }, x);
    check_unary([&](auto v) { return s * v; }, [&](double t) { return s * t; }, [&](double) { return s; }, x);
    check_unary([&](auto v) { return v / s; }, [&](double t) { return t / s; }, [&](double) { return 1 / s; }, x);
    check_unary([&](auto v) { return s / v; }, [&](double t) { return s / t; }, [&](double t) { return -s / (t * t); }, x);
}

TEST_CASE("x / s is one division and s - x one op, rounded as written", "[ops][elementwise]")
{
    // 7 / 10 and 7 * (1 / 10) round differently in double: a division must give the former.
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{0.1, 7.0, -2.5});
    const auto q = x / 10.0;
    CHECK(q.tape().record(q.index()).op == std::string("div_scalar"));
    for (std::size_t i = 0; i < 3; ++i) CHECK(q.value()(i) == x.value()(i) / 10.0);
    CHECK(7.0 / 10.0 != 7.0 * (1.0 / 10.0));  // element 1 tells the two apart
    const std::size_t before = tape.size();
    const auto r = 2.0 - x;
    CHECK(tape.size() == before + 1);
    CHECK(r.tape().record(r.index()).op == std::string("rsub_scalar"));
    CHECK_THAT(r.value(), Equals({2.0 - 0.1, 2.0 - 7.0, 2.0 + 2.5}));
    CHECK_THAT(ad::grad(ad::sum(r), {x})[0], Equals({-1.0, -1.0, -1.0}));
}

// --- unary ops ---

TEST_CASE("d(-x) = -g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::neg<double>, [](double x) { return -x; }, [](double) { return -1.0; }, randn(shape, 12));
    check_unary([](auto v) { return -v; }, [](double x) { return -x; }, [](double) { return -1.0; }, randn(shape, 13));
}

TEST_CASE("d x^p = p x^(p-1) g, for p = 3 on any x and p = 2.5, 0.5, -1.5 on x > 0", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    const double p = GENERATE(3.0, 2.5, 0.5, -1.5);
    const Tensor<double> x = p == 3.0 ? randn(shape, 14) : uniform(shape, 0.5, 2.0, 15);
    check_unary([&](auto v) { return ad::pow(v, p); }, [&](double t) { return std::pow(t, p); },
                [&](double t) { return p * std::pow(t, p - 1); }, x);
}

TEST_CASE("d x^2 = 2 x g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::square<double>, [](double x) { return x * x; }, [](double x) { return 2 * x; }, randn(shape, 16));
}

TEST_CASE("d sqrt(x) = g / (2 sqrt(x)) on x > 0", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::sqrt<double>, [](double x) { return std::sqrt(x); },
                [](double x) { return 0.5 / std::sqrt(x); }, uniform(shape, 0.3, 3.0, 17));
}

TEST_CASE("d e^x = e^x g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::exp<double>, [](double x) { return std::exp(x); }, [](double x) { return std::exp(x); },
                randn(shape, 18));
}

TEST_CASE("d log(x) = g / x on x > 0", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::log<double>, [](double x) { return std::log(x); }, [](double x) { return 1 / x; },
                uniform(shape, 0.3, 3.0, 19));
}

TEST_CASE("d |x| = sign(x) g away from 0", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::abs<double>, [](double x) { return std::abs(x); }, [](double x) { return x > 0 ? 1.0 : -1.0; },
                away_from_zero(shape, 20));
}

TEST_CASE("d sin(x) = cos(x) g and d cos(x) = -sin(x) g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    const Tensor<double> x = randn(shape, 21, 2.0);
    check_unary(ad::sin<double>, [](double t) { return std::sin(t); }, [](double t) { return std::cos(t); }, x);
    check_unary(ad::cos<double>, [](double t) { return std::cos(t); }, [](double t) { return -std::sin(t); }, x);
}

TEST_CASE("d clamp(x, lo, hi) = g inside lo..hi and 0 outside", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    const double lo = -0.45, hi = 0.55;  // multiples of 0.1 stay 0.05 away from both
    check_unary([&](auto v) { return ad::clamp(v, lo, hi); }, [&](double x) { return std::min(std::max(x, lo), hi); },
                [&](double x) { return lo < x && x < hi ? 1.0 : 0.0; }, distinct(shape, 22));
}

TEST_CASE("d tanh(x) = (1 - tanh(x)^2) g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::tanh<double>, [](double x) { return std::tanh(x); },
                [](double x) { return 1 - std::tanh(x) * std::tanh(x); }, randn(shape, 23, 1.5));
}

TEST_CASE("sigmoid(x) = 1 / (1 + e^-x) with d = sigmoid(x) (1 - sigmoid(x)) g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::sigmoid<double>, sigmoid, [](double x) { return sigmoid(x) * (1 - sigmoid(x)); },
                randn(shape, 24, 2.0));
}

TEST_CASE("d relu(x) = g where x > 0 and 0 where x < 0", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::relu<double>, [](double x) { return x > 0 ? x : 0.0; }, [](double x) { return x > 0 ? 1.0 : 0.0; },
                away_from_zero(shape, 25));
}

TEST_CASE("leaky_relu(x) = x or alpha x, with slope 1 or alpha", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    const double alpha = GENERATE(0.01, 0.2);
    check_unary([&](auto v) { return ad::leaky_relu(v, alpha); }, [&](double x) { return x > 0 ? x : alpha * x; },
                [&](double x) { return x > 0 ? 1.0 : alpha; }, away_from_zero(shape, 26));
    if (alpha == 0.01)  // the default slope
        check_unary([](auto v) { return ad::leaky_relu(v); }, [](double x) { return x > 0 ? x : 0.01 * x; },
                    [](double x) { return x > 0 ? 1.0 : 0.01; }, away_from_zero(shape, 27));
}

TEST_CASE("elu(x) = x or alpha (e^x - 1), with slope 1 or alpha e^x", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    const double alpha = GENERATE(1.0, 0.5);
    check_unary([&](auto v) { return ad::elu(v, alpha); }, [&](double x) { return x > 0 ? x : alpha * std::expm1(x); },
                [&](double x) { return x > 0 ? 1.0 : alpha * std::exp(x); }, away_from_zero(shape, 28));
}

TEST_CASE("selu(x) = lambda elu(x, alpha) with lambda = 1.0507009873554805, alpha = 1.6732632423543772", "[ops][elementwise]")
{
    // The self-normalising constants of Klambauer et al. (2017).
    const double lambda = 1.0507009873554804934, alpha = 1.6732632423543772848;
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::selu<double>, [&](double x) { return lambda * (x > 0 ? x : alpha * std::expm1(x)); },
                [&](double x) { return lambda * (x > 0 ? 1.0 : alpha * std::exp(x)); }, away_from_zero(shape, 29));
}

TEST_CASE("softplus(x) = log(1 + e^x) with d = sigmoid(x) g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::softplus<double>, [](double x) { return std::log1p(std::exp(x)); }, sigmoid, randn(shape, 30, 3.0));
}

TEST_CASE("normal_cdf(x) = Phi(x) with d = phi(x) g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::normal_cdf<double>, Phi, phi, randn(shape, 32, 2.0));
}

TEST_CASE("gelu(x) = x Phi(x) with d = (Phi(x) + x phi(x)) g", "[ops][elementwise]")
{
    const Shape shape = GENERATE(from_range(elementwise_shapes()));
    check_unary(ad::gelu<double>, [](double x) { return x * Phi(x); }, [](double x) { return Phi(x) + x * phi(x); },
                randn(shape, 31, 2.0));
}

TEST_CASE("Phi and gelu keep full relative precision in both tails", "[ops][elementwise]")
{
    // 1 + erf(x / sqrt 2) loses about log10(1 / Phi(x)) digits to cancellation (3.5 at x = -3.6,
    // all of them by x = -8.3); erfc loses none. The reference is std::erfc. Phi's condition
    // number in the left tail is about x^2 (x phi(x) / Phi(x)), so rounding x / sqrt 2 alone moves
    // the result by up to x^2 ulps: the tolerance is 8 (1 + x^2) ulps, far below cancellation.
    const Tensor<double> x{-3.6, -5.0, -8.0, -12.0, -20.0, 3.6, 8.0};
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto p = ad::normal_cdf(xv), y = ad::gelu(xv);
    const Tensor<double> dp = ad::grad(ad::sum(p), {xv})[0], dy = ad::grad(ad::sum(y), {xv})[0];
    for (std::size_t i = 0; i < x.size(); ++i) {
        CAPTURE(x(i));
        const double tol = 8 * (1 + x(i) * x(i)) * std::numeric_limits<double>::epsilon();
        CHECK(p.value()(i) == Approx(Phi(x(i))).epsilon(tol));
        CHECK(y.value()(i) == Approx(x(i) * Phi(x(i))).epsilon(tol));
        CHECK(dp(i) == Approx(phi(x(i))).epsilon(tol));
        CHECK(dy(i) == Approx(Phi(x(i)) + x(i) * phi(x(i))).epsilon(tol));
    }
}

TEST_CASE("Phi and gelu in float keep full relative precision in the left tail", "[ops][elementwise]")
{
    // As in double: the reference is std::erfc in double, the tolerance 8 (1 + x^2) float ulps.
    const Tensor<float> x{-3.6f, -5.0f, -8.0f, -12.0f, 3.6f};
    Tape<float> tape;
    const auto xv = tape.variable(x);
    const auto p = ad::normal_cdf(xv), y = ad::gelu(xv);
    const Tensor<float> dy = ad::grad(ad::sum(y), {xv})[0];
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double t = x(i);
        CAPTURE(t);
        const double tol = 8 * (1 + t * t) * std::numeric_limits<float>::epsilon();
        CHECK(p.value()(i) == Approx(Phi(t)).epsilon(tol));
        CHECK(y.value()(i) == Approx(t * Phi(t)).epsilon(tol));
        CHECK(dy(i) == Approx(Phi(t) + t * phi(t)).epsilon(tol));
    }
}

TEST_CASE("gelu(1) = (1 + erf(1 / sqrt 2)) / 2 and gelu(-1) = -(1 - erf(1 / sqrt 2)) / 2", "[ops][elementwise]")
{
    Tape<double> tape;
    const auto y = ad::gelu(tape.constant(Tensor<double>{1.0, -1.0, 0.0}));
    // Vectorised erfc against std::erf: a few ulps apart on any instruction set (1e-15 is 4.5).
    CHECK(y.value()(0) == Approx(0.5 * (1 + std::erf(1 / std::sqrt(2.0)))).epsilon(1e-15));
    CHECK(y.value()(1) == Approx(-0.5 * (1 - std::erf(1 / std::sqrt(2.0)))).epsilon(1e-15));
    CHECK(y.value()(2) == 0.0);
}

// --- the documented choices where an op is not differentiable ---

TEST_CASE("at 0: relu' = 0, abs' = 0, leaky_relu' = alpha, elu' = alpha, selu' = lambda alpha", "[ops][elementwise][kinks]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{0.0});
    const auto d = [&](const Var<double>& y) { return ad::grad(ad::sum(y), {x})[0](0); };
    CHECK(d(ad::relu(x)) == 0.0);
    CHECK(d(ad::abs(x)) == 0.0);
    CHECK(d(ad::leaky_relu(x, 0.25)) == 0.25);
    CHECK(d(ad::elu(x, 0.5)) == 0.5);
    // The same product of the same two doubles, plus exact zeros: a few ulps at most anywhere.
    CHECK(d(ad::selu(x)) == Approx(1.0507009873554804934 * 1.6732632423543772848).epsilon(1e-15));
    CHECK(std::isinf(d(ad::sqrt(x))));  // sqrt'(0) = +inf, as documented
}

TEST_CASE("maximum and minimum split a tie: each input gets g / 2", "[ops][elementwise][kinks]")
{
    Tape<double> tape;
    const auto a = tape.variable(Tensor<double>{1.0, 2.0, 3.0});
    const auto b = tape.variable(Tensor<double>{1.0, 5.0, -3.0});
    const Tensor<double> c{4.0, 8.0, 16.0};
    const auto gmax = ad::vjp(ad::maximum(a, b), c, {a, b});
    CHECK_THAT(gmax[0], Equals({2.0, 0.0, 16.0}));
    CHECK_THAT(gmax[1], Equals({2.0, 8.0, 0.0}));
    const auto gmin = ad::vjp(ad::minimum(a, b), c, {a, b});
    CHECK_THAT(gmin[0], Equals({2.0, 8.0, 0.0}));
    CHECK_THAT(gmin[1], Equals({2.0, 0.0, 16.0}));

    // A tie with a broadcast scalar: the scalar collects half of each tied element's g.
    const auto s = tape.variable(Tensor<double>(2.0));
    const auto gs = ad::vjp(ad::maximum(a, s), c, {a, s});
    CHECK_THAT(gs[0], Equals({0.0, 4.0, 16.0}));
    CHECK(gs[1]() == 4.0 + 4.0);
}

// PyTorch 1.13 (Debian's python3-torch) on the same inputs gives the outputs and gradients below:
//   torch.clamp(x, 0, 2) and torch.maximum/minimum(a, b) with backward(c).
TEST_CASE("a NaN next to ordinary values: clamp, maximum and minimum change only its own element", "[ops][elementwise][nan]")
{
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{nan, -1.0, 3.0, -5.0});
    const auto y = ad::clamp(x, 0.0, 2.0);
    CHECK(std::isnan(y.value()(0)));
    CHECK(y.value()(1) == 0.0);
    CHECK(y.value()(2) == 2.0);
    CHECK(y.value()(3) == 0.0);
    CHECK_THAT(ad::vjp(y, Tensor<double>{1.0, 2.0, 3.0, 4.0}, {x})[0], Equals({0.0, 0.0, 0.0, 0.0}));

    const auto a = tape.variable(Tensor<double>{nan, -1.0, 3.0, 2.0, nan});
    const auto b = tape.variable(Tensor<double>{0.0, nan, 0.0, 2.0, nan});
    const Tensor<double> c{1.0, 2.0, 3.0, 4.0, 5.0};
    const auto hi = ad::maximum(a, b), lo = ad::minimum(a, b);
    for (const std::size_t i : {0, 1, 4}) {
        CHECK(std::isnan(hi.value()(i)));
        CHECK(std::isnan(lo.value()(i)));
    }
    CHECK(hi.value()(2) == 3.0);
    CHECK(hi.value()(3) == 2.0);
    CHECK(lo.value()(2) == 0.0);
    CHECK(lo.value()(3) == 2.0);
    // Where either operand is NaN both receive g; a tie splits it; otherwise the winner takes it.
    const auto ghi = ad::vjp(hi, c, {a, b}), glo = ad::vjp(lo, c, {a, b});
    CHECK_THAT(ghi[0], Equals({1.0, 2.0, 3.0, 2.0, 5.0}));
    CHECK_THAT(ghi[1], Equals({1.0, 2.0, 0.0, 2.0, 5.0}));
    CHECK_THAT(glo[0], Equals({1.0, 2.0, 0.0, 2.0, 5.0}));
    CHECK_THAT(glo[1], Equals({1.0, 2.0, 3.0, 2.0, 5.0}));

    // maximum(x, 0) and minimum(x, 0): the relu-like uses that once returned x unchanged.
    const auto zero = tape.constant(Tensor<double>(0.0));
    const auto mx = ad::maximum(x, zero), mn = ad::minimum(x, zero);
    CHECK(std::isnan(mx.value()(0)));
    CHECK(std::isnan(mn.value()(0)));
    CHECK(mx.value()(1) == 0.0);
    CHECK(mx.value()(2) == 3.0);
    CHECK(mn.value()(2) == 0.0);
    CHECK(mn.value()(3) == -5.0);
}

TEST_CASE("clamp passes the gradient at lo and at hi, boundaries included", "[ops][elementwise][kinks]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{-2.0, -1.0, 0.0, 1.0, 2.0});
    const auto y = ad::clamp(x, -1.0, 1.0);
    CHECK_THAT(y.value(), Equals({-1.0, -1.0, 0.0, 1.0, 1.0}));
    CHECK_THAT(ad::grad(ad::sum(y), {x})[0], Equals({0.0, 1.0, 1.0, 1.0, 0.0}));
}

// A causal mask over attention scores: masked_fill with -inf, then softmax along the last axis.
// Row t weighs positions 0..t equally when the scores are equal (1 / (t + 1) each), and the
// masked positions get weight 0 and no gradient.
TEST_CASE("masked_fill with -inf before softmax is a causal mask: zero weight and zero gradient above the diagonal",
          "[ops][elementwise][where]")
{
    xt::xarray<bool> above = xt::xarray<bool>::from_shape({3, 3});
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) above(i, j) = j > i;
    Tape<double> tape;
    const auto s = tape.variable(Tensor<double>(xt::zeros<double>({2, 3, 3})));
    const auto w = ad::softmax(ad::masked_fill(s, above, -std::numeric_limits<double>::infinity()), -1);
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = 0; j < 3; ++j) CHECK(w.value()(b, i, j) == (j > i ? 0.0 : 1.0 / double(i + 1)));
    const auto g = ad::grad(ad::sum(w * tape.constant(randn({2, 3, 3}, 81))), {s})[0];
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = i + 1; j < 3; ++j) CHECK(g(b, i, j) == 0.0);
}

TEST_CASE("where routes the gradient by the mask: to a where it is true, to b elsewhere, summed to each shape",
          "[ops][elementwise][where]")
{
    const xt::xarray<bool> mask = {{true, false, true}, {false, false, true}};
    Tape<double> tape;
    const auto a = tape.variable(Tensor<double>{1, 2, 3}), b = tape.variable(Tensor<double>{10});
    const auto y = ad::where(mask, a, b);
    CHECK_THAT(y.value(), Equals(Tensor<double>{{1, 10, 3}, {10, 10, 3}}));
    const auto g = ad::grad(ad::sum(y), {a, b});
    CHECK_THAT(g[0], Equals({1, 0, 2}));  // a's column 0 picked once, column 2 twice
    CHECK_THAT(g[1], Equals({3}));        // b picked three times
    const Tensor<double> mask01 = {{1, 0, 1}, {0, 0, 1}};
    CHECK_THAT(ad::where(mask01, a, b).value(), Equals(y.value()));
}

TEST_CASE("where and masked_fill name the shapes that do not broadcast and a 0/1 mask's stray value", "[ops][elementwise][where][errors]")
{
    using Catch::Matchers::Contains;
    Tape<double> tape;
    const auto a = tape.variable(randn({2, 3}, 82)), b = tape.variable(randn({3}, 83));
    const xt::xarray<bool> m4 = xt::xarray<bool>::from_shape({4, 1});
    CHECK_THROWS_AS(ad::where(m4, a, b), ad::Error);
    CHECK_THROWS_WITH(ad::where(m4, a, b), Contains("where (tape position 2): cannot broadcast the mask [4, 1] and [2, 3] and [3]"));
    CHECK_THROWS_WITH(ad::masked_fill(a, m4, 0.0), Contains("masked_fill (tape position 2): cannot broadcast the mask [4, 1] and [2, 3]"));
    const Tensor<double> half = {{1, 0, 0.5}, {0, 1, 1}};
    CHECK_THROWS_AS(ad::where(half, a, b), ad::Error);
    CHECK_THROWS_WITH(ad::where(half, a, b), Contains("where (tape position 2): a mask of numbers must hold 0 or 1, found 0.5") &&
                                                 Contains("position 2 of the mask [2, 3]"));
}
