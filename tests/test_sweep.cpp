// The reverse sweep's safety: a sweep started inside another on the same tape, the checks on what
// a VJP adds and reads, ops that throw half-recorded, unused inputs and outputs that need no
// gradient, the functional API under NoGrad, and .grad left as it was when a sweep throws.
#include "gradcheck_helpers.hpp"

#include "autodiff/op.hpp"

#include <xtensor/xmath.hpp>

#include <cmath>
#include <memory>
#include <stdexcept>

using namespace adtest;
using ad::Parameter;
using ad::Tape;
using Catch::Matchers::Contains;

namespace {

// A two-layer net with a closed-form gradient: z = W2 tanh(W1 x + b1), loss = sum(z^2).
struct TwoLayer {
    Parameter<double> W1{randn({4, 3}, 1)}, b1{randn({4}, 2)}, W2{randn({2, 4}, 3)};
    Tensor<double> x = randn({3}, 4);
    Tensor<double> dW1, db1, dW2;  // by hand

    TwoLayer()
    {
        auto h = Tensor<double>::from_shape({4});
        auto z = Tensor<double>::from_shape({2});
        for (std::size_t i = 0; i < 4; ++i) {
            double a = b1.value()(i);
            for (std::size_t j = 0; j < 3; ++j) a += W1.value()(i, j) * x(j);
            h(i) = std::tanh(a);
        }
        for (std::size_t k = 0; k < 2; ++k) {
            z(k) = 0;
            for (std::size_t i = 0; i < 4; ++i) z(k) += W2.value()(k, i) * h(i);
        }
        dW2 = Tensor<double>::from_shape({2, 4});
        dW1 = Tensor<double>::from_shape({4, 3});
        db1 = Tensor<double>::from_shape({4});
        for (std::size_t k = 0; k < 2; ++k)
            for (std::size_t i = 0; i < 4; ++i) dW2(k, i) = 2 * z(k) * h(i);
        for (std::size_t i = 0; i < 4; ++i) {
            double dh = 0;
            for (std::size_t k = 0; k < 2; ++k) dh += W2.value()(k, i) * 2 * z(k);
            const double da = dh * (1 - h(i) * h(i));
            db1(i) = da;
            for (std::size_t j = 0; j < 3; ++j) dW1(i, j) = da * x(j);
        }
    }
    // W2 is read after the hidden layer, so its leaf comes late and its hook fires mid-sweep,
    // while the hidden layer's adjoints are still to be read.
    Var<double> loss(Tape<double>& tape)
    {
        const auto h = ad::tanh(ad::matmul(tape.param(W1), tape.constant(x)) + tape.param(b1));
        return ad::sum(ad::square(ad::matmul(tape.param(W2), h)));
    }
    void check() const
    {
        for (std::size_t i = 0; i < W1.grad.size(); ++i) CHECK(W1.grad.flat(i) == Approx(dW1.flat(i)).epsilon(1e-12));
        for (std::size_t i = 0; i < b1.grad.size(); ++i) CHECK(b1.grad.flat(i) == Approx(db1.flat(i)).epsilon(1e-12));
        for (std::size_t i = 0; i < W2.grad.size(); ++i) CHECK(W2.grad.flat(i) == Approx(dW2.flat(i)).epsilon(1e-12));
    }
};

// y = x^2, whose VJP finds 2x by a sweep of its own on the same tape: d sum(t t)/dt at t = x.
Var<double> square_by_inner_grad(const Var<double>& x)
{
    ad::Op<double> op("square_by_inner_grad", {x});
    ad::assign(op.out(), x.value() * x.value());
    return op.done([](ad::Vjp<double>& v) {
        const auto t = v.tape.variable(v.x(0));
        const Tensor<double> two_x = ad::grad(ad::sum(t * t), {t})[0];
        v.acc(0, v.g * two_x);
    });
}

// The identity whose VJP adds a gradient of a given shape into input k.
Var<double> adds_shape(const Var<double>& x, Shape shape, std::size_t k)
{
    ad::Op<double> op("adds_shape", {x});
    ad::assign(op.out(), x.value());
    auto f = [shape, k](ad::Vjp<double>& v) { v.acc(k, Tensor<double>(xt::ones<double>(shape))); };
    auto g = [shape, k](ad::GradVjp<double>& v) { v.acc(k, v.constant(Tensor<double>(xt::ones<double>(shape)))); };
    return op.done(f, g);
}

// The identity that saves `n` tensors and whose VJP reads saved tensor `k`.
Var<double> saves(const Var<double>& x, std::size_t n, std::size_t k)
{
    ad::Op<double> op("saves", {x});
    ad::assign(op.out(), x.value());
    for (std::size_t j = 0; j < n; ++j) ad::assign(op.save(j), x.value() * double(j + 1));
    auto vjp = [k](auto& v) { v.acc(0, v.g * v.saved(k)); };
    return op.done(vjp, vjp);
}

// 2 x, recording a nested op (x + 1) in its forward, then throwing.
Var<double> records_then_throws(const Var<double>& x, Var<double>& nested)
{
    ad::Op<double> op("records_then_throws", {x});
    nested = x + 1.0;
    ad::assign(op.out(), 2.0 * x.value());
    throw ad::Error("records_then_throws: asked to fail");
}

// The identity whose VJP throws.
Var<double> throws_in_vjp(const Var<double>& x)
{
    ad::Op<double> op("throws_in_vjp", {x});
    ad::assign(op.out(), x.value());
    return op.done([](ad::Vjp<double>&) { throw std::runtime_error("throws_in_vjp: asked to fail"); });
}

}  // namespace

TEST_CASE("a grad-ready hook that calls ad::grad on the same tape leaves the outer sweep's gradients exact",
          "[sweep][grad_ready]")
{
    TwoLayer net;
    Tape<double> tape;
    const auto loss = net.loss(tape);
    const Tensor<double> x0{0.3, -1.1};
    const auto xv = tape.variable(x0);
    const auto aux = ad::sum(ad::sin(xv));  // another output of the same tape
    int calls = 0;
    ad::backward<double>(loss, [&](Parameter<double>&) {
        const auto g = ad::grad(aux, {xv})[0];  // a whole sweep of its own, mid-way through the outer
        CHECK(g(0) == Approx(std::cos(0.3)).epsilon(1e-14));
        CHECK(g(1) == Approx(std::cos(-1.1)).epsilon(1e-14));
        ++calls;
    });
    CHECK(calls == 3);
    net.check();
}

TEST_CASE("a VJP that calls ad::grad on the same tape gives the gradient of the plain formula", "[sweep]")
{
    // y = sum(tanh(x)^2 exp(x)): dy/dx = 2 tanh(x) (1 - tanh(x)^2) exp(x) + tanh(x)^2 exp(x)
    const Tensor<double> x0{0.4, -0.7, 1.3};
    auto expected = [&](std::size_t i) {
        const double t = std::tanh(x0(i)), e = std::exp(x0(i));
        return 2 * t * (1 - t * t) * e + t * t * e;
    };
    Tape<double> tape;
    const auto x = tape.variable(x0);
    const auto y = ad::sum(square_by_inner_grad(ad::tanh(x)) * ad::exp(x));
    const auto g = ad::grad(y, {x})[0];
    for (std::size_t i = 0; i < 3; ++i) CHECK(g(i) == Approx(expected(i)).epsilon(1e-13));

    // and into a parameter, through backward()
    Tape<double> t2;
    Parameter<double> p(x0);
    const auto pv = t2.param(p);
    ad::backward(ad::sum(square_by_inner_grad(ad::tanh(pv)) * ad::exp(pv)));
    for (std::size_t i = 0; i < 3; ++i) CHECK(p.grad(i) == Approx(expected(i)).epsilon(1e-13));
}

TEST_CASE("a VJP that adds a gradient of the wrong shape is refused by name on both paths", "[sweep][op][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    const auto wrong = adds_shape(x, {3}, 0);
    CHECK_THROWS_AS(ad::grad(ad::sum(wrong), {x}), ad::Error);
    CHECK_THROWS_WITH(ad::grad(ad::sum(wrong), {x}),
                      Contains("adds_shape (tape position 1)") && Contains("gradient of shape [3]") &&
                          Contains("input 0 of shape [2]") && Contains("op 'variable' at tape position 0"));
    CHECK_THROWS_WITH(ad::grad(ad::sum(wrong), {x}, ad::create_graph),
                      Contains("adds_shape (tape position 1)") && Contains("gradient of shape [3]") &&
                          Contains("input 0 of shape [2]"));
    // an empty input: a gradient of another shape must not be summed into no memory at all
    const auto empty = tape.variable(Tensor<double>::from_shape({0}));
    CHECK_THROWS_WITH(ad::grad(ad::sum(adds_shape(empty, {3}, 0)), {empty}),
                      Contains("gradient of shape [3]") && Contains("input 0 of shape [0]"));
    // a gradient that broadcasts to the input is summed back: d sum(x) with a [2, 2] contribution
    const auto g = ad::grad(ad::sum(adds_shape(x, {2, 2}, 0)), {x})[0];
    CHECK_THAT(g, Equals({2.0, 2.0}));
}

TEST_CASE("a VJP that adds into an input its op does not have is refused on both paths", "[sweep][op][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    const auto other = tape.variable(Tensor<double>{5.0, 6.0});  // the record a stray index might hit
    const auto y = ad::sum(adds_shape(x, {2}, 1) + other);
    CHECK_THROWS_WITH(ad::grad(y, {x, other}),
                      Contains("adds_shape (tape position 2)") && Contains("refers to input 1") &&
                          Contains("has 1 input"));
    CHECK_THROWS_WITH(ad::grad(y, {x, other}, ad::create_graph),
                      Contains("adds_shape (tape position 2)") && Contains("refers to input 1"));
}

TEST_CASE("a VJP reads only what its own record saved this step", "[sweep][op][errors]")
{
    Tape<double> tape;
    auto x = tape.variable(Tensor<double>{1.0, 2.0});
    CHECK_THAT(ad::grad(ad::sum(saves(x, 2, 1)), {x})[0], Equals({2.0, 4.0}));  // saved(1) = 2 x
    tape.clear();
    x = tape.variable(Tensor<double>{1.0, 2.0});
    // the same record position reuses the entry of the step before, which saved two tensors
    CHECK_THROWS_WITH(ad::grad(ad::sum(saves(x, 1, 1)), {x}),
                      Contains("saves") && Contains("saved tensor 1") && Contains("saved 1 tensors"));
    CHECK_THROWS_WITH(ad::grad(ad::sum(saves(x, 1, 1)), {x}, ad::create_graph), Contains("saved tensor 1"));
    CHECK_THAT(ad::grad(ad::sum(saves(x, 1, 0)), {x})[0], Equals({1.0, 2.0}));
}

TEST_CASE("an op that records a nested op and then throws removes only itself: the nested handle stays its own",
          "[sweep][op]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    Var<double> nested;
    CHECK_THROWS_WITH(records_then_throws(x, nested), Contains("asked to fail"));
    REQUIRE(nested.valid());
    const auto after = x * 10.0;  // the next op must not take the nested op's place
    CHECK_THAT(nested.value(), Equals({2.0, 3.0}));
    CHECK_THAT(after.value(), Equals({10.0, 20.0}));
    CHECK_THAT(ad::grad(ad::sum(nested * after), {x})[0], Equals({30.0, 50.0}));  // d sum(10 x^2 + 10 x)
}

TEST_CASE("a handle is valid only after its op's done(): one taken before is refused", "[sweep][op][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0});
    {
        ad::Op<double> op("unfinished", {x});
        ad::assign(op.out(), x.value());
        CHECK_THROWS_WITH(tape.handle(op.index()), Contains("unfinished") && Contains("done()"));
    }  // never done: removed
    CHECK(tape.size() == 1);
    const auto next = x * 3.0;
    CHECK(next.index() == 1);
    CHECK_THAT(next.value(), Equals({3.0}));
}

TEST_CASE("jacobian, hvp, hessian and jvp record inside NoGrad", "[sweep][nograd]")
{
    // f(x) = sum(x^3): gradient 3 x^2, Hessian diag(6 x)
    const Tensor<double> x{1.0, -2.0};
    const Tensor<double> v{0.5, 1.0};
    auto f = [](const Var<double>& t) { return ad::sum(t * t * t); };
    auto cube = [](const Var<double>& t) { return t * t * t; };
    const ad::NoGrad off;
    const auto H = ad::hessian<double>(f, x);
    CHECK_THAT(H, Equals(Tensor<double>{{6.0, 0.0}, {0.0, -12.0}}));
    CHECK_THAT(ad::hvp<double>(f, x, v), Equals({3.0, -12.0}));
    CHECK_THAT(ad::jacobian<double>(cube, x), Equals(Tensor<double>{{3.0, 0.0}, {0.0, 12.0}}));
    CHECK_THAT(ad::jvp<double>(cube, x, v).second, Equals({1.5, 12.0}));
    CHECK_FALSE(ad::grad_enabled());  // and the mode is back
}

TEST_CASE("backward of an output recorded under NoGrad is refused as grad refuses it", "[sweep][nograd][errors]")
{
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{1.0, 2.0});
    Var<double> loss;
    {
        const ad::NoGrad off;
        loss = ad::sum(tape.param(p) * 2.0);
    }
    CHECK_THROWS_AS(ad::backward(loss), ad::Error);
    CHECK_THROWS_WITH(ad::backward(loss), Contains("backward: the output") && Contains("depends on nothing that needs a gradient") &&
                                              Contains("NoGrad"));
    CHECK_THROWS_WITH(ad::grad(loss, {}), Contains("grad: the output") && Contains("depends on nothing that needs a gradient"));
    CHECK_FALSE(p.has_grad());
}

TEST_CASE("the gradient with respect to an unused input is refused unless ad::allow_unused asks for zeros",
          "[sweep][errors]")
{
    Tape<double> tape;
    Parameter<double> p(Tensor<double>{2.0}), q(Tensor<double>{3.0});
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    const auto c = tape.constant(Tensor<double>{4.0, 5.0});
    const auto pv = tape.param(p);
    const auto y = ad::sum(x * c) * pv;
    const auto later = tape.variable(Tensor<double>{7.0});  // recorded after y

    CHECK_THROWS_WITH(ad::grad(y, {x, c}), Contains("grad: input 1 (op 'constant', tape position 1)") &&
                                               Contains("not used by the output") && Contains("allow_unused"));
    CHECK_THROWS_WITH(ad::grad(y, {later}), Contains("input 0 (op 'variable', tape position ") &&
                                                Contains("recorded after the output"));
    CHECK_THROWS_WITH(ad::vjp(y, Tensor<double>{1.0}, {c}), Contains("vjp: input 0") && Contains("allow_unused"));
    CHECK_THROWS_WITH(ad::grad(y, {c}, ad::create_graph), Contains("grad: input 0") && Contains("allow_unused"));
    CHECK_THROWS_WITH(ad::grad(y, std::vector<Parameter<double>*>{&p, &q}, ad::create_graph),
                      Contains("grad: parameter 1 (shape [1])") && Contains("allow_unused"));

    const auto g = ad::grad(y, {x, c, later}, ad::allow_unused);
    CHECK_THAT(g[0], Equals({8.0, 10.0}));  // c p
    CHECK_THAT(g[1], Equals({0.0, 0.0}));
    CHECK_THAT(g[2], Equals({0.0}));
    const auto gv = ad::grad(y, {x, c}, ad::create_graph, ad::allow_unused);
    CHECK_THAT(gv[0].value(), Equals({8.0, 10.0}));
    CHECK_THAT(gv[1].value(), Equals({0.0, 0.0}));
    const auto gp = ad::grad(y, std::vector<Parameter<double>*>{&p, &q}, ad::create_graph, ad::allow_unused);
    CHECK_THAT(gp[0].value(), Equals({14.0}));  // sum(x c)
    CHECK_THAT(gp[1].value(), Equals({0.0}));
    CHECK_THAT(ad::vjp(y, Tensor<double>{2.0}, {c}, ad::allow_unused)[0], Equals({0.0, 0.0}));
    const auto u = tape.variable(Tensor<double>{3.0});
    CHECK_THAT(ad::vjp(y, u, {x, c}, ad::create_graph, ad::allow_unused)[1].value(), Equals({0.0, 0.0}));
}

TEST_CASE("vjp refuses an output that needs no gradient, as grad does", "[sweep][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    const auto y = ad::detach(x) * 2.0;
    CHECK_THROWS_WITH(ad::vjp(y, Tensor<double>{1.0, 1.0}, {x}), Contains("vjp: the output") &&
                                                                     Contains("depends on nothing that needs a gradient"));
    CHECK_THROWS_WITH(ad::vjp(y, Tensor<double>{1.0, 1.0}, {x}, ad::allow_unused), Contains("depends on nothing that needs a gradient"));
    CHECK_THROWS_WITH(ad::grad(ad::sum(y), {x}), Contains("grad: the output") && Contains("depends on nothing that needs a gradient"));
}

TEST_CASE("a VJP that throws leaves every parameter's .grad exactly as it was", "[sweep]")
{
    // loss = sum(w2 * throws(w1 * x)) + sum(w3 * x): the sweep writes w3 and w2 before reaching
    // the op that throws.
    Tape<double> tape;
    Parameter<double> w1(Tensor<double>{1.0, 2.0}), w2(Tensor<double>{3.0, 4.0}), w3(Tensor<double>{5.0, 6.0});
    const auto x = tape.constant(Tensor<double>{0.5, -1.5});
    const auto loss = ad::sum(tape.param(w2) * throws_in_vjp(tape.param(w1) * x)) + ad::sum(tape.param(w3) * x);
    SECTION("no gradients before")
    {
        CHECK_THROWS_WITH(ad::backward(loss), Contains("asked to fail"));
        CHECK_FALSE(w1.has_grad());
        CHECK_FALSE(w2.has_grad());
        CHECK_FALSE(w3.has_grad());
        ad::backward(ad::sum(tape.param(w3) * x));  // the buffer w3 held is written, not added to
        CHECK_THAT(w3.grad, Equals({0.5, -1.5}));
    }
    SECTION("gradients zeroed before")
    {
        w1.zero_grad(ad::fill_zeros);
        w2.zero_grad(ad::fill_zeros);
        w3.zero_grad(ad::fill_zeros);
        CHECK_THROWS_WITH(ad::backward(loss), Contains("asked to fail"));
        CHECK_THAT(w1.grad, Equals({0.0, 0.0}));
        CHECK_THAT(w2.grad, Equals({0.0, 0.0}));
        CHECK_THAT(w3.grad, Equals({0.0, 0.0}));
    }
    SECTION("gradients accumulated before, from another output")
    {
        const Tensor<double> before{0.1, 0.3};
        w1.grad = before;
        w2.grad = before;
        w3.grad = before;
        w2.grad_zeroed = w3.grad_zeroed = false;
        CHECK_THROWS_WITH(ad::backward(loss), Contains("asked to fail"));
        CHECK_THAT(w1.grad, Equals(before));
        CHECK_THAT(w2.grad, Equals(before));
        CHECK_THAT(w3.grad, Equals(before));
    }
    SECTION("with a hook that saw some parameters final")
    {
        int calls = 0;
        CHECK_THROWS(ad::backward<double>(loss, [&](Parameter<double>&) { ++calls; }));
        CHECK(calls >= 1);
        CHECK_FALSE(w2.has_grad());
        CHECK_FALSE(w3.has_grad());
    }
}

TEST_CASE("an op whose captured state throws while copied into the record leaves the tape usable", "[sweep][op]")
{
    // a closure too big for the record, so done() allocates its block before copying it
    struct ThrowsOnCopy {
        double pad[16] = {};
        ThrowsOnCopy() = default;
        ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("copy refused"); }
        void operator()(ad::Vjp<double>& v) const { v.acc(0, v.g); }
    };
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0});
    const ThrowsOnCopy vjp;
    {
        ad::Op<double> op("throws_on_copy", {x});
        ad::assign(op.out(), x.value());
        CHECK_THROWS_WITH(op.done(vjp), Contains("copy refused"));
    }
    CHECK(tape.size() == 1);
    CHECK_THAT(ad::grad(ad::sum(x * 2.0), {x})[0], Equals({2.0}));
}

TEST_CASE("a loop that sweeps the same graph every step reuses the same adjoint buffers", "[sweep][clear]")
{
    // The identity whose VJP notes where its cotangent (a pooled adjoint) lives.
    static const double* seen = nullptr;
    auto noting = [](const Var<double>& x) {
        ad::Op<double> op("noting", {x});
        ad::assign(op.out(), x.value());
        return op.done([](ad::Vjp<double>& v) {
            seen = v.g.data();
            v.acc(0, v.g);
        });
    };
    Tape<double> tape;
    Parameter<double> W(randn({4, 3}, 9));
    std::vector<const double*> where;
    for (int step = 0; step < 3; ++step) {
        tape.clear();
        W.zero_grad();
        const auto h = noting(ad::tanh(ad::matmul(tape.param(W), tape.constant(randn({3, 5}, 11)))));
        ad::backward(ad::mean(ad::square(h)));
        where.push_back(seen);
    }
    CHECK(where[1] == where[0]);
    CHECK(where[2] == where[0]);
}
