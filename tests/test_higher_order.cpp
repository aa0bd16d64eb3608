// Derivatives of derivatives: grad with create_graph, hvp, hessian, jvp, jacobian in both
// modes, against closed forms; the ops whose second derivative is exactly zero; and the errors
// for misuse.
#include "gradcheck_helpers.hpp"

#include "autodiff/op.hpp"

#include <xtensor-blas/xlinalg.hpp>

#include <cmath>
#include <limits>

using namespace adtest;
using ad::Tape;
using Catch::Matchers::Contains;

namespace {

// The maximum |a - b| over two tensors of one shape.
double max_diff(const Tensor<double>& a, const Tensor<double>& b)
{
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.flat(i) - b.flat(i)));
    return m;
}

}  // namespace

TEST_CASE("d/dx of d/dx x^3 = 6x, and the third derivative of sin is -cos", "[higher]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{0.5, -1.25, 2.0});
    const auto g = ad::grad(ad::sum(x * x * x), {x}, ad::create_graph)[0];  // 3 x^2
    const auto h = ad::grad(ad::sum(g), {x}, ad::create_graph)[0];         // 6 x
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(g.value().flat(i) == Approx(3 * std::pow(x.value().flat(i), 2)).epsilon(1e-15));
        CHECK(h.value().flat(i) == Approx(6 * x.value().flat(i)).epsilon(1e-15));
    }
    const auto d1 = ad::grad(ad::sum(ad::sin(x)), {x}, ad::create_graph)[0];
    const auto d2 = ad::grad(ad::sum(d1), {x}, ad::create_graph)[0];
    const auto d3 = ad::grad(ad::sum(d2), {x})[0];
    for (std::size_t i = 0; i < 3; ++i) CHECK(d3.flat(i) == Approx(-std::cos(x.value().flat(i))).epsilon(1e-14));
}

TEST_CASE("the Hessian of x^T A x / 2 is (A + A^T) / 2, and hvp is that matrix times v", "[higher]")
{
    const Tensor<double> A = randn({4, 4}, 11), x = randn({4}, 12), v = randn({4}, 13);
    auto f = [&](const Var<double>& x) {
        const auto Av = x.tape().constant(A);
        return ad::sum(x * ad::matmul(Av, x)) * 0.5;
    };
    const Tensor<double> H = ad::hessian(f, x);
    const Tensor<double> expected = 0.5 * (A + xt::transpose(A));
    CHECK(max_diff(H, expected) < 1e-14);
    const Tensor<double> Hv = ad::hvp(f, x, v);
    CHECK(max_diff(Hv, xt::linalg::dot(expected, v)) < 1e-14);
}

TEST_CASE("hvp of a small network agrees with central differences of its gradient", "[higher]")
{
    const Tensor<double> W = randn({3, 4}, 21), x = randn({4}, 22), v = randn({4}, 23);
    auto f = [&](const Var<double>& x) {
        const auto h = ad::tanh(ad::matmul(x.tape().constant(W), x));
        return ad::sum(ad::softplus(h) * h);
    };
    auto gradient = [&](const Tensor<double>& at) {
        Tape<double> tape;
        const auto xv = tape.variable(at);
        return Tensor<double>(ad::grad(f(xv), {xv})[0]);
    };
    const double eps = 1e-6;
    const Tensor<double> numeric = (gradient(x + eps * v) - gradient(x - eps * v)) / (2 * eps);
    CHECK(max_diff(ad::hvp(f, x, v), numeric) < 1e-8);
}

TEST_CASE("jvp gives J v, and jacobian's forward and reverse modes agree", "[higher]")
{
    const Tensor<double> x = randn({3}, 31), v = randn({3}, 32);
    const Tensor<double> W = randn({5, 3}, 33);
    auto wide = [&](const Var<double>& x) { return ad::sin(ad::matmul(x.tape().constant(W), x)); };  // R^3 -> R^5
    const Tensor<double> J = ad::jacobian(wide, x);  // forward mode: 3 columns
    REQUIRE(J.shape() == Shape{5, 3});
    // d sin(W x) / dx = diag(cos(W x)) W. The engine and BLAS may sum (W x)_i in other orders,
    // which differ by up to k eps (|W| |x|)_i (k = 3), and cos passes that on as it is where
    // (W x)_i is near pi/2 (|cos'| <= 1), so the bound has that term beside cos's own 1e-14.
    const Tensor<double> Wx = xt::linalg::dot(W, x);
    const Tensor<double> absWx = xt::linalg::dot(xt::abs(W), xt::abs(x));
    const double eps = std::numeric_limits<double>::epsilon();
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            const double want = std::cos(Wx(i)) * W(i, j);
            CHECK(std::abs(J(i, j) - want) <= std::abs(W(i, j)) * (3 * eps * absWx(i) + 1e-14 * std::abs(std::cos(Wx(i)))));
        }
    const auto [y, Jv] = ad::jvp(wide, x, v);
    CHECK(max_diff(y, xt::sin(Wx)) <= 3 * eps * xt::amax(absWx)() + eps);  // the same bound, |sin'| <= 1
    CHECK(max_diff(Jv, xt::linalg::dot(J, v)) < 1e-14);
    // u -> u W = W^T u maps R^5 to R^3: reverse mode, and its Jacobian is W^T exactly
    auto narrow = [&](const Var<double>& u) { return ad::matmul(u, u.tape().constant(W)); };
    CHECK(max_diff(ad::jacobian(narrow, Tensor<double>(randn({5}, 34))), xt::transpose(W)) == 0);
}

TEST_CASE("seed 003: the Jacobian of [2 x1 + x2, pi x2, -x1 / x2] in forward mode", "[higher][seeds]")
{
    const Tensor<double> x{3.0, 2.0};
    auto f = [](const Var<double>& x) {
        const auto x1 = ad::slice(x, 0, 0, 1), x2 = ad::slice(x, 0, 1, 2);
        return ad::concat({x1 * 2.0 + x2, x2 * M_PI, -(x1 / x2)}, 0);
    };
    const Tensor<double> J = ad::jacobian(f, x);  // 3 outputs, 2 inputs: forward mode
    const Tensor<double> expected{{2.0, 1.0}, {0.0, M_PI}, {-1.0 / 2.0, 3.0 / 4.0}};
    CHECK(max_diff(J, expected) < 1e-15);
}

TEST_CASE("ops whose derivative is a step function have second derivative exactly zero", "[higher]")
{
    using F = std::function<Var<double>(const Var<double>&)>;
    const Tensor<double> x = distinct({7}, 41, 0.05);  // no ties, no zeros
    const std::vector<std::pair<std::string, F>> ops{
        {"relu", [](const Var<double>& x) { return ad::relu(x); }},
        {"leaky_relu", [](const Var<double>& x) { return ad::leaky_relu(x, 0.1); }},
        {"abs", [](const Var<double>& x) { return ad::abs(x); }},
        {"clamp", [](const Var<double>& x) { return ad::clamp(x, -0.2, 0.2); }},
        {"maximum", [](const Var<double>& x) { return ad::maximum(x, ad::slice(x, 0, 1, 2)); }},
        {"minimum", [](const Var<double>& x) { return ad::minimum(x, ad::slice(x, 0, 2, 3)); }},
        {"max", [](const Var<double>& x) { return ad::max(ad::reshape(x * 3.0, {1, 7}), 1); }},
    };
    for (const auto& [name, op] : ops) {
        CAPTURE(name);
        const Tensor<double> H = ad::hessian([&](const Var<double>& x) { return ad::sum(op(x)); }, x);
        CHECK(std::all_of(H.begin(), H.end(), [](double h) { return h == 0.0; }));
    }
}

// relu's differentiable VJP records relu_grad(g, x) = g [x > 0]; with a cotangent that depends on
// x (through tanh), differentiating its gradient twice reaches relu_grad's own VJPs.
TEST_CASE("d/dx tanh(relu x) = (1 - tanh^2 relu x) [x > 0] is checked at second and third order", "[higher]")
{
    const Tensor<double> x = distinct({3, 4}, 43, 0.05);  // no zeros: relu is smooth at every element
    const Tensor<double> c = randn({3, 4}, 44);
    const auto drelu = [&c](const Vars& v) {
        return ad::grad(ad::sum(ad::tanh(ad::relu(v[0])) * v[0].tape().constant(c)), {v[0]}, ad::create_graph)[0];
    };
    require_gradcheck(drelu, {x});
}

TEST_CASE("a gradient penalty: backward through a gradient built with create_graph", "[higher]")
{
    // L(x, w) = |d/dx sum(tanh(w x))|^2, differentiated by backward() into a parameter and by
    // grad() into x, both against central differences of L.
    require_gradcheck(
        [](const Vars& v) {
            const auto gx = ad::grad(ad::sum(ad::tanh(v[0] * v[1])), {v[0]}, ad::create_graph)[0];
            return ad::sum(ad::square(gx));
        },
        {randn({3}, 51), randn({3}, 52)});
    ad::Parameter<double> w(randn({3}, 53));
    Tape<double> tape;
    const auto x = tape.variable(randn({3}, 54));
    const auto gx = ad::grad(ad::sum(ad::tanh(x * tape.param(w))), {x}, ad::create_graph)[0];
    ad::backward(ad::sum(ad::square(gx)));
    // d/dw_i (w_i sech^2(w_i x_i))^2 = 2 s (sech^2 - 2 w x sech^2 tanh) with s = w sech^2(w x)
    for (std::size_t i = 0; i < 3; ++i) {
        const double wi = w.value()(i), xi = x.value()(i), t = std::tanh(wi * xi), s2 = 1 - t * t;
        const double s = wi * s2;
        CHECK(w.grad(i) == Approx(2 * s * (s2 - 2 * wi * xi * s2 * t)).epsilon(1e-12));
    }
}

TEST_CASE("misuse of higher-order sweeps gets errors that say what happened", "[higher][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    const auto y = ad::sum(ad::sin(x));
    SECTION("create_graph inside NoGrad")
    {
        ad::NoGrad off;
        CHECK_THROWS_WITH(ad::grad(y, {x}, ad::create_graph), Contains("create_graph inside NoGrad"));
    }
    SECTION("differentiating a gradient computed without create_graph")
    {
        const auto g = tape.constant(ad::grad(y, {x})[0]);
        CHECK_THROWS_WITH(ad::grad(ad::sum(g), {x}), Contains("depends on nothing that needs a gradient") &&
                                                           Contains("create_graph"));
    }
    SECTION("an op with no differentiable VJP, at second order")
    {
        auto first_order_only = [](const Var<double>& x) {
            ad::Op<double> op("first_order_square", {x});
            xt::noalias(op.out()) = x.value() * x.value();
            return op.done([](ad::Vjp<double>& v) { v.acc(0, 2.0 * v.g * v.x(0)); });
        };
        const auto z = ad::sum(first_order_only(x));
        CHECK(ad::grad(z, {x})[0](1) == 4.0);  // first order works
        CHECK_THROWS_WITH(ad::grad(z, {x}, ad::create_graph),
                          Contains("op 'first_order_square'") && Contains("no differentiable VJP"));
        CHECK_THROWS_WITH(ad::hessian([&](const Var<double>& x) { return ad::sum(first_order_only(x)); },
                                      Tensor<double>{1.0}),
                          Contains("first_order_square"));
    }
}

TEST_CASE("gradgradcheck finds a differentiable VJP that disagrees with the first-order one", "[higher][gradcheck]")
{
    // cube with a graph VJP of 2 x^2 g instead of 3 x^2 g: first order is right, second is not
    auto cube = [](const Var<double>& x) {
        ad::Op<double> op("cube_with_a_slip", {x});
        xt::noalias(op.out()) = x.value() * x.value() * x.value();
        return op.done([](ad::Vjp<double>& v) { v.acc(0, 3.0 * v.g * v.x(0) * v.x(0)); },
                       [](ad::GradVjp<double>& v) { v.acc(0, 2.0 * v.g * v.x(0) * v.x(0)); });
    };
    const std::vector<Tensor<double>> in{randn({4}, 61)};
    CHECK(ad::gradcheck<double>([&](const Vars& v) { return cube(v[0]); }, in).ok);
    const auto res = ad::gradgradcheck<double>([&](const Vars& v) { return cube(v[0]); }, in);
    INFO(res.report());
    CHECK_FALSE(res.ok);
}
