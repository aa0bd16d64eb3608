// The reverse sweep and what is built on it: backward into parameters, grad, vjp, jacobian, a
// chain 100,000 ops long, adjoints of values used more than once, and sweeping again from a
// second output of the same forward pass.
#include "gradcheck_helpers.hpp"

#include "autodiff/op.hpp"

#include <xtensor/xmath.hpp>

#include <chrono>
#include <cmath>

using Catch::Matchers::Contains;
using namespace adtest;
using ad::Parameter;
using ad::Tape;

namespace {

// y = x with a VJP that counts how often the sweep calls it.
int identity_vjp_calls = 0;
Var<double> counted_identity(const Var<double>& x)
{
    ad::Op<double> op("counted_identity", {x});
    xt::noalias(op.out()) = x.value();
    return op.done([](ad::Vjp<double>& v) {
        ++identity_vjp_calls;
        v.acc(0, v.g);
    });
}

}  // namespace

TEST_CASE("a chain of 100000 ops: x + 1 repeated has gradient 1, x * 1.0001 repeated has gradient 1.0001^100000", "[backward]")
{
    constexpr int n = 100000;
    Tape<double> tape;
    SECTION("x + 1")
    {
        const auto x = tape.variable(Tensor<double>{0.5, -2.0});
        auto y = x;
        for (int i = 0; i < n; ++i) y = y + 1.0;
        CHECK(tape.size() == n + 1);
        CHECK_THAT(y.value(), Equals({0.5 + n, -2.0 + n}));  // exact: integers and halves
        CHECK_THAT(ad::grad(ad::sum(y), {x})[0], Equals({1.0, 1.0}));
    }
    SECTION("x * 1.0001")
    {
        Parameter<double> p(Tensor<double>{1.0, 3.0});
        auto y = tape.param(p);
        for (int i = 0; i < n; ++i) y = y * 1.0001;
        const auto start = std::chrono::steady_clock::now();
        ad::backward(ad::sum(y));
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        CHECK(p.grad(0) == Approx(std::pow(1.0001, n)).epsilon(1e-10));
        CHECK(p.grad(1) == Approx(std::pow(1.0001, n)).epsilon(1e-10));
        CHECK(seconds < 2.0);  // a loop over the records, milliseconds in practice
    }
}

TEST_CASE("each VJP runs once per sweep, after every consumer has added into its adjoint", "[backward]")
{
    // A diamond: u = id(x) feeds both branches of y = sum(u * u + sin(u)).
    Tape<double> tape;
    const Tensor<double> x0{0.3, -1.2, 2.0};
    const auto x = tape.variable(x0);
    const auto u = counted_identity(x);
    const auto y = ad::sum(u * u + ad::sin(u));
    identity_vjp_calls = 0;
    const Tensor<double> g = ad::grad(y, {x})[0];
    CHECK(identity_vjp_calls == 1);
    // the op's vectorised cos against std::cos: a few ulps apart on some instruction sets
    for (std::size_t i = 0; i < 3; ++i) CHECK(g(i) == Approx(2 * x0(i) + std::cos(x0(i))).epsilon(1e-14));

    // An op none of whose inputs needs a gradient has no VJP to call.
    identity_vjp_calls = 0;
    const auto c = counted_identity(tape.constant(x0));
    ad::grad(ad::sum(c * x), {x});
    CHECK(identity_vjp_calls == 0);
}

TEST_CASE("a value used several times adds up its adjoints: d(x x) = 2 x, d(x + x) = 2, d(x x x) = 3 x^2", "[backward]")
{
    Tape<double> tape;
    const Tensor<double> x0{0.5, -1.5, 2.0};
    const auto x = tape.variable(x0);
    CHECK_THAT(ad::grad(ad::sum(x * x), {x})[0], Equals(Tensor<double>(2.0 * x0)));
    CHECK_THAT(ad::grad(ad::sum(x + x), {x})[0], Equals({2.0, 2.0, 2.0}));
    // exact for these dyadic x, in any order of summation
    const Tensor<double> cube = ad::grad(ad::sum(x * x * x), {x})[0];
    for (std::size_t i = 0; i < 3; ++i) CHECK(cube(i) == Approx(3 * x0(i) * x0(i)).epsilon(1e-15));
    // The same through a broadcast: x [3] against itself as a column [3, 1] gives x_i x_j.
    const auto outer = ad::reshape(x, {3, 1}) * x;
    const double s = x0(0) + x0(1) + x0(2);
    const Tensor<double> g = ad::grad(ad::sum(outer), {x})[0];
    for (std::size_t i = 0; i < 3; ++i) CHECK(g(i) == Approx(2 * s).epsilon(1e-15));
}

TEST_CASE("parameter gradients accumulate over backward() calls until zero_grad()", "[backward]")
{
    Tape<double> tape;
    Parameter<double> w(Tensor<double>{1.0, 2.0}), b(Tensor<double>{0.5});
    const Tensor<double> x0{3.0, -1.0};
    const auto loss = ad::sum(tape.param(w) * tape.constant(x0)) + ad::sum(tape.param(b));
    ad::backward(loss);
    CHECK_THAT(w.grad, Equals(x0));
    CHECK_THAT(b.grad, Equals({1.0}));
    ad::backward(loss);  // the same tape swept again
    CHECK_THAT(w.grad, Equals(Tensor<double>(2.0 * x0)));
    CHECK_THAT(b.grad, Equals({2.0}));
    w.zero_grad();
    b.zero_grad();
    CHECK_FALSE(w.has_grad());  // empty, as PyTorch's set_to_none
    CHECK(w.grad.size() == 0);
    ad::backward(loss);  // writes over the buffer that still holds 2 x0
    CHECK_THAT(w.grad, Equals(x0));
    CHECK_THAT(b.grad, Equals({1.0}));
    w.zero_grad(ad::fill_zeros);
    CHECK_THAT(w.grad, Equals({0.0, 0.0}));
    ad::backward(loss);
    CHECK_THAT(w.grad, Equals(x0));
}

TEST_CASE("a parameter has no gradient until a backward() reaches it, and the first contribution writes", "[backward]")
{
    Tape<double> tape;
    Parameter<double> w(Tensor<double>{1.0, 2.0});
    CHECK_FALSE(w.has_grad());
    CHECK(w.grad.size() == 0);
    // Two reads of w: the first contribution writes, the second adds.
    const auto wv = tape.param(w);
    const auto loss = ad::sum(wv * 3.0) + ad::sum(tape.param(w) * wv);  // 3 w + w^2
    ad::backward(loss);
    REQUIRE(w.has_grad());
    CHECK_THAT(w.grad, Equals({5.0, 7.0}));  // 3 + 2 w
    // A gradient assigned by hand counts, and backward() adds into it.
    w.zero_grad();
    w.grad = Tensor<double>{0.5, 0.25};
    REQUIRE(w.has_grad());
    ad::backward(loss);
    CHECK_THAT(w.grad, Equals({5.5, 7.25}));
    // zero_grad() after that drops the assigned tensor; the next backward() writes again.
    w.zero_grad();
    CHECK_FALSE(w.has_grad());
    ad::backward(loss);
    CHECK_THAT(w.grad, Equals({5.0, 7.0}));
}

TEST_CASE("grad(y, inputs) returns dy/dinput for parameters, variables and intermediate values and leaves .grad alone", "[backward]")
{
    Tape<double> tape;
    Parameter<double> W(Tensor<double>{{1.0, 2.0}, {-1.0, 0.5}});
    W.grad = Tensor<double>{{7.0, 7.0}, {7.0, 7.0}};  // as if from an earlier backward()
    const Tensor<double> x0{0.3, -0.4};
    const auto w = tape.param(W);
    const auto x = tape.variable(x0);
    const auto z = ad::matmul(w, x);
    const auto y = ad::sum(ad::square(z));
    const auto g = ad::grad(y, {w, x, z});
    // y = |W x|^2: dy/dz = 2 z, dy/dW = 2 z x^T, dy/dx = 2 W^T z. z = [-0.5, -0.5] exactly, however
    // BLAS sums its two terms, so W^T z is exact too: these hold on every instruction set.
    const Tensor<double> z0 = z.value();
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(g[2](i) == Approx(2 * z0(i)).epsilon(1e-15));
        CHECK(g[1](i) == Approx(2 * (W.value()(0, i) * z0(0) + W.value()(1, i) * z0(1))).epsilon(1e-15));
        for (std::size_t j = 0; j < 2; ++j) CHECK(g[0](i, j) == Approx(2 * z0(i) * x0(j)).epsilon(1e-15));
    }
    CHECK_THAT(W.grad, Equals(Tensor<double>{{7.0, 7.0}, {7.0, 7.0}}));

    // An input the output does not depend on is refused, or gets zeros of its shape if asked.
    const auto unused = tape.variable(Tensor<double>{{1.0, 2.0, 3.0}});
    CHECK_THROWS_WITH(ad::grad(y, {unused}), Contains("not used by the output"));
    CHECK_THAT(ad::grad(y, {unused}, ad::allow_unused)[0], Equals(Tensor<double>{{0.0, 0.0, 0.0}}));
}

TEST_CASE("a value recorded after the output does not reach it: it is unused, even after another sweep reached it", "[backward]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    const auto y1 = ad::sum(x);
    const auto z = x * 2.0;  // recorded after y1
    const auto y2 = ad::sum(z);
    CHECK_THAT(ad::grad(y2, {z})[0], Equals({1.0, 1.0}));
    CHECK_THROWS_WITH(ad::grad(y1, {z, x}), Contains("recorded after the output"));
    CHECK_THAT(ad::grad(y1, {z, x}, ad::allow_unused)[0], Equals({0.0, 0.0}));
    CHECK_THAT(ad::grad(y1, {z, x}, ad::allow_unused)[1], Equals({1.0, 1.0}));

    // The same across clear(): the new, shorter forward pass must not see the old sweep's marks.
    tape.clear();
    const auto u = tape.variable(Tensor<double>{3.0});
    const auto su = ad::sum(u);
    const auto w = tape.variable(Tensor<double>{4.0, 5.0});  // where z was
    CHECK_THAT(ad::grad(su, {w}, ad::allow_unused)[0], Equals({0.0, 0.0}));
}

TEST_CASE("a parameter read twice on one tape gets both contributions: d sum(p p) = 2 p", "[backward]")
{
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{1.5, -0.5});
    ad::backward(ad::sum(tape.param(p) * tape.param(p)));
    CHECK_THAT(p.grad, Equals({3.0, -1.0}));
}

TEST_CASE("vjp(y, c) = c^T J: for y = A x it is A^T c, and backward(y, c) adds the same into parameters", "[backward]")
{
    Tape<double> tape;
    const Tensor<double> A = randn({3, 2}, 1), c{1.0, -2.0, 0.5};
    Parameter<double> x(randn({2}, 2));
    const auto xv = tape.param(x);
    const auto y = ad::matmul(tape.constant(A), xv);
    const Tensor<double> g = ad::vjp(y, c, {xv})[0];
    for (std::size_t j = 0; j < 2; ++j) {
        const double expected = A(0, j) * c(0) + A(1, j) * c(1) + A(2, j) * c(2);
        // BLAS's kernel against this loop: the order of the three terms and the use of FMA differ by
        // instruction set; they barely cancel (|sum of terms| / |sum| < 1.4 here), so a few ulps
        CHECK(g(j) == Approx(expected).epsilon(1e-14));
    }
    CHECK_FALSE(x.has_grad());  // vjp leaves .grad alone
    ad::backward(y, c);
    CHECK_THAT(x.grad, Equals(g));
}

TEST_CASE("backward from a parameter itself adds the cotangent to its gradient, as dp/dp = I", "[backward]")
{
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{1.0, 2.0, 3.0});
    const auto pv = tape.param(p);
    ad::backward(pv, Tensor<double>{0.5, -1.0, 2.0});
    CHECK_THAT(p.grad, Equals({0.5, -1.0, 2.0}));
    Parameter<double> s(Tensor<double>(4.0));
    ad::backward(tape.param(s));
    CHECK_THAT(s.grad, Equals(Tensor<double>(1.0)));
}

TEST_CASE("backward from several outputs adds each cotangent^T J into .grad in one sweep", "[backward]")
{
    // y1 = p p, y2 = sum(3 y1), y3 = p: d/dp = 2 p (c1 + 3 c2) + c3, y1 reached both as an output
    // and through y2. Dyadic values: the sums are exact.
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{1.0, -2.0, 0.5});
    const auto pv = tape.param(p);
    const auto y1 = pv * pv, y2 = ad::sum(y1 * 3.0);
    const Tensor<double> c1{0.5, 1.0, -1.0}, c2(2.0), c3{0.25, 0.25, 0.25};
    ad::backward<double>({y1, y2, pv}, {c1, c2, c3});
    CHECK_THAT(p.grad, Equals({13.25, -27.75, 5.25}));
    p.zero_grad();
    ad::backward<double>({y1, y1}, {c1, c1});  // an output given twice gets both cotangents
    CHECK_THAT(p.grad, Equals({2.0, -8.0, -2.0}));
}

TEST_CASE("backward(g, v) after g = grad(loss, params, create_graph) is the Hessian-vector product", "[backward][higher]")
{
    // loss = |W x + b|^2 / 2: g = (r x^T, r) with r = W x + b, and H (V, u) = ((V x + u) x^T, V x + u).
    Tape<double> tape;
    Parameter<double> W(Tensor<double>{{1.0, 2.0, -1.0}, {0.5, 0.0, 3.0}}), b(Tensor<double>{0.25, -1.0});
    const auto x = tape.constant(Tensor<double>{1.0, -2.0, 0.5});
    const auto r = ad::matmul(tape.param(W), x) + tape.param(b);
    const auto loss = ad::sum(ad::square(r)) * 0.5;
    const auto g = ad::grad(loss, std::vector<Parameter<double>*>{&W, &b}, ad::create_graph);
    const Tensor<double> V{{1.0, 0.0, 2.0}, {-1.0, 1.0, 0.5}}, u{0.5, -1.0};
    ad::backward<double>(g, {V, u});  // V x + u = [2.5, -3.75]; integers and halves: exact
    CHECK_THAT(W.grad, Equals(Tensor<double>{{2.5, -5.0, 1.25}, {-3.75, 7.5, -1.875}}));
    CHECK_THAT(b.grad, Equals({2.5, -3.75}));
}

TEST_CASE("vjp from several outputs is the sum of their VJPs for each input, and leaves .grad alone", "[backward]")
{
    // y1 = x p, y2 = sum(x x): d/dx = c1 p + 2 c2 x, d/dp = c1 x; z is not used by either.
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{0.5, -1.0});
    const auto x = tape.variable(Tensor<double>{2.0, 3.0}), z = tape.variable(Tensor<double>{1.0});
    const auto pv = tape.param(p);
    const auto y1 = x * pv, y2 = ad::sum(x * x);
    const Tensor<double> c1{1.0, -2.0}, c2(0.25);
    const auto g = ad::vjp<double>({y1, y2}, {c1, c2}, {x, pv});
    CHECK_THAT(g[0], Equals({1.5, 3.5}));  // [0.5 + 1, 2 + 1.5]
    CHECK_THAT(g[1], Equals({2.0, -6.0}));
    CHECK_FALSE(p.has_grad());
    CHECK_THROWS_WITH(ad::vjp<double>({y1, y2}, {c1, c2}, {z}), Contains("is not used by the output"));
    CHECK_THAT(ad::vjp<double>({y1, y2}, {c1, c2}, {z}, ad::allow_unused)[0], Equals({0.0}));
    CHECK_THROWS_WITH(ad::vjp<double>({y1, y2}, {c1, c1}, {x}),
                      Contains("vjp: output 1 has shape [] but its cotangent has shape [2]"));
}

TEST_CASE("backward from several outputs refuses what it cannot seed, naming the output, and leaves .grad alone",
          "[backward][errors]")
{
    Tape<double> tape, other;
    Parameter<double> p(Tensor<double>{1.0, 2.0, 3.0});
    p.grad = Tensor<double>{0.5, 0.5, 0.5};
    const auto y = tape.param(p) * 2.0;
    const Tensor<double> c{1.0, 1.0, 1.0};
    using Vars = std::vector<Var<double>>;
    using Tensors = std::vector<Tensor<double>>;
    CHECK_THROWS_WITH(ad::backward(Vars{}, Tensors{}), Contains("no outputs given"));
    CHECK_THROWS_WITH(ad::backward(Vars{y, y}, Tensors{c}), Contains("2 outputs but 1 cotangents"));
    CHECK_THROWS_WITH(ad::backward(Vars{y, ad::sum(y)}, Tensors{c, c}),
                      Contains("output 1 has shape [] but its cotangent has shape [3]"));
    CHECK_THROWS_WITH(ad::backward(Vars{y, other.variable(c)}, Tensors{c, c}),
                      Contains("output 1 was recorded on another tape than output 0"));
    CHECK_THROWS_WITH(ad::backward(Vars{y, tape.constant(c)}, Tensors{c, c}),
                      Contains("output 1") && Contains("depends on nothing that needs a gradient"));
    CHECK_THAT(p.grad, Equals({0.5, 0.5, 0.5}));
}

TEST_CASE("backward from an output no parameter reaches changes nothing", "[backward]")
{
    // p is on the tape, read by one output and passed over by the sweep from the other, which is
    // recorded after it: that sweep must leave p.grad alone, the other must add into it.
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{1.0, -2.0});
    p.grad = Tensor<double>{0.25, 0.5};  // as if from an earlier backward()
    const auto dependent = ad::sum(tape.param(p) * 3.0);
    const auto unrelated = ad::sum(ad::exp(tape.variable(Tensor<double>{1.0, 2.0})));
    REQUIRE_NOTHROW(ad::backward(unrelated));
    CHECK_THAT(p.grad, Equals({0.25, 0.5}));
    // an output built from constants alone needs no gradient: refused, as grad() refuses it
    CHECK_THROWS_WITH(ad::backward(ad::sum(ad::exp(tape.constant(Tensor<double>{1.0})))),
                      Contains("depends on nothing that needs a gradient"));
    CHECK_THAT(p.grad, Equals({0.25, 0.5}));
    ad::backward(dependent);
    CHECK_THAT(p.grad, Equals({3.25, 3.5}));  // exact: dyadic sums
    // again after a sweep that reached p: nothing of that sweep is added a second time
    REQUIRE_NOTHROW(ad::backward(unrelated));
    CHECK_THAT(p.grad, Equals({3.25, 3.5}));
}

TEST_CASE("jacobian(f, x) of f: R^3 -> R^2 is the 2 x 3 matrix of VJP rows", "[backward]")
{
    // f(x) = [x0 x1, sin(x2)]: J = [[x1, x0, 0], [0, 0, cos(x2)]]
    const Tensor<double> x{0.7, -1.3, 0.4};
    auto f = [](const Var<double>& v) {
        return ad::concat<double>({ad::slice(v, 0, 0, 1) * ad::slice(v, 0, 1, 2), ad::sin(ad::slice(v, 0, 2, 3))}, 0);
    };
    const Tensor<double> J = ad::jacobian<double>(f, x);
    REQUIRE(J.shape() == Shape{2, 3});
    const Tensor<double> expected{{x(1), x(0), 0.0}, {0.0, 0.0, std::cos(x(2))}};
    // cos: the op's vectorised one against std::cos, a few ulps apart on some instruction sets
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j) CHECK(J(i, j) == Approx(expected(i, j)).epsilon(1e-14));
}

TEST_CASE("jacobian of an elementwise map on a matrix has shape out x in and is diagonal", "[backward]")
{
    // f(X) = X^2 elementwise: dF_ij / dX_kl = 2 X_ij when (i, j) = (k, l), else 0.
    const Tensor<double> X{{1.0, -2.0, 0.5}, {3.0, 0.25, -1.0}};
    const Tensor<double> J = ad::jacobian<double>([](const Var<double>& v) { return ad::square(v); }, X);
    REQUIRE(J.shape() == Shape{2, 3, 2, 3});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t k = 0; k < 2; ++k)
                for (std::size_t l = 0; l < 3; ++l) CHECK(J(i, j, k, l) == (i == k && j == l ? 2 * X(i, j) : 0.0));
    // A scalar function's Jacobian has the input's shape: the gradient.
    const Tensor<double> G = ad::jacobian<double>([](const Var<double>& v) { return ad::sum(ad::square(v)); }, X);
    CHECK_THAT(G, Equals(Tensor<double>(2.0 * X)));
}

TEST_CASE("a second output of the same forward pass is swept without running the forward again", "[backward]")
{
    const Tensor<double> W0 = randn({3, 4}, 3), x0 = randn({4}, 4);
    // One forward pass, two outputs: y1 = sum(h), y2 = sum(h^2), h = tanh(W x).
    Tape<double> tape;
    Parameter<double> W(W0);
    const auto h = ad::tanh(ad::matmul(tape.param(W), tape.constant(x0)));
    const auto y1 = ad::sum(h);
    const auto y2 = ad::sum(ad::square(h));
    const std::size_t recorded = tape.size();
    ad::backward(y1);
    const Tensor<double> dW1 = W.grad;
    W.zero_grad();
    ad::backward(y2);
    const Tensor<double> dW2 = W.grad;
    CHECK(tape.size() == recorded);

    // Each against a forward pass of its own.
    for (int which : {1, 2}) {
        Tape<double> fresh;
        Parameter<double> V(W0);
        const auto k = ad::tanh(ad::matmul(fresh.param(V), fresh.constant(x0)));
        ad::backward(which == 1 ? ad::sum(k) : ad::sum(ad::square(k)));
        CHECK_THAT(which == 1 ? dW1 : dW2, Equals(V.grad));  // same computation on a fresh tape
    }
    // grad from either output, in either order, gives the same again.
    CHECK_THAT(ad::grad(y2, {h})[0], Equals(Tensor<double>(2.0 * h.value())));
    CHECK_THAT(ad::grad(y1, {h})[0], Equals({1.0, 1.0, 1.0}));
}

namespace {

// Calls backward(y, hook) and returns the parameters in the order the hook reported them, each
// with a copy of its .grad at the moment it was reported.
std::vector<std::pair<const Parameter<double>*, Tensor<double>>> reported(const Var<double>& y)
{
    std::vector<std::pair<const Parameter<double>*, Tensor<double>>> out;
    const std::function<void(Parameter<double>&)> hook = [&](Parameter<double>& p) { out.emplace_back(&p, p.grad); };
    ad::backward(y, hook);
    return out;
}

}  // namespace

TEST_CASE("the grad-ready hook reports each parameter once, last layer first, with its final gradient", "[backward][grad_ready]")
{
    // y = sum(W2 tanh(W1 x + b1)): W2's gradient is final before the sweep reaches W1 and b1.
    Tape<double> tape;
    Parameter<double> W1(randn({3, 2}, 1)), b1(randn({3}, 2)), W2(randn({1, 3}, 3));
    const Tensor<double> x0{0.4, -0.7};
    // One statement per record, so the tape order is the order written here.
    const auto w1 = tape.param(W1);
    const auto z = ad::matmul(w1, tape.constant(x0));
    const auto bias = tape.param(b1);
    const auto h = ad::tanh(z + bias);
    const auto w2 = tape.param(W2);
    const auto y = ad::sum(ad::matmul(w2, h));
    const auto got = reported(y);
    REQUIRE(got.size() == 3);
    CHECK(got[0].first == &W2);
    // W1 and b1: b1 was recorded after W1, so the sweep passes it first.
    CHECK(got[1].first == &b1);
    CHECK(got[2].first == &W1);
    // The gradient at report time is the whole gradient, by hand: dy/dW2 = h^T,
    // dy/db1 = W2^T (.) (1 - h^2), dy/dW1 = dy/db1 x^T.
    const Tensor<double> hv = h.value();
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(got[0].second(0, i) == Approx(hv(i)).epsilon(1e-15));
        const double d = W2.value()(0, i) * (1 - hv(i) * hv(i));
        CHECK(got[1].second(i) == Approx(d).epsilon(1e-15));
        for (std::size_t j = 0; j < 2; ++j) CHECK(got[2].second(i, j) == Approx(d * x0(j)).epsilon(1e-15));
    }
    // Nothing was added after the report.
    CHECK_THAT(W2.grad, Equals(got[0].second));
    CHECK_THAT(b1.grad, Equals(got[1].second));
    CHECK_THAT(W1.grad, Equals(got[2].second));
}

TEST_CASE("the grad-ready hook waits for every read of a parameter recorded twice: d sum(p (p + 1)) = 2 p + 1", "[backward][grad_ready]")
{
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{1.5, -0.5}), q(Tensor<double>{2.0, 3.0});
    const auto first = tape.param(p);
    const auto u = ad::exp(tape.param(q));  // q between the two reads of p
    const auto second = tape.param(p);
    const auto prod = ad::sum(first * (second + 1.0));
    const auto y = prod + ad::sum(u);
    const auto got = reported(y);
    REQUIRE(got.size() == 2);
    CHECK(got[0].first == &q);
    CHECK(got[1].first == &p);
    CHECK_THAT(got[1].second, Equals({4.0, 0.0}));
    // the op's vectorised exp against std::exp
    CHECK(got[0].second(0) == Approx(std::exp(2.0)).epsilon(1e-14));
    CHECK(got[0].second(1) == Approx(std::exp(3.0)).epsilon(1e-14));
}

TEST_CASE("the grad-ready hook skips parameters the output does not depend on and leaves their gradient alone", "[backward][grad_ready]")
{
    Tape<double> tape;
    Parameter<double> used(Tensor<double>{1.0, 2.0}), unused(Tensor<double>{3.0}), after(Tensor<double>{4.0}),
        frozen(Tensor<double>{5.0});
    const auto u = tape.param(unused);                   // recorded, never read by the output
    const auto z = ad::sum(tape.param(used) * 3.0);  // the only read of `used`
    Var<double> f;
    {
        ad::NoGrad no_grad;
        f = ad::sum(tape.param(frozen));                 // read under NoGrad: no gradient
    }
    const auto y = z + f;
    const auto a = tape.param(after);                    // recorded after the output
    const auto later = ad::sum(a * y);
    (void)u;
    (void)later;
    const auto got = reported(y);
    REQUIRE(got.size() == 1);
    CHECK(got[0].first == &used);
    CHECK_THAT(used.grad, Equals({3.0, 3.0}));
    CHECK_FALSE(unused.has_grad());
    CHECK_FALSE(after.has_grad());
    CHECK_FALSE(frozen.has_grad());
}

TEST_CASE("the grad-ready hook reports a parameter that is the output itself, and nothing when no parameter is reached", "[backward][grad_ready]")
{
    Tape<double> tape;
    Parameter<double> s(Tensor<double>(4.0));
    const auto got = reported(tape.param(s));
    REQUIRE(got.size() == 1);
    CHECK(got[0].first == &s);
    CHECK_THAT(got[0].second, Equals(Tensor<double>(1.0)));

    const auto none = reported(ad::sum(ad::exp(tape.variable(Tensor<double>{1.0, 2.0}))));
    CHECK(none.empty());
}

TEST_CASE("backward with a grad-ready hook gives the gradients backward without one gives", "[backward][grad_ready]")
{
    Tape<double> tape;
    Parameter<double> W(randn({4, 3}, 7)), b(randn({4}, 8));
    const auto y = ad::sum(ad::square(ad::tanh(ad::matmul(tape.param(W), tape.constant(randn({3, 5}, 9))) +
                                              ad::reshape(tape.param(b), {4, 1}))));
    ad::backward(y);
    const Tensor<double> gW = W.grad, gb = b.grad;
    W.zero_grad();
    b.zero_grad();
    int calls = 0;
    ad::backward<double>(y, [&](Parameter<double>&) { ++calls; });
    CHECK(calls == 2);
    // same computation: the hook changes when parameters are reported, not what is summed
    CHECK_THAT(W.grad, Equals(gW));
    CHECK_THAT(b.grad, Equals(gb));
}

TEST_CASE("backward from a cotangent with a grad-ready hook: c^T J, each parameter reported once with its final gradient", "[backward][grad_ready]")
{
    // h = tanh(W x + b), cotangent c: dW = (c (.) (1 - h^2)) x^T, db = c (.) (1 - h^2).
    Tape<double> tape;
    Parameter<double> W(randn({3, 2}, 11)), b(randn({3}, 12));
    const Tensor<double> x0{0.3, -1.1}, c{0.5, -2.0, 0.25};
    const auto z = ad::matmul(tape.param(W), tape.constant(x0));  // one statement per record:
    const auto bias = tape.param(b);                                // b is recorded after W
    const auto h = ad::tanh(z + bias);
    std::vector<std::pair<const Parameter<double>*, Tensor<double>>> got;
    ad::backward<double>(h, c, [&](Parameter<double>& p) { got.emplace_back(&p, p.grad); });
    REQUIRE(got.size() == 2);
    CHECK(got[0].first == &b);  // the sweep passes the later record first
    CHECK(got[1].first == &W);
    const Tensor<double> hv = h.value();
    for (std::size_t i = 0; i < 3; ++i) {
        const double d = c(i) * (1 - hv(i) * hv(i));
        CHECK(b.grad(i) == Approx(d).epsilon(1e-15));
        for (std::size_t j = 0; j < 2; ++j) CHECK(W.grad(i, j) == Approx(d * x0(j)).epsilon(1e-15));
    }
    CHECK_THAT(b.grad, Equals(got[0].second));
    CHECK_THAT(W.grad, Equals(got[1].second));
    // the same sums as without the hook
    const Tensor<double> gW = W.grad, gb = b.grad;
    W.zero_grad();
    b.zero_grad();
    ad::backward(h, c);
    CHECK_THAT(W.grad, Equals(gW));
    CHECK_THAT(b.grad, Equals(gb));
    // a cotangent of another shape is refused, and no gradient changes
    CHECK_THROWS_WITH(ad::backward<double>(h, Tensor<double>{1.0, 2.0}, [](Parameter<double>&) {}),
                      Contains("cotangent has shape [2]") && Contains("[3]"));
    CHECK_THAT(W.grad, Equals(gW));
}
