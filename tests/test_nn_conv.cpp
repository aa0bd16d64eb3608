// The convolutional modules: parameter names and shapes as PyTorch's, He initialisation by
// fan-in, BatchNorm2d's (and BatchNorm1d's) running statistics and evaluation mode against their
// formulas, a small CNN gradchecked end to end, and the modules' errors.
#include "gradcheck_helpers.hpp"

#include "nn/nn.hpp"

#include <cmath>

using namespace adtest;
using ad::Tape;
namespace nn = ad::nn;

TEST_CASE("Conv2d has PyTorch's parameter names and shapes and He-normal weights by fan-in", "[nn][conv]")
{
    nn::Rng rng(3);
    ad::Conv2dOptions o;
    o.groups = 2;
    nn::Conv2d<double> conv(8, 64, ad::Size2{3, 5}, rng, o);
    const auto named = conv.named_parameters();
    REQUIRE(named.size() == 2);
    CHECK(named[0].first == "weight");
    CHECK(named[1].first == "bias");
    CHECK(conv.weight().value().shape() == std::vector<std::size_t>{64, 4, 3, 5});
    CHECK(conv.bias()->value().shape() == std::vector<std::size_t>{64});
    // fan_in = 4 * 3 * 5 = 60: variance 2 / 60. Over 3840 draws the sample variance is within
    // about 2.3% (one standard error); 10% is more than four.
    const auto& w = conv.weight().value();
    double s = 0, q = 0;
    for (double v : w) s += v, q += v * v;
    const double n = double(w.size()), var = q / n - (s / n) * (s / n);
    CHECK(var == Approx(2.0 / 60).epsilon(0.1));
    CHECK(std::abs(s / n) < 4 * std::sqrt(2.0 / 60 / n));
    for (double b : conv.bias()->value()) CHECK(b == 0);
    nn::Conv2d<double> nobias(3, 4, 3, rng, {}, nn::no_bias);
    CHECK(nobias.bias() == nullptr);
    CHECK(nobias.named_parameters().size() == 1);
}

TEST_CASE("BatchNorm2d keeps PyTorch's running statistics and uses them in evaluation", "[nn][conv]")
{
    nn::BatchNorm2d<double> bn(3, 0.1, 1e-5);
    const auto params = bn.named_parameters();
    const auto buffers = bn.named_buffers();
    REQUIRE(params.size() == 2);
    CHECK(params[0].first == "weight");
    CHECK(params[1].first == "bias");
    REQUIRE(buffers.size() == 3);
    CHECK(buffers[0].first == "running_mean");
    CHECK(buffers[1].first == "running_var");
    CHECK(buffers[2].first == "num_batches_tracked");
    CHECK(bn.num_batches_tracked().dimension() == 0);
    CHECK(bn.num_batches_tracked()() == 0.0);

    const Tensor<double> x = randn({4, 3, 2, 5}, 21, 3.0) + 2.0;
    Tape<double> tape;
    bn(tape.constant(x));
    // running_mean = 0.9 * 0 + 0.1 * mean, running_var = 0.9 * 1 + 0.1 * unbiased variance (m = 40).
    for (std::size_t c = 0; c < 3; ++c) {
        double s = 0, q = 0;
        for (std::size_t n = 0; n < 4; ++n)
            for (std::size_t i = 0; i < 2; ++i)
                for (std::size_t j = 0; j < 5; ++j) s += x(n, c, i, j);
        const double mu = s / 40;
        for (std::size_t n = 0; n < 4; ++n)
            for (std::size_t i = 0; i < 2; ++i)
                for (std::size_t j = 0; j < 5; ++j) q += (x(n, c, i, j) - mu) * (x(n, c, i, j) - mu);
        CHECK(bn.running_mean()(c) == Approx(0.1 * mu).epsilon(1e-12));
        CHECK(bn.running_var()(c) == Approx(0.9 + 0.1 * q / 39).epsilon(1e-12));
    }
    CHECK(bn.num_batches_tracked()() == 1.0);
    bn.weight().set_value(Tensor<double>{2.0, -1.0, 0.5});
    bn.bias().set_value(Tensor<double>{0.1, 0.2, 0.3});
    bn.eval();
    tape.clear();
    const auto y = bn(tape.constant(x));
    for (std::size_t c = 0; c < 3; ++c)
        CHECK(y.value()(1, c, 1, 3) == Approx((x(1, c, 1, 3) - bn.running_mean()(c)) /
                                                  std::sqrt(bn.running_var()(c) + 1e-5) * bn.weight().value()(c) +
                                              bn.bias().value()(c))
                                           .epsilon(1e-12));
    // evaluation mode is an affine map of x, differentiable
    require_gradcheck([&](const Vars& v) { return bn(v[0]); }, {x});
}

namespace {

// Sets a batch norm's running statistics, as loading a state dict would.
void set_running(nn::Module<double>& bn, const Tensor<double>& mean, const Tensor<double>& var)
{
    for (auto& [name, t] : bn.named_buffers()) {
        if (name == "running_mean") *t = mean;
        if (name == "running_var") *t = var;
    }
}

// In evaluation mode: sum(c y) is gradchecked with respect to weight and bias (gradcheck_module),
// and y with respect to x to second order.
void check_eval_gradients(nn::Module<double>& bn, const Tensor<double>& x)
{
    const Tensor<double> c = randn(Shape(x.shape().begin(), x.shape().end()), 31);
    const auto r = nn::gradcheck_module<double>(
        bn, [&](nn::Module<double>& m, Tape<double>& tape) { return ad::sum(m(tape.constant(x)) * tape.constant(c)); });
    INFO(r.report());
    CHECK(r.ok);
    CHECK(r.checked == 2 * x.shape()[1]);
    require_gradcheck([&](const Vars& v) { return bn(v[0]); }, {x});
}

}  // namespace

TEST_CASE("BatchNorm2d and BatchNorm1d in evaluation give (x - running_mean) / sqrt(running_var + eps) weight + bias",
          "[nn][conv][batchnorm]")
{
    Tape<double> tape;
    SECTION("by hand")
    {
        // BatchNorm2d, eps 0: sqrt(running_var) = {2, 0.5}.
        nn::BatchNorm2d<double> bn2(2, 0.1, 0.0);
        set_running(bn2, {1.0, -2.0}, {4.0, 0.25});
        bn2.weight().set_value(Tensor<double>{3.0, -1.0});
        bn2.bias().set_value(Tensor<double>{0.5, 2.0});
        bn2.eval();
        // (5 - 1) / 2 * 3 + 0.5 = 6.5, (-3 - 1) / 2 * 3 + 0.5 = -5.5;
        // (0 + 2) / 0.5 * -1 + 2 = -2, (-2.5 + 2) / 0.5 * -1 + 2 = 3
        const auto y2 = bn2(tape.constant(Tensor<double>{{{{5.0, -3.0}}, {{0.0, -2.5}}}}));
        CHECK_THAT(y2.value(), Equals(Tensor<double>{{{{6.5, -5.5}}, {{-2.0, 3.0}}}}));
        // BatchNorm1d, eps 0.5: sqrt(running_var + eps) = {1, 2, 4}.
        nn::BatchNorm1d<double> bn1(3, 0.1, 0.5);
        set_running(bn1, {0.0, 1.0, -1.0}, {0.5, 3.5, 15.5});
        bn1.weight().set_value(Tensor<double>{2.0, 0.5, -4.0});
        bn1.bias().set_value(Tensor<double>{1.0, 0.0, 0.25});
        bn1.eval();
        // 3 / 1 * 2 + 1 = 7, (5 - 1) / 2 * 0.5 = 1, (7 + 1) / 4 * -4 + 0.25 = -7.75; and the second row
        const auto y1 = bn1(tape.constant(Tensor<double>{{3.0, 5.0, 7.0}, {-1.0, 1.0, -1.0}}));
        CHECK_THAT(y1.value(), Equals(Tensor<double>{{7.0, 1.0, -7.75}, {-1.0, 0.0, 0.25}}));
    }
    SECTION("against the formula's loop, and gradients against central differences")
    {
        const Shape xs = GENERATE(Shape{4, 3, 2, 5}, Shape{2, 3}, Shape{5, 4}, Shape{1, 4, 3, 3});
        CAPTURE(xs);
        const std::size_t N = xs[0], C = xs[1], P = xs.size() == 4 ? xs[2] * xs[3] : 1;
        std::unique_ptr<nn::BatchNorm<double>> bn;
        if (xs.size() == 4) bn = std::make_unique<nn::BatchNorm2d<double>>(C, 0.1, 1e-3);
        else bn = std::make_unique<nn::BatchNorm1d<double>>(C, 0.1, 1e-3);
        const Tensor<double> mean = randn({C}, 32), var = uniform({C}, 0.1, 3.0, 33);
        const Tensor<double> w = randn({C}, 34), b = randn({C}, 35);
        set_running(*bn, mean, var);
        bn->weight().set_value(w);
        bn->bias().set_value(b);
        bn->eval();
        const Tensor<double> x = randn(xs, 36, 2.0) + 0.5;
        const Tensor<double> y = (*bn)(tape.constant(x)).value();
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t p = 0; p < P; ++p) {
                    const std::size_t k = (n * C + c) * P + p;
                    // the module folds weight / sqrt(var + eps) and the shift first: a few ulps of
                    // the largest term, |x| / sqrt(var + eps) |w| <= 50 here
                    const double want = (x.flat(k) - mean(c)) / std::sqrt(var(c) + 1e-3) * w(c) + b(c);
                    CHECK(y.flat(k) == Approx(want).epsilon(1e-14).margin(1e-13));
                }
        check_eval_gradients(*bn, x);
        CHECK_THAT(bn->running_mean(), Equals(mean));  // evaluation leaves the statistics alone
        CHECK_THAT(bn->running_var(), Equals(var));
    }
}

TEST_CASE("a small CNN of the modules is gradchecked end to end", "[nn][conv][gradcheck]")
{
    nn::Rng rng(5);
    ad::Conv2dOptions same;
    same.padding = {1, 1};
    nn::Sequential<double> net{std::make_shared<nn::Conv2d<double>>(2, 3, 3, rng, same),
                               std::make_shared<nn::BatchNorm2d<double>>(3),
                               std::make_shared<nn::Tanh<double>>(),
                               std::make_shared<nn::MaxPool2d<double>>(2),
                               std::make_shared<nn::AvgPool2d<double>>(ad::Pool2dOptions(2, 1)),
                               std::make_shared<nn::Flatten<double>>(),
                               std::make_shared<nn::Linear<double>>(3, 2, rng)};
    std::vector<std::string> names;
    for (auto& [n, p] : net.named_parameters()) names.push_back(n);
    CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "6.weight", "6.bias"});
    const Tensor<double> x = randn({3, 2, 4, 4}, 22);
    const Tensor<double> c = randn({3, 2}, 23);  // a fixed cotangent: loss = sum(c * net(x))
    auto named = net.named_parameters();
    std::vector<Tensor<double>> values, grads;
    ad::GradcheckOptions opts;
    for (auto& [n, p] : named) values.push_back(p->value()), opts.names.push_back(n);
    Tape<double> tape;
    auto loss_at = [&](const std::vector<Tensor<double>>& v) {
        for (std::size_t i = 0; i < named.size(); ++i) named[i].second->set_value(v[i]);
        tape.clear();
        ad::NoGrad no_grad;
        return ad::sum(net(tape.constant(x)) * tape.constant(c)).item();
    };
    net.zero_grad();
    tape.clear();
    ad::backward(ad::sum(net(tape.constant(x)) * tape.constant(c)));
    for (auto& [n, p] : named) grads.push_back(p->grad);
    const auto r = ad::check_gradient(loss_at, values, grads, opts);
    INFO(r.report());
    CHECK(r.ok);
    CHECK(r.checked == 2 * 3 * 9 + 3 + 3 + 3 + 3 * 2 + 2);
    // and with respect to the input
    require_gradcheck([&](const Vars& v) { return net(v[0]); }, {x});
}

TEST_CASE("the convolutional modules refuse wrong shapes and settings", "[nn][conv][errors]")
{
    using Catch::Matchers::Contains;
    nn::Rng rng(1);
    Tape<float> tape;
    nn::Conv2d<float> conv(3, 4, 3, rng);
    CHECK_THROWS_WITH(conv(tape.constant(Tensor<float>(xt::zeros<float>({2, 2, 5, 5})))),
                      Contains("Conv2d: input has shape [2, 2, 5, 5], expected [batch, 3, height, width]"));
    ad::Conv2dOptions o;
    o.groups = 2;
    CHECK_THROWS_WITH(nn::Conv2d<float>(3, 4, 3, rng, o), Contains("Conv2d: groups = 2 must be >= 1 and divide in = 3"));
    nn::BatchNorm2d<float> bn(4);
    CHECK_THROWS_WITH(bn(tape.constant(Tensor<float>(xt::zeros<float>({2, 3, 5, 5})))),
                      Contains("BatchNorm2d: input has shape [2, 3, 5, 5], expected [batch, 4, height, width]"));
    CHECK_THROWS_WITH(bn(tape.constant(Tensor<float>(xt::zeros<float>({1, 4, 1, 1})))),
                      Contains("BatchNorm2d: training needs at least 2 values per channel"));
}
