// The tape: which records need a gradient, the no-grad scope, clearing and reusing a tape,
// handles that outlive a clear or belong to another tape, parameters changed between forward
// and backward, and float and double tapes side by side.
#include "gradcheck_helpers.hpp"

#include <xtensor/xmath.hpp>

#include <algorithm>
#include <stdexcept>
#include <tuple>

using namespace adtest;
using ad::Parameter;
using ad::Tape;
using Catch::Contains;

TEST_CASE("a constant needs no gradient, and a variable, a parameter and any op reading one do", "[tape]")
{
    Tape<double> tape;
    Parameter<double> W(randn({2, 2}, 1));
    const auto c = tape.constant(randn({2}, 2));
    const auto x = tape.variable(randn({2}, 3));
    const auto w = tape.param(W);
    CHECK_FALSE(c.requires_grad());
    CHECK(x.requires_grad());
    CHECK(w.requires_grad());
    CHECK_FALSE((c * c).requires_grad());
    CHECK(ad::matmul(w, c).requires_grad());
    CHECK((c + x).requires_grad());
    CHECK_FALSE(ad::detach(x).requires_grad());
    CHECK(tape.size() == 7);  // 3 leaves, c c, W c, c + x, detach
}

TEST_CASE("records that need no gradient carry no VJP, and constants get no adjoint", "[tape]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({3}, 4));
    const auto c = tape.constant(randn({3}, 5));
    const auto e = ad::exp(c);       // constants only: nothing to differentiate
    const auto y = ad::sum(x * e);
    CHECK(!tape.record(e.index()).vjp);
    CHECK(bool(tape.record(y.index()).vjp));
    const auto g = ad::grad(y, {x, c, e}, ad::allow_unused);
    CHECK_THAT(g[0], Equals(e.value()));
    // The sweep never reached the constants: they are unused, refused without allow_unused.
    CHECK_THROWS_WITH(ad::grad(y, {c}), Contains("not used by the output"));
    CHECK_THROWS_WITH(ad::grad(y, {e}), Contains("not used by the output"));
    CHECK_THAT(g[1], Equals({0.0, 0.0, 0.0}));
    CHECK_THAT(g[2], Equals({0.0, 0.0, 0.0}));
}

TEST_CASE("under NoGrad ops give the same values, record nothing that needs a gradient, and the mode comes back", "[tape][nograd]")
{
    Tape<double> tape;
    Parameter<double> W(randn({3, 2}, 6));
    const auto x = tape.constant(randn({2}, 7));
    const auto with = ad::tanh(ad::matmul(tape.param(W), x));
    CHECK(ad::grad_enabled());
    {
        ad::NoGrad no_grad;
        CHECK_FALSE(ad::grad_enabled());
        const auto w = tape.param(W);
        const auto v = tape.variable(randn({2}, 8));
        const auto without = ad::tanh(ad::matmul(w, x));
        CHECK_FALSE(w.requires_grad());
        CHECK_FALSE(v.requires_grad());
        CHECK_FALSE(without.requires_grad());
        CHECK(!tape.record(without.index()).vjp);
        CHECK_THAT(without.value(), Equals(with.value()));
        CHECK_THROWS_WITH(ad::backward(ad::sum(without)), Contains("depends on nothing that needs a gradient"));
        CHECK_FALSE(W.has_grad());
        {
            ad::NoGrad nested;
            CHECK_FALSE(ad::grad_enabled());
        }
        CHECK_FALSE(ad::grad_enabled());  // the inner scope restores the outer one's mode
    }
    CHECK(ad::grad_enabled());
    CHECK(ad::tanh(ad::matmul(tape.param(W), x)).requires_grad());

    // An exception leaving the scope restores the mode too.
    try {
        ad::NoGrad no_grad;
        throw std::runtime_error("leaving");
    } catch (const std::runtime_error&) {
    }
    CHECK(ad::grad_enabled());
}

TEST_CASE("a tape cleared and reused gives the same step again, with the same size and the same buffers", "[tape][clear]")
{
    Tape<double> tape;
    Parameter<double> W(randn({4, 3}, 9)), b(randn({4}, 10));
    const Tensor<double> x = randn({5, 3}, 11);
    struct Step {
        double loss;
        Tensor<double> dW, db;
        std::size_t size;
        const double* hidden_buffer;
        std::size_t adjoint_buffers;
    };
    auto step = [&] {
        tape.clear();
        W.zero_grad();
        b.zero_grad();
        const auto input = tape.variable(x);
        const auto h = ad::tanh(ad::matmul(input, tape.param(W), ad::transpose_b) + tape.param(b));
        const auto loss = ad::mean(ad::square(h));
        ad::backward(loss);
        return Step{loss.item(), W.grad, b.grad, tape.size(), h.value().data(), tape.adjoint_buffers()};
    };
    const Step first = step();
    const Step second = step();
    const Step third = step();
    CHECK(second.loss == first.loss);
    CHECK_THAT(second.dW, Equals(first.dW));
    CHECK_THAT(second.db, Equals(first.db));
    CHECK(second.size == first.size);
    CHECK(third.size == first.size);
    // clear() keeps every record's memory: the values land in the same buffers, the adjoints in
    // the same pool (test_sweep.cpp checks their addresses).
    CHECK(second.hidden_buffer == first.hidden_buffer);
    CHECK(third.hidden_buffer == first.hidden_buffer);
    CHECK(second.adjoint_buffers == first.adjoint_buffers);
    CHECK(third.adjoint_buffers == first.adjoint_buffers);
}

TEST_CASE("a sweep holds only the adjoints still to be read, and keeps those of the inputs asked for", "[tape]")
{
    // y = tanh^n(x): dy/dx = prod_k (1 - h_k^2), h_k = tanh^k(x), and dy/dh_m the same product
    // from k = m + 1.
    Tape<double> tape;
    const double x0 = 0.7;
    const auto x = tape.variable(Tensor<double>{x0});
    std::vector<Var<double>> h{x};
    for (int k = 0; k < 1000; ++k) h.push_back(ad::tanh(h.back()));
    std::vector<double> value{x0};
    for (int k = 0; k < 1000; ++k) value.push_back(std::tanh(value.back()));
    auto product_from = [&](std::size_t m) {
        double d = 1;
        for (std::size_t k = m + 1; k < value.size(); ++k) d *= 1 - value[k] * value[k];
        return d;
    };
    const auto g = ad::grad(h.back(), {x, h[500], h[999]});
    CHECK(g[0](0) == Approx(product_from(0)).epsilon(1e-13));
    CHECK(g[1](0) == Approx(product_from(500)).epsilon(1e-13));
    CHECK(g[2](0) == Approx(product_from(999)).epsilon(1e-13));
    // A chain has at most two adjoints live at once, besides the three kept.
    CHECK(tape.adjoint_buffers() <= 5);
}

TEST_CASE("a loop whose shapes change every step keeps a bounded adjoint pool", "[tape][clear]")
{
    // Each step a batch of another size: the pool holds buffers only for the sizes of the last
    // pool_keep sweeps, and every step's gradient is still d(sum tanh(tanh(x)))/dx.
    Tape<double> tape;
    std::size_t most = 0;
    for (std::size_t batch = 1; batch <= 100; ++batch) {
        tape.clear();
        const Tensor<double> x0 = randn({batch}, batch);
        const auto x = tape.variable(x0);
        const auto g = ad::grad(ad::sum(ad::tanh(ad::tanh(x))), {x})[0];
        const Tensor<double> t = xt::tanh(x0);
        const Tensor<double> expected = (1 - xt::square(xt::tanh(t))) * (1 - xt::square(t));
        for (std::size_t i = 0; i < batch; ++i) CHECK(g(i) == Approx(expected(i)).epsilon(1e-14));
        most = std::max(most, tape.adjoint_buffers());
    }
    // At most a few buffers per sweep, for the last pool_keep + 1 sweeps.
    CHECK(most <= 4 * (Tape<double>::pool_keep + 1));
    CHECK(most > 0);
}

TEST_CASE("after clear() a step with another batch size gives the gradients a fresh tape gives", "[tape][clear]")
{
    Parameter<double> W(randn({3, 4}, 30)), b(randn({3}, 31));
    const auto step = [&](Tape<double>& tape, const Tensor<double>& x, const std::vector<std::int64_t>& labels) {
        W.zero_grad();
        b.zero_grad();
        const auto z = ad::matmul(tape.constant(x), tape.param(W), ad::transpose_b) + tape.param(b);
        const auto loss = ad::cross_entropy(ad::relu(z), labels) + ad::mean(ad::max(z, 0));
        ad::backward(loss);
        return std::make_tuple(loss.item(), Tensor<double>(W.grad), Tensor<double>(b.grad));
    };
    Tape<double> reused;
    for (std::size_t batch : {5, 2, 7, 5}) {
        CAPTURE(batch);
        const Tensor<double> x = randn({batch, 4}, 32 + batch);
        std::vector<std::int64_t> labels;
        for (std::size_t i = 0; i < batch; ++i) labels.push_back(std::int64_t(i % 3));
        reused.clear();
        const auto [loss, dW, db] = step(reused, x, labels);
        Tape<double> fresh;
        const auto [loss0, dW0, db0] = step(fresh, x, labels);
        CHECK(loss == loss0);
        CHECK_THAT(dW, Equals(dW0));
        CHECK_THAT(db, Equals(db0));
    }
}

TEST_CASE("a handle kept past clear() raises ad::Error instead of reading reused memory", "[tape][clear][errors]")
{
    Tape<double> tape;
    const auto old = tape.variable(Tensor<double>{1.0, 2.0});
    const auto old_sum = ad::sum(old);
    CHECK(old.valid());
    tape.clear();
    const auto fresh = tape.variable(Tensor<double>{3.0, 4.0});  // reuses record 0
    CHECK_FALSE(old.valid());
    CHECK(fresh.valid());
    REQUIRE_THROWS_AS(old.value(), ad::Error);
    REQUIRE_THROWS_WITH(old.value(), Contains("tape.clear()"));
    REQUIRE_THROWS_WITH(old_sum.item(), Contains("tape.clear()"));
    REQUIRE_THROWS_WITH(ad::exp(old), Contains("exp") && Contains("tape.clear()"));
    REQUIRE_THROWS_WITH(ad::add(fresh, old), Contains("add") && Contains("tape.clear()"));
    REQUIRE_THROWS_WITH(ad::matmul(fresh, old), Contains("matmul") && Contains("tape.clear()"));
    REQUIRE_THROWS_WITH(ad::backward(old_sum), Contains("backward") && Contains("tape.clear()"));
    REQUIRE_THROWS_WITH(ad::grad(ad::sum(fresh), {old}), Contains("grad") && Contains("tape.clear()"));
    CHECK(fresh.value()(0) == 3.0);
}

TEST_CASE("a handle from another tape raises ad::Error naming the op", "[tape][errors]")
{
    Tape<double> one, other;
    const auto a = one.variable(Tensor<double>{1.0, 2.0});
    const auto b = other.variable(Tensor<double>{3.0, 4.0});
    REQUIRE_THROWS_AS(a + b, ad::Error);
    REQUIRE_THROWS_WITH(a + b, Contains("add") && Contains("another tape"));
    REQUIRE_THROWS_WITH(ad::concat<double>({a, b}, 0), Contains("concat") && Contains("another tape"));
    REQUIRE_THROWS_WITH(ad::matmul(a, b), Contains("matmul") && Contains("another tape"));
    CHECK(one.size() == 1);  // a failed op leaves no record behind
    REQUIRE_THROWS_WITH(ad::grad(ad::sum(a), {b}), Contains("grad") && Contains("another tape"));
    REQUIRE_THROWS_WITH(ad::vjp(a, Tensor<double>{1.0, 1.0}, {b}), Contains("vjp") && Contains("another tape"));
    REQUIRE_THROWS_WITH(one.check(b, "mine"), Contains("mine") && Contains("another tape"));
}

TEST_CASE("an empty handle raises ad::Error", "[tape][errors]")
{
    const Var<double> nothing;
    CHECK_FALSE(nothing.valid());
    REQUIRE_THROWS_WITH(nothing.value(), Contains("empty handle"));
    REQUIRE_THROWS_WITH(ad::exp(nothing), Contains("empty handle"));
}

TEST_CASE("a parameter written through mutable_value() after the forward pass makes backward throw until the forward runs again", "[tape][errors]")
{
    Tape<double> tape;
    Parameter<double> W(randn({2, 2}, 12));
    const Tensor<double> x0 = randn({2}, 13);
    const auto x = tape.constant(x0);
    const auto loss = ad::sum(ad::matmul(tape.param(W), x));
    W.mutable_value()(0, 0) += 0.5;
    REQUIRE_THROWS_AS(ad::backward(loss), ad::Error);
    REQUIRE_THROWS_WITH(ad::backward(loss), Contains("backward") && Contains("[2, 2]") && Contains("modified"));
    REQUIRE_THROWS_WITH(ad::grad(loss, {x}), Contains("grad") && Contains("modified"));

    tape.clear();
    const auto again = ad::sum(ad::matmul(tape.param(W), tape.constant(x0)));
    REQUIRE_NOTHROW(ad::backward(again));
}

TEST_CASE("a parameter given a new value between forward and backward, of its shape or another, is refused "
          "(conv2d's included), and reading it is not a change", "[tape][errors]")
{
    const auto modified = Contains("modified after the forward pass recorded it");
    Tape<double> tape;
    Parameter<double> w(Tensor<double>{3.0, 20.0});
    auto forward = [&] {
        tape.clear();
        return ad::sum(ad::square(tape.param(w)));  // d/dw = 2 w
    };

    auto loss = forward();
    const auto version = w.version();
    CHECK(w.value()(1) == 20.0);  // reading counts as no change
    CHECK(w.version() == version);
    REQUIRE_NOTHROW(ad::backward(loss));
    CHECK_THAT(w.grad, Equals({6.0, 40.0}));

    // Same shape: the sweep would mix the recorded pass with the new value.
    w.zero_grad();
    loss = forward();
    w.set_value(Tensor<double>{30.0, 100.0});
    CHECK(w.version() == version + 1);
    REQUIRE_THROWS_WITH(ad::backward(loss), Contains("backward") && Contains("[2]") && modified);
    CHECK_FALSE(w.has_grad());  // refused before anything was written
    loss = forward();
    w.mutable_value() = Tensor<double>{3.0, 20.0};
    REQUIRE_THROWS_WITH(ad::backward(loss), modified);
    REQUIRE_THROWS_WITH(ad::grad(loss, std::vector<Parameter<double>*>{&w}, ad::create_graph),
                        Contains("grad") && modified);

    // Another shape: the sweep would read past the new value's end or stop short of it.
    loss = forward();
    w.set_value(Tensor<double>{1.0, 2.0, 3.0});
    REQUIRE_THROWS_WITH(ad::backward(loss), Contains("[3]") && modified);
    w.zero_grad();
    ad::backward(forward());
    CHECK_THAT(w.grad, Equals({2.0, 4.0, 6.0}));

    // conv2d reads the weight's value in its VJP, for the input's gradient and the weight's shape.
    const Tensor<double> x = randn({1, 1, 5, 5}, 16);
    Parameter<double> k(randn({2, 1, 3, 3}, 17));
    auto conv_forward = [&](const Var<double>& xv) { return ad::sum(ad::conv2d(xv, tape.param(k))); };
    for (const Shape& shape : {Shape{2, 1, 3, 3}, Shape{2, 1, 2, 2}, Shape{4, 1, 4, 4}}) {
        tape.clear();
        const auto xv = tape.variable(x);
        const auto y = conv_forward(xv);
        k.set_value(Tensor<double>(xt::ones<double>(shape)));
        REQUIRE_THROWS_WITH(ad::backward(y), modified);
        REQUIRE_THROWS_WITH(ad::grad(y, {xv}), modified);
    }
    // Run again, the pass reads the new [4, 1, 4, 4] kernel: d sum(y) / d k[o, 0, i, j] is the sum
    // of the 2 x 2 window of x at offset (i, j) (cross-correlation, stride 1, no padding).
    tape.clear();
    k.zero_grad();
    ad::backward(conv_forward(tape.constant(x)));
    REQUIRE(Shape(k.grad.shape().begin(), k.grad.shape().end()) == Shape{4, 1, 4, 4});
    for (std::size_t o = 0; o < 4; ++o)
        for (std::size_t i = 0; i < 4; ++i)
            for (std::size_t j = 0; j < 4; ++j) {
                double want = 0;
                for (std::size_t p = 0; p < 2; ++p)
                    for (std::size_t q = 0; q < 2; ++q) want += x(0, 0, p + i, q + j);
                CHECK(k.grad(o, 0, i, j) == Approx(want).epsilon(1e-14));
            }
}

TEST_CASE("float and double tapes in one program compute the same function and gradient", "[tape]")
{
    const Tensor<double> x = randn({4, 3}, 14), W = randn({2, 3}, 15);
    Tape<double> td;
    Tape<float> tf;
    Parameter<double> Wd(W);
    Parameter<float> Wf(Tensor<float>(xt::cast<float>(W)));
    const auto yd = ad::mean(ad::sigmoid(ad::matmul(td.constant(x), td.param(Wd), ad::transpose_b)));
    const auto yf = ad::mean(ad::sigmoid(ad::matmul(tf.constant(Tensor<float>(xt::cast<float>(x))), tf.param(Wf), ad::transpose_b)));
    ad::backward(yd);
    ad::backward(yf);
    CHECK(yf.item() == Approx(yd.item()).epsilon(1e-6));
    for (std::size_t i = 0; i < W.size(); ++i) CHECK(Wf.grad.flat(i) == Approx(Wd.grad.flat(i)).epsilon(1e-5).margin(1e-7));
}

TEST_CASE("detach(x) has x's value and stops the gradient: d(x detach(x)) = detach(x)", "[tape]")
{
    Tape<double> tape;
    const Tensor<double> x0 = randn({3}, 16);
    const auto x = tape.variable(x0);
    const auto d = ad::detach(x);
    CHECK_THAT(d.value(), Equals(x0));
    CHECK_THAT(ad::grad(ad::sum(x * d), {x})[0], Equals(x0));  // not 2 x
    CHECK_THAT(ad::grad(ad::sum(x * x), {x})[0], Equals(Tensor<double>(2.0 * x0)));
}

TEST_CASE("backward refuses a parameter whose .grad was resized after the forward pass", "[tape]")
{
    ad::Parameter<double> w(Tensor<double>{1.0, 2.0, 3.0});
    Tape<double> tape;
    const auto loss = ad::sum(tape.param(w) * tape.param(w));
    w.grad = xt::zeros<double>({2});  // backward would add three elements into two
    CHECK_THROWS_WITH(ad::backward(loss), Contains("backward") && Contains("shape [3]") && Contains("has shape [2]"));
    CHECK(w.grad.size() == 2);
    w.zero_grad();
    ad::backward(loss);
    CHECK_THAT(w.grad, Equals(Tensor<double>{2.0, 4.0, 6.0}));  // d sum(w^2) / dw = 2 w
}
