// The public op contract (autodiff/op.hpp) as a user meets it: ops with captured state, large and
// small, errors that say where they happened, printing, and the gradcheck reports.
#include "gradcheck_helpers.hpp"

#include "autodiff/op.hpp"
#include "nn/nn.hpp"

#include <array>
#include <cstdint>
#include <cmath>
#include <memory>
#include <sstream>

using namespace adtest;
using ad::Tape;
using Catch::Matchers::Contains;

namespace {

// y = sum_k c_k x^k, a polynomial whose coefficients are the op's state: 12 doubles, more than
// fits in a record, so the closure lives on the heap.
Var<double> polynomial(const Var<double>& x, const std::array<double, 12>& c)
{
    ad::Op<double> op("polynomial", {x});
    auto& y = op.out();
    y.resize(x.shape());
    for (std::size_t i = 0; i < x.size(); ++i) {
        double s = 0;
        for (std::size_t k = c.size(); k-- > 0;) s = s * x.value().flat(i) + c[k];
        y.flat(i) = s;
    }
    auto derivative = [c](double t) {
        double s = 0;
        for (std::size_t k = c.size(); k-- > 1;) s = s * t + double(k) * c[k];
        return s;
    };
    return op.done([derivative](ad::Vjp<double>& v) {
        const double* g = v.g.data();
        const double* x = v.x(0).data();
        v.acc_each(0, [&](std::size_t i) { return g[i] * derivative(x[i]); });
    });
}

// The identity, holding a shared_ptr in its VJP: the record must release it.
Var<double> holding(const Var<double>& x, std::shared_ptr<int> token)
{
    ad::Op<double> op("holding", {x});
    xt::noalias(op.out()) = x.value();
    return op.done([token](ad::Vjp<double>& v) { v.acc(0, v.g * double(*token)); });
}

// y = s x with s held in a 64-byte-aligned block: the closure goes to the heap at its own
// alignment. `aligned` records whether the VJP found its state where alignas put it.
struct alignas(64) Scale {
    double s;
};
Var<double> scaled(const Var<double>& x, Scale scale, bool& aligned)
{
    ad::Op<double> op("scaled", {x});
    xt::noalias(op.out()) = scale.s * x.value();
    return op.done([scale, &aligned](ad::Vjp<double>& v) {
        aligned = reinterpret_cast<std::uintptr_t>(&scale) % 64 == 0;
        v.acc(0, scale.s * v.g);
    });
}

// y = x^2 through a saved 2x, the VJP reading the saved tensor; with `fail` the forward throws
// after saving.
Var<double> square_saving(const Var<double>& x, bool fail)
{
    ad::Op<double> op("square_saving", {x});
    xt::noalias(op.save(0)) = 2.0 * x.value();
    if (fail) ad::fail("square_saving", x, "asked to fail");
    xt::noalias(op.out()) = x.value() * x.value();
    return op.done([](ad::Vjp<double>& v) { v.acc(0, v.g * v.saved(0)); });
}

// The identity, whose VJP reads a saved tensor the forward never saved.
Var<double> forgets_to_save(const Var<double>& x)
{
    ad::Op<double> op("forgets_to_save", {x});
    xt::noalias(op.out()) = x.value();
    return op.done([](ad::Vjp<double>& v) { v.acc(0, v.g * v.saved(0)); });
}

}  // namespace

TEST_CASE("an op whose state asks for more alignment than 16 bytes gets it", "[op]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, -2.0});
    bool aligned = false;
    const auto g = ad::grad(ad::sum(scaled(x, Scale{2.5}, aligned)), {x});
    CHECK(aligned);
    CHECK_THAT(g[0], Equals({2.5, 2.5}));  // d(sum s x)/dx = s
}

TEST_CASE("what an op saves reaches its VJP, and an op that throws after saving leaves nothing behind", "[op]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{3.0, -0.5});
    CHECK_THROWS_WITH(square_saving(x, true), Contains("square_saving") && Contains("asked to fail"));
    CHECK(tape.size() == 1);
    const auto y = ad::sum(square_saving(x, false));
    CHECK_THAT(ad::grad(y, {x})[0], Equals({6.0, -1.0}));  // d(x^2) = 2x
    require_first_order_gradcheck([](const Vars& v) { return square_saving(v[0], false); },
                                  {uniform({2, 3}, -2, 2, 3)});
}

TEST_CASE("a VJP that reads a tensor its op never saved raises ad::Error naming the op", "[op][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0});
    const auto y = ad::sum(forgets_to_save(x));
    CHECK_THROWS_WITH(ad::grad(y, {x}), Contains("forgets_to_save") && Contains("saved tensor 0") &&
                                            Contains("saved 0"));
}

TEST_CASE("a user op with more state than fits in a record is gradchecked", "[op]")
{
    std::array<double, 12> c{};
    for (std::size_t k = 0; k < c.size(); ++k) c[k] = 1.0 / double(k + 1) * (k % 2 ? -1 : 1);
    require_first_order_gradcheck([&](const Vars& v) { return polynomial(v[0], c); }, {uniform({2, 3}, -0.9, 0.9, 1)});
}

TEST_CASE("captured state is released when its record is reused, cleared away or destroyed", "[op]")
{
    auto token = std::make_shared<int>(3);
    {
        Tape<double> tape;
        const auto x = tape.variable(Tensor<double>{1.0, 2.0});
        const auto y = holding(x, token);
        CHECK(token.use_count() == 2);
        CHECK_THAT(ad::grad(ad::sum(y), {x})[0], Equals({3.0, 3.0}));
        tape.clear();
        const auto z = ad::exp(tape.variable(Tensor<double>{0.0}));  // reuses the records
        (void)z;
        CHECK(token.use_count() == 1);
        holding(tape.variable(Tensor<double>{1.0}), token);
        CHECK(token.use_count() == 2);
    }
    CHECK(token.use_count() == 1);
}

TEST_CASE("an op's error names its tape position, so one of several matmuls can be found", "[op][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(xt::ones<double>({2, 3}));
    const auto W1 = tape.variable(xt::ones<double>({3, 4}));
    const auto W2 = tape.variable(xt::ones<double>({5, 6}));
    const auto h = ad::matmul(x, W1);  // position 3
    CHECK(h.index() == 3);
    CHECK_THROWS_WITH(ad::matmul(h, W2), Contains("matmul (tape position 4)") && Contains("[2, 4]") &&
                                             Contains("[5, 6]"));
    CHECK(tape.size() == 4);  // the failed op left nothing behind
}

TEST_CASE("a Var, a tape and a module print what a debugger would show", "[op][print]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{{1.0, 2.0}});
    const auto y = ad::tanh(x);
    std::ostringstream out;
    out << y;
    CHECK_THAT(out.str(), Contains("'tanh'") && Contains("tape position 1") && Contains("[1, 2]") &&
                              Contains("0.76159"));
    const std::string listing = ad::listing(tape);
    CHECK_THAT(listing, Contains("0: variable [1, 2]") && Contains("1: tanh [1, 2] <- 0"));

    ad::nn::Rng rng(1);
    ad::nn::Sequential<double> net{std::make_shared<ad::nn::Linear<double>>(3, 4, rng),
                                   std::make_shared<ad::nn::ReLU<double>>(),
                                   std::make_shared<ad::nn::Linear<double>>(4, 2, rng)};
    std::ostringstream summary;
    summary << net;
    CHECK_THAT(summary.str(), Contains("0.weight [4, 3] 12") && Contains("2.bias [2] 2") &&
                                  Contains("parameters: 26") && Contains("Linear"));
}

TEST_CASE("concat of a braced list and jacobian of a lambda need no template arguments", "[op]")
{
    Tape<double> tape;
    const auto a = tape.variable(Tensor<double>{1.0}), b = tape.variable(Tensor<double>{2.0, 3.0});
    CHECK(ad::concat({a, b}, 0).size() == 3);
    const Tensor<double> J = ad::jacobian([](const Var<double>& x) { return x * 2.0; }, Tensor<double>{1.0, 2.0});
    CHECK_THAT(J, Equals(Tensor<double>{{2.0, 0.0}, {0.0, 2.0}}));
}

TEST_CASE("gradcheck's relative error is meaningful near zero, and zeros and NaN are reported", "[gradcheck]")
{
    // d/dx (1e-5 x^3) at x = 1e-3 is 3e-11: analytic and numeric agree to rounding, and the
    // relative error is measured against atol / rtol, not against 3e-11.
    const auto tiny = ad::gradcheck<double>([](const Vars& v) { return ad::sum(v[0] * v[0] * v[0] * 1e-5); },
                                            {Tensor<double>{1e-3}});
    INFO(tiny.report());
    CHECK(tiny.ok);
    CHECK(tiny.max_rel_error < 1e-6);
    CHECK(tiny.warnings.empty());

    // x * 0: both gradients are zero everywhere, which proves nothing
    ad::GradcheckOptions named;
    named.names = {"w", "b"};
    const auto zero = ad::gradcheck<double>([](const Vars& v) { return ad::sum(v[0] * 0.0 + v[1]); },
                                            {Tensor<double>{1.0, 2.0}, Tensor<double>{3.0}}, named);
    CHECK(zero.ok);
    REQUIRE(zero.warnings.size() == 1);
    CHECK_THAT(zero.report(), Contains("Warning: w: analytic and numeric gradients are both exactly zero"));

    // a NaN gradient fails and is reported as NaN, not as error 0
    const auto nan = ad::gradcheck<double>([](const Vars& v) { return ad::sum(ad::sqrt(v[0])); }, {Tensor<double>{0.0, 1.0}});
    CHECK_FALSE(nan.ok);
    CHECK(std::isnan(nan.max_abs_error));
    CHECK_THAT(nan.report(), Contains("nan"));
}

TEST_CASE("check_gradient's errors name check_gradient and the parameter", "[gradcheck][errors]")
{
    ad::GradcheckOptions o;
    o.names = {"layer.weight"};
    CHECK_THROWS_WITH(ad::check_gradient([](const std::vector<Tensor<double>>&) { return 0.0; }, {Tensor<double>{1.0, 2.0}},
                                         {Tensor<double>{1.0}}, o),
                      Contains("check_gradient") && Contains("layer.weight") && Contains("[1]") && Contains("[2]"));
}

TEST_CASE("gradcheck_module checks a model's loss by parameter name", "[gradcheck][nn]")
{
    ad::nn::Rng rng(3);
    ad::nn::Sequential<double> net{std::make_shared<ad::nn::Linear<double>>(3, 5, rng),
                                   std::make_shared<ad::nn::Tanh<double>>(),
                                   std::make_shared<ad::nn::Linear<double>>(5, 2, rng)};
    const Tensor<double> x = randn({4, 3}, 5);
    const auto before = net.named_parameters()[0].second->value();
    const auto r = ad::nn::gradcheck_module<double>(net, [&](ad::nn::Module<double>& m, Tape<double>& tape) {
        return ad::nn::cross_entropy_loss(m(tape.constant(x)), {0, 1, 1, 0});
    });
    INFO(r.report());
    CHECK(r.ok);
    CHECK(r.checked == 3 * 5 + 5 + 5 * 2 + 2);
    CHECK_THAT(net.named_parameters()[0].second->value(), Equals(before));  // restored
    // a wrong gradient is named by its parameter
    const auto wrong = ad::nn::gradcheck_module<double>(net, [&](ad::nn::Module<double>& m, Tape<double>& tape) {
        const auto out = m(tape.constant(x));
        return ad::sum(ad::detach(out) * out * 0.5);  // true gradient is out; the detach halves it
    });
    CHECK_FALSE(wrong.ok);
    CHECK_THAT(wrong.name, Contains(".weight") || Contains(".bias"));
}

TEST_CASE("gradcheck_module checks a loss with a gradient penalty, which takes a create_graph gradient inside",
          "[gradcheck][nn]")
{
    ad::nn::Rng rng(4);
    ad::nn::Sequential<double> net{std::make_shared<ad::nn::Linear<double>>(3, 5, rng),
                                   std::make_shared<ad::nn::Tanh<double>>(),
                                   std::make_shared<ad::nn::Linear<double>>(5, 1, rng)};
    const Tensor<double> x = randn({4, 3}, 6);
    // mean(f(x)^2) + 0.5 |df/dx|^2, the penalty as WGAN-GP writes it (without the target norm)
    auto loss = [&](bool halve_penalty) {
        return [&x, halve_penalty](ad::nn::Module<double>& m, Tape<double>& tape) {
            const auto xv = tape.variable(x);
            const auto y = m(xv);
            const auto gx = ad::grad(ad::sum(y), {xv}, ad::create_graph)[0];
            const auto penalty = halve_penalty ? ad::sum(ad::detach(gx) * gx) : ad::sum(ad::square(gx));
            return ad::mean(ad::square(y)) + penalty * 0.5;
        };
    };
    const auto r = ad::nn::gradcheck_module<double>(net, loss(false));
    INFO(r.report());
    CHECK(r.ok);
    CHECK(r.checked == 3 * 5 + 5 + 5 * 1 + 1);
    // the finite differences still catch a wrong gradient of the penalty (the detach halves it)
    const auto wrong = ad::nn::gradcheck_module<double>(net, loss(true));
    CHECK_FALSE(wrong.ok);
}

TEST_CASE("every activation comes from one row of the table", "[nn][activation]")
{
    using A = ad::nn::Activation;
    for (A a : {A::identity, A::sigmoid, A::tanh, A::relu, A::leaky_relu, A::elu, A::selu, A::softplus, A::gelu}) {
        const auto m = ad::nn::make_activation<double>(a);
        Tape<double> tape;
        const auto x = tape.variable(Tensor<double>{-0.5, 0.5});
        const auto y = (*m)(x);
        CHECK_THAT(y.value(), Equals(ad::nn::activate(a, x, double(ad::nn::default_alpha(a))).value()));
        CHECK_FALSE(ad::nn::activation_name(a).empty());
    }
    CHECK(ad::nn::LeakyReLU<double>().alpha() == 0.01);
    CHECK(ad::nn::ELU<double>(0.5).alpha() == 0.5);
}
