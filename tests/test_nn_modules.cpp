// nn/ modules: names, modes and counts; each module's maths; and every module gradchecked as a
// whole in double, over its input and over its parameters.
#include "nn/nn.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

using ad::Tape;
using ad::Tensor;
using ad::Var;
namespace nn = ad::nn;

namespace {

using Names = std::vector<std::string>;

Names parameter_names(nn::Module<double>& m)
{
    Names out;
    for (auto& e : m.named_parameters()) out.push_back(e.first);
    return out;
}

Tensor<double> randn(const ad::Shape& shape, std::uint64_t seed, double scale = 1.0)
{
    nn::Rng rng(seed);
    return nn::normal<double>(shape, 0.0, scale, rng);
}

// Gradcheck of a module as a whole: with respect to its input and to every parameter, through
// the cotangent c, L = sum(c * m(x)). The analytic side is the engine's: grad() for the input
// and backward() into Parameter::grad for the parameters (the module reads them with
// tape.param). The numeric side copies perturbed values into the parameters and re-runs the
// module on a fresh tape. `reset` runs before every forward pass (to restart random masks, so
// that every evaluation sees the same function).
ad::GradcheckResult module_gradcheck(nn::Module<double>& m, const Tensor<double>& x,
                                     const std::function<void()>& reset = {})
{
    auto params = m.named_parameters();
    Tape<double> tape;
    if (reset) reset();
    const Var<double> xv = tape.variable(x);
    const Var<double> y = m(xv);
    const Tensor<double> c = randn(ad::Shape(y.shape().begin(), y.shape().end()), 99);
    const Var<double> L = ad::sum(y * tape.constant(c));
    m.zero_grad();
    std::vector<Tensor<double>> claimed = ad::grad(L, {xv});
    ad::backward(L);

    std::vector<Tensor<double>> inputs{x};
    ad::GradcheckOptions opts;
    opts.names = {"input"};
    for (auto& [name, p] : params) {
        inputs.push_back(p->value());
        claimed.push_back(p->grad);
        opts.names.push_back(name);
    }
    auto f = [&](const std::vector<Tensor<double>>& in) {
        for (std::size_t i = 0; i < params.size(); ++i) params[i].second->set_value(in[i + 1]);
        if (reset) reset();
        Tape<double> t;
        const Var<double> out = m(t.constant(in[0]));
        return double(xt::sum(out.value() * c)());
    };
    auto res = ad::check_gradient(f, inputs, claimed, opts);
    for (std::size_t i = 0; i < params.size(); ++i) params[i].second->set_value(inputs[i + 1]);
    return res;
}

ad::GradcheckResult gradcheck_module(nn::Module<double>& m, const Tensor<double>& x,
                                     const std::function<void()>& reset = {})
{
    auto res = module_gradcheck(m, x, reset);
    INFO(res.report());
    CHECK(res.ok);
    return res;
}

// Values of a one-op function of x, for comparing a module with the op it wraps.
Tensor<double> run_module(nn::Module<double>& m, const Tensor<double>& x)
{
    Tape<double> tape;
    return m(tape.constant(x)).value();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Module: names, modes, counts

TEST_CASE("Linear computes x W^T + b for a batch and W x + b for one example", "[nn][linear]")
{
    const Tensor<double> W = {{1.0, 2.0, 3.0}, {-1.0, 0.5, 4.0}};
    const Tensor<double> b = {0.25, -2.0};
    nn::Linear<double> lin(W, b);
    Tape<double> tape;
    const Tensor<double> x = {{1.0, -1.0, 2.0}, {0.0, 3.0, -0.5}};
    const auto y = lin(tape.constant(x));
    REQUIRE(y.shape() == std::vector<std::size_t>{2, 2});
    for (std::size_t r = 0; r < 2; ++r)
        for (std::size_t o = 0; o < 2; ++o) {
            double expected = b(o);
            for (std::size_t i = 0; i < 3; ++i) expected += W(o, i) * x(r, i);
            CHECK(y.value()(r, o) == Approx(expected).epsilon(1e-15));
        }
    // The seeds' z = W x + b for a column x is one row of the batched form.
    const auto z = lin(tape.constant(Tensor<double>{1.0, -1.0, 2.0}));
    REQUIRE(z.shape() == std::vector<std::size_t>{2});
    CHECK(z.value()(0) == Approx(y.value()(0, 0)).epsilon(1e-15));
    CHECK(z.value()(1) == Approx(y.value()(0, 1)).epsilon(1e-15));
}

TEST_CASE("Linear is gradchecked over input, weight and bias", "[nn][linear][gradcheck]")
{
    nn::Rng rng(1);
    nn::Linear<double> lin(4, 3, rng);
    gradcheck_module(lin, randn({5, 4}, 2));
    gradcheck_module(lin, randn({4}, 3));
    nn::Linear<double> no_bias(4, 3, rng, nn::no_bias);
    CHECK(no_bias.bias() == nullptr);
    CHECK(parameter_names(no_bias) == Names{"weight"});
    gradcheck_module(no_bias, randn({2, 4}, 4));
}

TEST_CASE("Linear's dL/dW is the seeds' p x^T summed over the batch", "[nn][linear]")
{
    // L = sum(c * (x W^T + b)): dL/dW = c^T x (rows of p = c times rows of x), dL/db = sum_b c.
    nn::Rng rng(5);
    nn::Linear<double> lin(3, 2, rng);
    const Tensor<double> x = randn({4, 3}, 6), c = randn({4, 2}, 7);
    Tape<double> tape;
    ad::backward(ad::sum(lin(tape.constant(x)) * tape.constant(c)));
    for (std::size_t o = 0; o < 2; ++o) {
        double db = 0;
        for (std::size_t b = 0; b < 4; ++b) db += c(b, o);
        CHECK(lin.bias()->grad(o) == Approx(db).epsilon(1e-14));
        for (std::size_t i = 0; i < 3; ++i) {
            double dw = 0;
            for (std::size_t b = 0; b < 4; ++b) dw += c(b, o) * x(b, i);
            CHECK(lin.weight().grad(o, i) == Approx(dw).epsilon(1e-14));
        }
    }
}

// A sequence batch [2, 3, 4] goes through as its 6 rows would: row (b, t) of the output is the
// layer applied to x[b, t], with and without a bias.
TEST_CASE("Linear maps every position of [batch, time, in] as it maps one row", "[nn][linear]")
{
    nn::Rng rng(2);
    for (const bool bias : {true, false}) {
        nn::Linear<double> lin(4, 3, rng, nn::Bias{bias});
        Tape<double> tape;
        const Tensor<double> x = randn({2, 3, 4}, 7);
        const auto y = lin(tape.constant(x));
        REQUIRE(y.shape() == ad::Shape{2, 3, 3});
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t t = 0; t < 3; ++t) {
                const Tensor<double> row = xt::view(x, b, t);
                const Tensor<double> expected = lin(tape.constant(row)).value();
                const Tensor<double> got = xt::view(y.value(), b, t);
                CHECK(xt::allclose(got, expected, 1e-14, 1e-14));
            }
    }
}

TEST_CASE("Linear rejects a wrong input width and bad given values", "[nn][linear][errors]")
{
    nn::Rng rng(1);
    nn::Linear<double> lin(4, 3, rng);
    Tape<double> tape;
    CHECK_THROWS_WITH(lin(tape.constant(Tensor<double>(xt::zeros<double>({2, 5})))),
                      Catch::Contains("Linear") && Catch::Contains("[2, 5]") && Catch::Contains("[batch, 4]"));
    CHECK_THROWS_WITH(lin(tape.constant(Tensor<double>(xt::zeros<double>({2, 2, 5})))),
                      Catch::Contains("[2, 2, 5]") && Catch::Contains("[..., 4]"));
    CHECK_THROWS_AS(lin(tape.constant(Tensor<double>(0.0))), ad::Error);
    CHECK_THROWS_WITH(nn::Linear<double>(Tensor<double>{{1.0, 2.0}}, Tensor<double>{1.0, 2.0}),
                      Catch::Contains("bias") && Catch::Contains("[2]") && Catch::Contains("[1]"));
    CHECK_THROWS_AS(nn::Linear<double>(0, 3, rng), ad::Error);
}

TEST_CASE("names are hierarchical, stable and in registration order", "[nn][module]")
{
    nn::Rng rng(3);
    nn::MLPOptions o;
    o.sizes = {5, 8, 8, 8, 2};
    o.residual = true;
    o.layer_norm = true;
    o.dropout = 0.1;
    o.stochastic_depth = 0.2;
    auto net = nn::mlp<double>(o, rng);
    const Names expected = {"input.weight",           "input.bias",
                            "input_norm.weight",      "input_norm.bias",
                            "blocks.0.linear.weight", "blocks.0.linear.bias",
                            "blocks.0.norm.weight",   "blocks.0.norm.bias",
                            "blocks.1.linear.weight", "blocks.1.linear.bias",
                            "blocks.1.norm.weight",   "blocks.1.norm.bias",
                            "output.weight",          "output.bias"};
    CHECK(parameter_names(*net) == expected);

    // Options without parameters do not change the names.
    o.dropout = 0;
    o.stochastic_depth = 0;
    nn::Rng rng2(3);
    CHECK(parameter_names(*nn::mlp<double>(o, rng2)) == expected);

    // parameter_count: 5*8+8 + 2*8 + 2*(8*8+8 + 2*8) + 8*2+2
    CHECK(net->parameter_count() == std::size_t(48 + 16 + 2 * 88 + 18));

    Names modules;
    for (auto& e : net->named_modules()) modules.push_back(e.first);
    CHECK(modules == Names{"input", "input_norm", "input_act", "input_dropout", "blocks", "blocks.0",
                           "blocks.0.linear", "blocks.0.norm", "blocks.0.act", "blocks.0.dropout",
                           "blocks.0.drop_path", "blocks.1", "blocks.1.linear", "blocks.1.norm", "blocks.1.act",
                           "blocks.1.dropout", "blocks.1.drop_path", "output"});
}

TEST_CASE("train and eval reach every descendant, and zero_grad clears every gradient", "[nn][module]")
{
    nn::Rng rng(4);
    nn::MLPOptions o;
    o.sizes = {3, 4, 4, 1};
    o.residual = true;
    o.dropout = 0.5;
    auto net = nn::mlp<double>(o, rng);
    CHECK(net->training());
    net->eval();
    CHECK_FALSE(net->training());
    for (auto& e : net->named_modules()) CHECK_FALSE(e.second->training());
    net->train();
    for (auto& e : net->named_modules()) CHECK(e.second->training());

    Tape<double> tape;
    ad::backward(ad::sum(net->forward(tape.constant(randn({2, 3}, 1)))));
    double total = 0;
    for (auto* p : net->parameters()) total += xt::sum(xt::abs(p->grad))();
    CHECK(total > 0);
    net->zero_grad();
    for (auto* p : net->parameters()) CHECK_FALSE(p->has_grad());
    net->zero_grad(ad::fill_zeros);
    for (auto* p : net->parameters()) CHECK((p->has_grad() && xt::all(xt::equal(p->grad, 0.0))));
}

TEST_CASE("a registered name must be new and dot-free", "[nn][module][errors]")
{
    struct Twice : nn::Module<double> {
        explicit Twice(const std::string& second)
        {
            register_parameter("w", Tensor<double>{1.0});
            register_parameter(second, Tensor<double>{2.0});
        }
        Var<double> forward(const Var<double>& x) override { return x; }
    };
    CHECK_THROWS_WITH(Twice("w"), Catch::Contains("\"w\"") && Catch::Contains("already used"));
    CHECK_THROWS_WITH(Twice("a.b"), Catch::Contains("'.'"));
    CHECK_THROWS_AS(Twice(""), ad::Error);
    CHECK_NOTHROW(Twice("v"));
}

TEST_CASE("buffers are named like parameters and are not parameters", "[nn][module][batchnorm]")
{
    nn::Sequential<double> net;
    nn::Rng rng(1);
    net.add(std::make_shared<nn::Linear<double>>(3, 4, rng));
    net.add(std::make_shared<nn::BatchNorm1d<double>>(4));
    std::vector<std::string> buffers;
    for (auto& e : net.named_buffers()) buffers.push_back(e.first);
    CHECK(buffers == Names{"1.running_mean", "1.running_var", "1.num_batches_tracked"});
    CHECK(parameter_names(net) == Names{"0.weight", "0.bias", "1.weight", "1.bias"});
}

// ---------------------------------------------------------------------------------------------
// Activations and Sequential

TEST_CASE("each activation module applies its op and is gradchecked", "[nn][activation][gradcheck]")
{
    using A = nn::Activation;
    const A a = GENERATE(A::identity, A::sigmoid, A::tanh, A::relu, A::leaky_relu, A::elu, A::selu, A::softplus,
                         A::gelu);
    INFO(nn::activation_name(a));
    // Away from the kink at 0, where finite differences straddle two slopes.
    Tensor<double> x = randn({3, 4}, 11);
    x = xt::where(xt::abs(x) < 0.1, x + 0.3, x);
    auto m = nn::make_activation<double>(a, a == A::leaky_relu ? 0.2 : 1.5);
    const Tensor<double> y = run_module(*m, x);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double v = x.flat(i);
        double expected = 0;
        switch (a) {
        case A::identity: expected = v; break;
        case A::sigmoid: expected = 1 / (1 + std::exp(-v)); break;
        case A::tanh: expected = std::tanh(v); break;
        case A::relu: expected = v > 0 ? v : 0; break;
        case A::leaky_relu: expected = v > 0 ? v : 0.2 * v; break;
        case A::elu: expected = v > 0 ? v : 1.5 * (std::exp(v) - 1); break;
        case A::selu: {
            const double lambda = 1.0507009873554804934193349852946, alpha = 1.6732632423543772848170429916717;
            expected = lambda * (v > 0 ? v : alpha * (std::exp(v) - 1));
            break;
        }
        case A::softplus: expected = std::log1p(std::exp(v)); break;
        case A::gelu: expected = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); break;
        }
        CHECK(y.flat(i) == Approx(expected).epsilon(1e-13).margin(1e-15));
    }
    gradcheck_module(*m, x);
}

TEST_CASE("Sequential applies its children in order and names them by position", "[nn][sequential]")
{
    nn::Rng rng(2);
    auto lin1 = std::make_shared<nn::Linear<double>>(3, 4, rng);
    auto lin2 = std::make_shared<nn::Linear<double>>(4, 2, rng);
    nn::Sequential<double> net{lin1, std::make_shared<nn::Tanh<double>>(), lin2};
    CHECK(net.size() == 3);
    CHECK(&net[0] == lin1.get());
    CHECK_THROWS_WITH(net[3], Catch::Contains("index 3") && Catch::Contains("3 layers"));
    CHECK(parameter_names(net) == Names{"0.weight", "0.bias", "2.weight", "2.bias"});

    const Tensor<double> x = randn({5, 3}, 3);
    Tape<double> tape;
    const auto xv = tape.constant(x);
    const Tensor<double> direct = (*lin2)(ad::tanh((*lin1)(xv))).value();
    const Tensor<double> seq = net(xv).value();
    CHECK(xt::allclose(seq, direct, 0.0, 0.0));
    gradcheck_module(net, x);

    nn::Sequential<double> empty;
    CHECK(xt::allclose(run_module(empty, x), x, 0.0, 0.0));
}

// ---------------------------------------------------------------------------------------------
// Residual

TEST_CASE("Residual computes z + f(z) (seed 002) and is gradchecked", "[nn][residual][gradcheck]")
{
    nn::Rng rng(6);
    auto lin = std::make_shared<nn::Linear<double>>(4, 4, rng);
    auto branch = std::make_shared<nn::Sequential<double>>(
        std::initializer_list<std::shared_ptr<nn::Module<double>>>{lin, std::make_shared<nn::Tanh<double>>()});
    nn::Residual<double> res(branch);
    CHECK(parameter_names(res) == Names{"branch.0.weight", "branch.0.bias"});
    const Tensor<double> z = randn({3, 4}, 7);
    CHECK(xt::allclose(run_module(res, z), z + run_module(*branch, z), 1e-15, 1e-15));
    gradcheck_module(res, z);

    // With W = 0, b = 0 and sigma(0) = 0 the block is the identity map.
    lin->weight().mutable_value().fill(0);
    lin->bias()->mutable_value().fill(0);
    CHECK(xt::allclose(run_module(res, z), z, 0.0, 0.0));
}

TEST_CASE("Residual refuses a branch that changes the shape", "[nn][residual][errors]")
{
    nn::Rng rng(6);
    nn::Residual<double> res(std::make_shared<nn::Linear<double>>(4, 1, rng));
    Tape<double> tape;
    CHECK_THROWS_WITH(res(tape.constant(randn({3, 4}, 1))),
                      Catch::Contains("Residual") && Catch::Contains("[3, 4]") && Catch::Contains("[3, 1]"));
}

// ---------------------------------------------------------------------------------------------
// Dropout

TEST_CASE("Dropout is the identity in eval and rejects p outside 0 <= p < 1", "[nn][dropout]")
{
    nn::Dropout<double> d(0.5, 1);
    d.eval();
    const Tensor<double> x = randn({4, 5}, 1);
    CHECK(xt::allclose(run_module(d, x), x, 0.0, 0.0));
    CHECK_THROWS_WITH(nn::Dropout<double>(1.0, 1), Catch::Contains("Dropout") && Catch::Contains("[0, 1)"));
    CHECK_THROWS_AS(nn::Dropout<double>(-0.1, 1), ad::Error);
    CHECK_THROWS_AS(nn::Dropout<double>(std::nan(""), 1), ad::Error);
}

TEST_CASE("Dropout in training keeps 1 - p of the units and scales them by 1 / (1 - p)", "[nn][dropout]")
{
    const double p = GENERATE(0.1, 0.5, 0.8);
    nn::Dropout<double> d(p, 42);
    const Tensor<double> x = Tensor<double>(xt::ones<double>({200, 500})) * 3.0;
    const Tensor<double> y = run_module(d, x);
    const std::size_t N = x.size();
    const double scaled = 3.0 / (1 - p);
    const std::size_t kept = xt::sum(xt::not_equal(y, 0.0))();
    // Every unit is either dropped (0) or kept and scaled.
    CHECK(xt::all(xt::equal(y, 0.0) || xt::isclose(y, scaled, 1e-15, 0.0)));
    // The number kept is Binomial(N, 1 - p): within 5 standard deviations of N (1 - p).
    const double sd = std::sqrt(N * p * (1 - p));
    CHECK(std::abs(double(kept) - N * (1 - p)) < 5 * sd);
    CHECK(xt::allclose(d.last_mask() * x / (1 - p), y, 1e-15, 0.0));
}

TEST_CASE("inverted dropout and seed 002's prediction-time scaling agree in expectation", "[nn][dropout]")
{
    // Over many masks m (keep probability q = 1 - p):
    //   inverted:  mean of x m / q  ->  x      (what inverted dropout predicts with),
    //   seed 002:  mean of x m      ->  q x    (what seed 002 predicts with: its rho is q).
    // Each sample of x_i m_i / q has variance x_i^2 p / q, so the mean of K samples has standard
    // error |x_i| sqrt(p / (q K)); every element must fall within 5 standard errors.
    const double p = 0.3, q = 1 - p;
    const std::size_t K = 4000;
    const Tensor<double> x = randn({8, 6}, 5);
    nn::Dropout<double> d(p, 7);
    Tensor<double> sum_inverted = xt::zeros<double>(x.shape()), sum_seed002 = xt::zeros<double>(x.shape());
    for (std::size_t k = 0; k < K; ++k) {
        sum_inverted += run_module(d, x);
        sum_seed002 += x * d.last_mask();
    }
    const Tensor<double> mean_inverted = sum_inverted / double(K), mean_seed002 = sum_seed002 / double(K);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double se = std::abs(x.flat(i)) * std::sqrt(p / (q * K));
        CHECK(std::abs(mean_inverted.flat(i) - x.flat(i)) < 5 * se);
        CHECK(std::abs(mean_seed002.flat(i) - q * x.flat(i)) < 5 * q * se);
    }
    // And evaluation mode returns exactly x, the expectation of the training output.
    d.eval();
    CHECK(xt::allclose(run_module(d, x), x, 0.0, 0.0));
}

TEST_CASE("Dropout with a restarted seed repeats its mask and is gradchecked", "[nn][dropout][gradcheck]")
{
    nn::Dropout<double> d(0.4, 9);
    const Tensor<double> x = randn({5, 6}, 2);
    const Tensor<double> first = run_module(d, x);
    const Tensor<double> second = run_module(d, x);
    CHECK_FALSE(xt::allclose(first, second, 0.0, 0.0));  // a new mask each pass
    d.seed(9);
    CHECK(xt::allclose(run_module(d, x), first, 0.0, 0.0));
    gradcheck_module(d, x, [&] { d.seed(9); });
    // Without the restart every evaluation draws a new mask, and the check must notice.
    CHECK_FALSE(module_gradcheck(d, x).ok);
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

TEST_CASE("LayerNorm output has mean 0 and variance var / (var + eps) per row", "[nn][layernorm]")
{
    const double eps = GENERATE(0.0, 1e-5, 0.1);
    nn::LayerNorm<double> ln(7, eps);
    const Tensor<double> x = randn({5, 7}, 3, 2.0) + 4.0;
    const Tensor<double> y = run_module(ln, x);
    for (std::size_t r = 0; r < 5; ++r) {
        const Tensor<double> row = xt::view(x, r), out = xt::view(y, r);
        const double mu = xt::mean(row)(), var = xt::mean(xt::square(row - mu))();
        // mean(out) is 0 but for the kernel's mean (within n ulps of sum |x| / n, times rstd) and
        // the roundings of out and of its sum: at most 5e-15 for these rows, in any summation order
        CHECK(std::abs(xt::mean(out)()) < 1e-14);
        // With eps = 0 this is exactly 1. The kernel's variance and xt::mean's each sum n = 7
        // non-negative terms (the mean's error enters only squared): (3 n + 20) ulps, 4.6e-15, apart
        CHECK(xt::mean(xt::square(out))() == Approx(var / (var + eps)).epsilon(1e-14));
    }
}

TEST_CASE("LayerNorm equals seed 001's sqrt(n_{l+1} - 1) / s form, n_{l+1} counting the bias unit",
          "[nn][layernorm][seeds]")
{
    // Seed 001: a layer of m = n_{l+1} - 1 units (the last of its n_{l+1} is the bias unit),
    // zbar = (1/m) sum z_i, s = ||z - zbar||_2, h = sqrt(m) / s * v (.) (z - zbar) + u.
    const std::size_t m = 6;
    nn::Rng rng(8);
    nn::LayerNorm<double> ln(m, 0.0);
    ln.weight().set_value(nn::normal<double>({m}, 1.0, 0.5, rng));  // v
    ln.bias().set_value(nn::normal<double>({m}, 0.0, 0.5, rng));  // u
    const Tensor<double> z = randn({4, m}, 9, 3.0);
    const Tensor<double> y = run_module(ln, z);
    for (std::size_t r = 0; r < 4; ++r) {
        const Tensor<double> row = xt::view(z, r);
        const Tensor<double> centred = row - xt::mean(row)();
        const double s = std::sqrt(xt::sum(xt::square(centred))());
        const Tensor<double> seed001 = std::sqrt(double(m)) / s * ln.weight().value() * centred + ln.bias().value();
        // the kernel's vectorised mean and variance against xt::'s: at most 19 ulps of |weight xhat|, plus
        // both means' errors times rstd |weight| and the bias's rounding: 7.3e-15 at most for this seed
        CHECK(xt::allclose(xt::view(y, r), seed001, 1e-14, 1e-14));
        // Reading sqrt(n - 1) with n = m (the unbiased deviation) is the same map scaled by
        // sqrt((m - 1) / m) before the weight: a different normalisation, not the seed's.
        const Tensor<double> unbiased = std::sqrt(double(m - 1)) / s * ln.weight().value() * centred + ln.bias().value();
        const Tensor<double> normalised = (xt::view(y, r) - ln.bias().value()) / ln.weight().value();
        CHECK(xt::allclose(unbiased,
                           std::sqrt(double(m - 1) / double(m)) * ln.weight().value() * normalised + ln.bias().value(),
                           1e-14, 1e-14));  // as above, plus 7 roundings: 1.1e-14 at most
    }
    // With eps > 0 the two differ by the factor sqrt(var / (var + eps)) on the normalised part.
    nn::LayerNorm<double> ln_eps(m, 1e-5);
    ln_eps.weight().set_value(ln.weight().value());
    ln_eps.bias().set_value(ln.bias().value());
    const Tensor<double> y_eps = run_module(ln_eps, z);
    for (std::size_t r = 0; r < 4; ++r) {
        const Tensor<double> row = xt::view(z, r);
        const double var = xt::mean(xt::square(row - xt::mean(row)()))();
        const Tensor<double> a = xt::view(y_eps, r) - ln.bias().value(), b = xt::view(y, r) - ln.bias().value();
        // a and b share the kernel's mean: their ratio differs from the factor by a few roundings,
        // and removing the bias costs an ulp of y each; 3.7e-15 at most for this seed
        CHECK(xt::allclose(a, b * std::sqrt(var / (var + 1e-5)), 1e-14, 1e-14));
    }
}

TEST_CASE("LayerNorm is gradchecked with random weight and bias, in 2-D and 3-D", "[nn][layernorm][gradcheck]")
{
    nn::Rng rng(10);
    nn::LayerNorm<double> ln(5);
    ln.weight().set_value(nn::normal<double>({5}, 1.0, 0.5, rng));
    ln.bias().set_value(nn::normal<double>({5}, 0.0, 0.5, rng));
    CHECK(parameter_names(ln) == Names{"weight", "bias"});
    gradcheck_module(ln, randn({4, 5}, 11));
    gradcheck_module(ln, randn({2, 3, 5}, 12));
    Tape<double> tape;
    CHECK_THROWS_WITH(ln(tape.constant(randn({4, 6}, 1))),
                      Catch::Contains("LayerNorm") && Catch::Contains("[4, 6]") && Catch::Contains("5 features"));
}

// ---------------------------------------------------------------------------------------------
// BatchNorm1d

TEST_CASE("BatchNorm1d normalises each feature over the batch and tracks running statistics",
          "[nn][batchnorm]")
{
    const double momentum = 0.1, eps = 1e-5;
    nn::BatchNorm1d<double> bn(3, momentum, eps);
    const Tensor<double> x = randn({6, 3}, 13, 2.0) + 1.5;
    const Tensor<double> y = run_module(bn, x);
    for (std::size_t f = 0; f < 3; ++f) {
        const Tensor<double> col = xt::view(x, xt::all(), f), out = xt::view(y, xt::all(), f);
        const double mu = xt::mean(col)(), var = xt::mean(xt::square(col - mu))();
        // As for LayerNorm, with B = 6: |mean(out)| <= 2.8e-15, and mean(out^2) within
        // (3 B + 20) ulps, 4.2e-15, of var / (var + eps), whatever order either mean sums in
        CHECK(std::abs(xt::mean(out)()) < 5e-15);
        CHECK(xt::mean(xt::square(out))() == Approx(var / (var + eps)).epsilon(1e-14));
        // running_mean = 0.9 * 0 + 0.1 * mean; running_var = 0.9 * 1 + 0.1 * var * B / (B - 1).
        // The op's mean and xt::mean sum 6 terms in their own orders: 2 (B - 1) ulps of sum |x|,
        // which is at most 1.9 |sum x| here, so 2.5e-15; the variances' orders move the running
        // variance by at most 1.3e-15.
        CHECK(bn.running_mean()(f) == Approx(momentum * mu).epsilon(5e-15));
        CHECK(bn.running_var()(f) == Approx((1 - momentum) + momentum * var * 6.0 / 5.0).epsilon(5e-15));
    }
    CHECK(bn.num_batches_tracked()() == 1.0);  // PyTorch's count of training passes
    // Evaluation uses the running statistics, not the batch's, and counts nothing.
    bn.eval();
    const Tensor<double> x2 = randn({2, 3}, 14);
    const Tensor<double> y2 = run_module(bn, x2);
    CHECK(bn.num_batches_tracked()() == 1.0);
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t f = 0; f < 3; ++f)
            // the same x - mean and sqrt; times 1 / sqrt against a division: 3 ulps apart at most
            CHECK(y2(b, f) == Approx((x2(b, f) - bn.running_mean()(f)) / std::sqrt(bn.running_var()(f) + eps))
                                  .epsilon(1e-15));
}

TEST_CASE("BatchNorm1d is gradchecked in training and in evaluation", "[nn][batchnorm][gradcheck]")
{
    nn::Rng rng(15);
    nn::BatchNorm1d<double> bn(4);
    bn.weight().set_value(nn::normal<double>({4}, 1.0, 0.5, rng));
    bn.bias().set_value(nn::normal<double>({4}, 0.0, 0.5, rng));
    gradcheck_module(bn, randn({5, 4}, 16));
    bn.eval();
    gradcheck_module(bn, randn({3, 4}, 17));
}

TEST_CASE("BatchNorm1d rejects a wrong shape and a batch of one in training", "[nn][batchnorm][errors]")
{
    nn::BatchNorm1d<double> bn(4);
    Tape<double> tape;
    CHECK_THROWS_WITH(bn(tape.constant(randn({5, 3}, 1))),
                      Catch::Contains("BatchNorm1d") && Catch::Contains("[5, 3]") && Catch::Contains("[batch, 4]"));
    CHECK_THROWS_WITH(bn(tape.constant(randn({1, 4}, 1))), Catch::Contains("at least 2"));
    bn.eval();
    CHECK_NOTHROW(bn(tape.constant(randn({1, 4}, 1))));
}

// ---------------------------------------------------------------------------------------------
// StochasticDepth

TEST_CASE("StochasticDepth drops whole examples of the branch and scales the kept ones", "[nn][stochastic_depth]")
{
    const double p = 0.3;
    nn::Rng rng(18);
    auto branch = std::make_shared<nn::Linear<double>>(4, 4, rng);
    nn::StochasticDepth<double> sd(branch, p, 19);
    CHECK(parameter_names(sd) == Names{"branch.weight", "branch.bias"});
    const std::size_t B = 4000;
    const Tensor<double> x = randn({B, 4}, 20);
    const Tensor<double> f = run_module(*branch, x);
    const Tensor<double> y = run_module(sd, x);
    std::size_t kept = 0;
    for (std::size_t b = 0; b < B; ++b) {
        const Tensor<double> row = xt::view(y, b), frow = xt::view(f, b);
        if (xt::all(xt::equal(row, 0.0))) continue;
        ++kept;
        CHECK(xt::allclose(row, frow / (1 - p), 1e-15, 0.0));
    }
    CHECK(std::abs(double(kept) - B * (1 - p)) < 5 * std::sqrt(B * p * (1 - p)));

    // Eval needs no change: the branch itself, which is the training output's expectation.
    sd.eval();
    CHECK(xt::allclose(run_module(sd, x), f, 0.0, 0.0));
    CHECK_THROWS_AS(nn::StochasticDepth<double>(1.0, 1), ad::Error);
}

TEST_CASE("Residual with StochasticDepth is z or z + f(z) / (1 - p) per example, gradchecked",
          "[nn][stochastic_depth][gradcheck]")
{
    const double p = 0.5;
    nn::Rng rng(21);
    auto branch = std::make_shared<nn::Linear<double>>(3, 3, rng);
    auto sd = std::make_shared<nn::StochasticDepth<double>>(branch, p, 22);
    nn::Residual<double> block(sd);
    const Tensor<double> z = randn({8, 3}, 23);
    sd->seed(22);
    const Tensor<double> y = run_module(block, z);
    const Tensor<double> f = run_module(*branch, z);
    const Tensor<double>& mask = sd->last_mask();
    std::size_t dropped = 0;
    for (std::size_t b = 0; b < 8; ++b) {
        const bool kept = mask(b, 0) == 1.0;
        dropped += !kept;
        const Tensor<double> expected = kept ? Tensor<double>(xt::view(z, b) + xt::view(f, b) / (1 - p))
                                             : Tensor<double>(xt::view(z, b));
        CHECK(xt::allclose(xt::view(y, b), expected, 1e-15, 1e-15));
    }
    CHECK(dropped > 0);  // this seed drops some examples and keeps others
    CHECK(dropped < 8);
    gradcheck_module(block, z, [&] { sd->seed(22); });
}

// ---------------------------------------------------------------------------------------------
// MLP builder

TEST_CASE("mlp builds the plain layout PyTorch's Sequential would", "[nn][mlp]")
{
    nn::Rng rng(24);
    nn::MLPOptions o;
    o.sizes = {3, 5, 4, 2};
    o.activation = nn::Activation::tanh;
    o.layer_norm = true;
    o.dropout = 0.25;
    auto net = nn::mlp<double>(o, rng);
    // Linear, LayerNorm, Tanh, Dropout for each hidden layer, then the output Linear.
    CHECK(net->size() == 9);
    CHECK(dynamic_cast<nn::Linear<double>*>(&(*net)[0]));
    CHECK(dynamic_cast<nn::LayerNorm<double>*>(&(*net)[1]));
    CHECK(dynamic_cast<nn::Tanh<double>*>(&(*net)[2]));
    CHECK(dynamic_cast<nn::Dropout<double>*>(&(*net)[3]));
    CHECK(dynamic_cast<nn::Linear<double>*>(&(*net)[8]));
    CHECK(parameter_names(*net) ==
          Names{"0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias", "8.weight", "8.bias"});
    Tape<double> tape;
    CHECK(net->forward(tape.constant(randn({7, 3}, 1))).shape() == std::vector<std::size_t>{7, 2});
}

TEST_CASE("the summary of a small MLP names each layer with its hyperparameters", "[nn][module][summary]")
{
    nn::Rng rng(3);
    nn::MLPOptions o;
    o.sizes = {4, 3, 2};
    o.layer_norm = true;
    o.dropout = 0.1;
    auto net = nn::mlp<float>(o, rng);
    CHECK(net->summary() ==
          "Sequential\n"
          "  0: Linear(in_features=4, out_features=3, bias=true)\n"
          "  1: LayerNorm([3], eps=1e-05)\n"
          "  2: ReLU\n"
          "  3: Dropout(p=0.1)\n"
          "  4: Linear(in_features=3, out_features=2, bias=true)\n"
          "  0.weight [3, 4] 12\n"
          "  0.bias [3] 3\n"
          "  1.weight [3] 3\n"
          "  1.bias [3] 3\n"
          "  4.weight [2, 3] 6\n"
          "  4.bias [2] 2\n"
          "parameters: 29\n");
}

TEST_CASE("describe() shows each layer's hyperparameters and a plain class name by default", "[nn][module][summary]")
{
    struct Custom : nn::Module<double> {
        Var<double> forward(const Var<double>& x) override { return x; }
    };
    nn::Rng rng(5);
    ad::Conv2dOptions pad;
    pad.padding = {1, 1};
    CHECK(nn::Conv2d<double>(1, 8, 3, rng, pad).describe() ==
          "Conv2d(1, 8, kernel_size=[3, 3], stride=[1, 1], padding=[1, 1])");
    ad::Conv2dOptions strided;
    strided.stride = {2, 1};
    strided.groups = 2;
    CHECK(nn::Conv2d<double>(4, 6, ad::Size2{3, 5}, rng, strided, nn::no_bias).describe() ==
          "Conv2d(4, 6, kernel_size=[3, 5], stride=[2, 1], groups=2, bias=false)");
    CHECK(nn::Linear<double>(2, 5, rng, nn::no_bias).describe() == "Linear(in_features=2, out_features=5, bias=false)");
    CHECK(nn::LeakyReLU<double>().describe() == "LeakyReLU(negative_slope=0.01)");
    CHECK(nn::ELU<double>(0.5).describe() == "ELU(alpha=0.5)");
    CHECK(nn::GELU<double>().describe() == "GELU");
    CHECK(nn::MaxPool2d<double>(2).describe() == "MaxPool2d(kernel_size=[2, 2], stride=[2, 2], padding=[0, 0])");
    CHECK(nn::BatchNorm2d<float>(8).describe() == "BatchNorm2d(8, eps=1e-05, momentum=0.1)");
    CHECK(nn::BatchNorm1d<double>(3, 0.2).describe() == "BatchNorm1d(3, eps=1e-05, momentum=0.2)");
    CHECK(nn::StochasticDepth<double>(0.25, 1).describe() == "StochasticDepth(p=0.25)");
    CHECK(nn::Residual<double>(std::make_shared<nn::Tanh<double>>()).describe() == "Residual");
    CHECK(nn::Flatten<double>().describe() == "Flatten");
    CHECK(Custom().describe() == "Custom");
}

TEST_CASE("mlp rejects inconsistent options", "[nn][mlp][errors]")
{
    nn::Rng rng(25);
    nn::MLPOptions o;
    o.sizes = {3};
    CHECK_THROWS_WITH(nn::mlp<double>(o, rng), Catch::Contains("at least {in, out}"));
    o.sizes = {3, 4, 5, 2};
    o.residual = true;
    CHECK_THROWS_WITH(nn::mlp<double>(o, rng), Catch::Contains("hidden sizes must be equal") && Catch::Contains("[3, 4, 5, 2]"));
    o.residual = false;
    o.stochastic_depth = 0.1;
    CHECK_THROWS_WITH(nn::mlp<double>(o, rng), Catch::Contains("residual = true"));
    o.stochastic_depth = 0;
    o.dropout = 1.0;
    CHECK_THROWS_WITH(nn::mlp<double>(o, rng), Catch::Contains("dropout"));
}

TEST_CASE("an MLP with residual blocks, layer norm, dropout and stochastic depth is gradchecked as a whole",
          "[nn][mlp][gradcheck]")
{
    nn::Rng rng(26);
    nn::MLPOptions o;
    o.sizes = {4, 6, 6, 6, 3};
    o.activation = GENERATE(nn::Activation::tanh, nn::Activation::gelu);
    o.residual = true;
    o.layer_norm = true;
    o.dropout = 0.2;
    o.stochastic_depth = 0.25;
    auto net = nn::mlp<double>(o, rng);
    // A fixed mask: every random module restarts its generator before each forward pass.
    std::vector<std::function<void()>> restarts;
    std::uint64_t s = 100;
    for (auto& [name, m] : net->named_modules()) {
        if (auto* d = dynamic_cast<nn::Dropout<double>*>(m)) restarts.push_back([d, s] { d->seed(s); });
        if (auto* sd = dynamic_cast<nn::StochasticDepth<double>*>(m)) restarts.push_back([sd, s] { sd->seed(s); });
        ++s;
    }
    CHECK(restarts.size() == 5);  // input_dropout, and dropout + drop_path in each of two blocks
    auto reset = [&] {
        for (auto& r : restarts) r();
    };
    const auto res = gradcheck_module(*net, randn({5, 4}, 27), reset);
    CHECK(res.checked == 5 * 4 + net->parameter_count());

    // The same network in eval mode (no randomness at all).
    net->eval();
    gradcheck_module(*net, randn({5, 4}, 28));
}

TEST_CASE("a plain MLP with each initialisation is gradchecked, and float runs the same model",
          "[nn][mlp][gradcheck]")
{
    const auto scheme = GENERATE(nn::InitScheme::pytorch_default, nn::InitScheme::xavier_normal,
                                 nn::InitScheme::he_normal, nn::InitScheme::orthogonal);
    INFO(nn::init_scheme_name(scheme));
    nn::MLPOptions o;
    o.sizes = {3, 5, 4, 2};
    o.activation = nn::Activation::sigmoid;
    o.init = scheme;
    nn::Rng rng(29);
    auto net = nn::mlp<double>(o, rng);
    gradcheck_module(*net, randn({4, 3}, 30));

    nn::Rng rng_f(29);
    auto net_f = nn::mlp<float>(o, rng_f);
    Tape<float> tape;
    const Tensor<float> x = xt::cast<float>(randn({4, 3}, 30));
    const Tensor<double> y = run_module(*net, randn({4, 3}, 30));
    const Tensor<float> yf = net_f->forward(tape.constant(x)).value();
    CHECK(xt::allclose(xt::cast<double>(yf), y, 1e-4, 1e-5));
}
