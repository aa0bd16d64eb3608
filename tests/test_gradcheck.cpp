// gradcheck itself: it passes correct gradients and fails wrong ones, naming the input and the
// element; its random cotangent catches a VJP that ignores g; check_gradient finds the wrong
// entry of a hand-written MLP backward pass; and compositions of ops pass as a whole.
#include "gradcheck_helpers.hpp"

#include "autodiff/op.hpp"

#include <cmath>

using namespace adtest;
using ad::Tape;
using Catch::Contains;

namespace {

// y = 3 x with a VJP that slips at flat element 4: 2 g there instead of 3 g.
Var<double> triple_with_a_slip(const Var<double>& x)
{
    ad::Op<double> op("triple_with_a_slip", {x});
    xt::noalias(op.out()) = 3.0 * x.value();
    return op.done([](ad::Vjp<double>& v) {
        Tensor<double> d = 3.0 * v.g;
        d.flat(4) = 2.0 * v.g.flat(4);
        v.acc(0, d);
    });
}

// y = 2 x with a VJP that ignores the cotangent: right only when g is all ones.
Var<double> double_ignoring_g(const Var<double>& x)
{
    ad::Op<double> op("double_ignoring_g", {x});
    xt::noalias(op.out()) = 2.0 * x.value();
    return op.done([](ad::Vjp<double>& v) {
        Tensor<double> d = v.x(0);
        d.fill(2.0);
        v.acc(0, d);
    });
}

// sin with the derivative's sign wrong: d sin(x) taken as -cos(x).
Var<double> sin_with_wrong_sign(const Var<double>& x)
{
    ad::Op<double> op("sin_with_wrong_sign", {x});
    xt::noalias(op.out()) = xt::sin(x.value());
    return op.done([](ad::Vjp<double>& v) { v.acc(0, -v.g * xt::cos(v.x(0))); });
}

}  // namespace

TEST_CASE("gradcheck's defaults are eps = 1e-6, atol = 1e-5, rtol = 1e-3", "[gradcheck]")
{
    const ad::GradcheckOptions o;
    CHECK(o.eps == 1e-6);
    CHECK(o.atol == 1e-5);
    CHECK(o.rtol == 1e-3);
}

TEST_CASE("gradcheck passes a correct gradient and counts every element of every input", "[gradcheck]")
{
    const Tensor<double> a = randn({2, 3}, 1), b = randn({3}, 2);
    const auto res = ad::gradcheck<double>([](const Vars& v) { return ad::sum(ad::tanh(v[0] * v[1])); }, {a, b});
    INFO(res.report());
    CHECK(res.ok);
    CHECK(bool(res));
    CHECK(res.checked == 9);
    CHECK(res.max_abs_error < 1e-8);
    CHECK_THAT(res.report(), Contains("gradcheck passed"));
}

TEST_CASE("gradcheck fails a VJP wrong at one element and names the input, the element and both values", "[gradcheck]")
{
    const Tensor<double> a = randn({2, 3}, 3), b = randn({2, 3}, 4);
    const auto f = [](const Vars& v) { return ad::sum(v[0] * triple_with_a_slip(v[1])); };
    ad::GradcheckOptions named;
    named.names = {"a", "b"};
    const auto res = ad::gradcheck<double>(f, {a, b}, named);
    INFO(res.report());
    CHECK_FALSE(res.ok);
    CHECK_FALSE(bool(res));
    CHECK(res.input == 1);
    CHECK(res.name == "b");
    CHECK(res.element == Shape{1, 1});  // flat element 4 of a [2, 3] tensor
    // d/db_11 sum(a * 3 b) = 3 a_11; the slip claims 2 a_11.
    CHECK(res.analytic == Approx(2 * a(1, 1)).epsilon(1e-12));
    CHECK(res.numeric == Approx(3 * a(1, 1)).epsilon(1e-6));
    CHECK(res.max_abs_error == Approx(std::abs(a(1, 1))).epsilon(1e-6));
    CHECK_THAT(res.report(), Contains("FAILED") && Contains("b element [1, 1]"));

    // Unnamed inputs are reported by position.
    CHECK_THAT(ad::gradcheck<double>(f, {a, b}).report(), Contains("input 1 element [1, 1]"));
}

TEST_CASE("gradcheck fails a derivative with the wrong sign, d sin(x) = -cos(x)", "[gradcheck]")
{
    const Shape shape = GENERATE(Shape{}, Shape{4}, Shape{2, 3});
    const auto res = ad::gradcheck<double>([](const Vars& v) { return sin_with_wrong_sign(v[0]); }, {randn(shape, 5)});
    INFO(res.report());
    CHECK_FALSE(res.ok);
}

TEST_CASE("gradcheck's random cotangent catches a VJP that ignores g, which a cotangent of ones would miss", "[gradcheck]")
{
    const Tensor<double> x = randn({5}, 6);
    // Through sum() the cotangent is all ones, so the mistake is invisible...
    CHECK(ad::gradcheck<double>([](const Vars& v) { return ad::sum(double_ignoring_g(v[0])); }, {x}).ok);
    // ...but a vector output is checked through a random cotangent, and fails.
    const auto res = ad::gradcheck<double>([](const Vars& v) { return double_ignoring_g(v[0]); }, {x});
    INFO(res.report());
    CHECK_FALSE(res.ok);
}

TEST_CASE("gradcheck's tolerances are options: an rtol and atol of 0 fail even a correct gradient", "[gradcheck]")
{
    ad::GradcheckOptions exact;
    exact.atol = 0;
    exact.rtol = 0;
    const auto f = [](const Vars& v) { return ad::sum(ad::exp(v[0])); };
    const Tensor<double> x = randn({6}, 7);
    CHECK(ad::gradcheck<double>(f, {x}).ok);
    CHECK_FALSE(ad::gradcheck<double>(f, {x}, exact).ok);  // differences carry an O(eps^2) error
}

namespace {

// A 2-layer MLP, yhat = W2 tanh(W1 x + b1) + b2 over a batch, with loss L = 1/(2n) sum (yhat - y)^2,
// and its backward pass written by hand (the seed 002 deltas).
struct Mlp {
    Tensor<double> X = randn({4, 2}, 10), Y = randn({4, 1}, 11);  // n = 4 examples
    std::vector<Tensor<double>> params{randn({3, 2}, 12), randn({3}, 13), randn({1, 3}, 14), randn({1}, 15)};

    double loss(const std::vector<Tensor<double>>& p) const
    {
        double L = 0;
        for (std::size_t n = 0; n < 4; ++n) {
            double yhat = p[3](0);
            for (std::size_t j = 0; j < 3; ++j)
                yhat += p[2](0, j) * std::tanh(p[0](j, 0) * X(n, 0) + p[0](j, 1) * X(n, 1) + p[1](j));
            L += (yhat - Y(n, 0)) * (yhat - Y(n, 0)) / 8;
        }
        return L;
    }

    std::vector<Tensor<double>> backward() const
    {
        std::vector<Tensor<double>> g;
        for (const auto& p : params) g.push_back(p * 0.0);
        for (std::size_t n = 0; n < 4; ++n) {
            double h[3], yhat = params[3](0);
            for (std::size_t j = 0; j < 3; ++j) {
                h[j] = std::tanh(params[0](j, 0) * X(n, 0) + params[0](j, 1) * X(n, 1) + params[1](j));
                yhat += params[2](0, j) * h[j];
            }
            const double delta_out = (yhat - Y(n, 0)) / 4;  // dL/dyhat
            g[3](0) += delta_out;
            for (std::size_t j = 0; j < 3; ++j) {
                g[2](0, j) += delta_out * h[j];
                const double delta = delta_out * params[2](0, j) * (1 - h[j] * h[j]);  // dL/dz_j
                g[1](j) += delta;
                g[0](j, 0) += delta * X(n, 0);
                g[0](j, 1) += delta * X(n, 1);
            }
        }
        return g;
    }
};

}  // namespace

TEST_CASE("check_gradient passes a correct hand-written MLP backward pass and names the one wrong entry", "[gradcheck]")
{
    const Mlp mlp;
    ad::GradcheckOptions o;
    o.names = {"W1", "b1", "W2", "b2"};
    const auto L = [&](const std::vector<Tensor<double>>& p) { return mlp.loss(p); };
    const auto right = mlp.backward();
    const auto ok = ad::check_gradient(L, mlp.params, right, o);
    INFO(ok.report());
    CHECK(ok.ok);
    CHECK(ok.checked == 6 + 3 + 3 + 1);

    // The engine agrees with the hand-written pass.
    Tape<double> tape;
    Vars p;
    for (const auto& t : mlp.params) p.push_back(tape.variable(t));
    const auto X = tape.constant(mlp.X), Y = tape.constant(mlp.Y);
    const auto yhat = ad::matmul(ad::tanh(ad::matmul(X, p[0], ad::transpose_b) + p[1]), p[2], ad::transpose_b) + p[3];
    const auto engine = ad::grad(ad::sum(ad::square(yhat - Y)) / 8.0, p);
    for (std::size_t k = 0; k < 4; ++k)
        for (std::size_t i = 0; i < right[k].size(); ++i)
            CHECK(engine[k].flat(i) == Approx(right[k].flat(i)).epsilon(1e-12));

    using Slip = std::pair<std::size_t, Shape>;  // which parameter, which element
    const Slip slip = GENERATE(Slip{0, {2, 1}}, Slip{1, {0}}, Slip{2, {0, 2}}, Slip{3, {0}});
    auto wrong = right;
    wrong[slip.first][slip.second] += 0.05;
    const auto bad = ad::check_gradient(L, mlp.params, wrong, o);
    INFO(bad.report());
    CHECK_FALSE(bad.ok);
    CHECK(bad.input == slip.first);
    CHECK(bad.name == o.names[slip.first]);
    CHECK(bad.element == slip.second);
    CHECK(bad.analytic - bad.numeric == Approx(0.05).epsilon(1e-6));
}

// --- compositions, each checked as a whole ---

TEST_CASE("a two-layer softmax classifier, cross_entropy(relu(x W1^T + b1) W2^T + b2), over every parameter", "[gradcheck][composition]")
{
    const std::vector<std::int64_t> labels{2, 0, 1, 2, 1};
    const Tensor<double> x = randn({5, 4}, 20);
    require_gradcheck(
        [&](const Vars& v) {
            const auto X = v[0].tape().constant(x);
            const auto h = ad::relu(ad::matmul(X, v[0], ad::transpose_b) + v[1]);
            return ad::cross_entropy(ad::matmul(h, v[2], ad::transpose_b) + v[3], labels);
        },
        {randn({6, 4}, 21), away_from_zero({6}, 22), randn({3, 6}, 23), randn({3}, 24)});
}

TEST_CASE("layer norm from primitives, (z - mean z) / sqrt(var z + eps) g + b, along the last axis", "[gradcheck][composition]")
{
    require_gradcheck(
        [](const Vars& v) {
            const auto centred = v[0] - ad::mean(v[0], -1, ad::keepdims);
            const auto var = ad::mean(ad::square(centred), -1, ad::keepdims);
            return centred / ad::sqrt(var + 1e-5) * v[1] + v[2];
        },
        {randn({3, 5}, 25), randn({5}, 26), randn({5}, 27)});
}

TEST_CASE("a residual block z + W2 gelu(W1 z) with dropout, and an attention-like softmax(Q K^T) V", "[gradcheck][composition]")
{
    const Tensor<double> mask{{1, 0, 1}, {1, 1, 0}, {0, 1, 1}, {1, 1, 1}};
    require_gradcheck(
        [&](const Vars& v) {
            const auto branch = ad::matmul(ad::gelu(ad::matmul(v[0], v[1], ad::transpose_b)), v[2], ad::transpose_b);
            return ad::mean(v[0] + ad::dropout(branch, mask, 0.25));
        },
        {randn({4, 3}, 28), randn({5, 3}, 29), randn({3, 5}, 30)});
    require_gradcheck(
        [](const Vars& v) { return ad::matmul(ad::softmax(ad::matmul(v[0], v[1], ad::transpose_b), -1), v[2]); },
        {randn({3, 4}, 31), randn({5, 4}, 32), randn({5, 2}, 33)});
}

TEST_CASE("a loss built from shape ops: logsumexp over a slice, a concat, a gather and a max", "[gradcheck][composition]")
{
    require_gradcheck(
        [](const Vars& v) {
            const auto parts = ad::concat<double>({ad::slice(v[0], 1, 0, 2), ad::gather_rows(v[1], {1, 0, 1})}, 1);
            return ad::sum(ad::logsumexp(parts, 1)) + ad::norm(ad::max(ad::reshape(v[1], {ad::infer, 2}), 1));
        },
        {randn({3, 4}, 34), distinct({2, 3}, 35)});
}
