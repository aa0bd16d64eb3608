// The convolutional modules: parameter names and shapes as PyTorch's, He initialisation by
// fan-in, BatchNorm2d's running statistics and evaluation mode against their formulas, a small
// CNN gradchecked end to end, and the modules' errors.
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
