// Anomaly mode: the first op whose forward output or whose backward adjoint holds NaN or Inf
// raises ad::Error naming the op, its tape position and the shapes; for backward also the op
// that recorded the input. Off, the same computations run through and leave the NaN in place.
#include "nn/nn.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using ad::Tape;
using ad::Tensor;
using Catch::Contains;

TEST_CASE("anomaly mode is off by default and a scope switches it on and back", "[anomaly]")
{
    CHECK_FALSE(ad::anomaly_enabled());
    {
        ad::DetectAnomaly on;
        CHECK(ad::anomaly_enabled());
        {
            ad::DetectAnomaly off(false);
            CHECK_FALSE(ad::anomaly_enabled());
        }
        CHECK(ad::anomaly_enabled());
    }
    CHECK_FALSE(ad::anomaly_enabled());
}

TEMPLATE_TEST_CASE("forward: log of a negative number names log, its tape position and the shapes",
                   "[anomaly]", float, double)
{
    using T = TestType;
    Tape<T> tape;
    const auto x = tape.variable(Tensor<T>{{1, 2, 3}, {4, -5, 6}});  // position 0
    const auto y = ad::exp(x);                                      // position 1: finite
    {
        ad::DetectAnomaly on;
        REQUIRE_NOTHROW(ad::log(y));
        REQUIRE_THROWS_AS(ad::log(x), ad::Error);
        CHECK_THROWS_WITH(ad::log(x), Contains("anomaly: forward of op 'log'") &&
                                          Contains("tape position 3") && Contains("inputs [2, 3]") &&
                                          Contains("output [2, 3]") && Contains("NaN or Inf"));
    }
    // Off: the NaN goes through without a word, where the log of -5 is.
    const auto z = ad::log(x);
    CHECK(std::isnan(z.value()(1, 1)));
    CHECK(std::isfinite(z.value()(0, 0)));
}

TEST_CASE("forward: 1/0 is an infinity and is reported by div", "[anomaly]")
{
    Tape<double> tape;
    const auto a = tape.variable(Tensor<double>{1.0, 2.0});
    const auto b = tape.constant(Tensor<double>{0.5, 0.0});
    ad::DetectAnomaly on;
    CHECK_THROWS_WITH(a / b, Contains("forward of op 'div'") && Contains("inputs [2], [2]"));
}

TEMPLATE_TEST_CASE("backward: 0/0 in backward only names the op whose VJP made it and the op that recorded the input",
                   "[anomaly]", float, double)
{
    using T = TestType;
    // L = sum(sqrt(t^2) * c) with t = [0, 2], c = [0, 1]. Every forward value is finite, but the
    // VJP of sqrt at 0 is g / (2 sqrt(0)) = 0 / 0 for the cotangent g = c_0 = 0.
    Tape<T> tape;
    const auto t = tape.variable(Tensor<T>{0, 2});        // 0
    const auto c = tape.constant(Tensor<T>{0, 1});        // 1
    ad::DetectAnomaly on;
    const auto s = ad::square(t);                         // 2
    const auto r = ad::sqrt(s);                           // 3
    const auto L = ad::sum(r * c);                        // 4 mul, 5 sum
    CHECK(std::isfinite(L.item()));
    REQUIRE_THROWS_AS(ad::grad(L, {t}), ad::Error);
    CHECK_THROWS_WITH(ad::grad(L, {t}), Contains("anomaly: backward of op 'sqrt'") &&
                                            Contains("tape position 3") && Contains("output [2]") &&
                                            Contains("input 0 of shape [2]") &&
                                            Contains("recorded by op 'square' at tape position 2"));
}

TEST_CASE("backward: without anomaly mode the same sweep returns the NaN", "[anomaly]")
{
    Tape<double> tape;
    const auto t = tape.variable(Tensor<double>{0, 2});
    const auto c = tape.constant(Tensor<double>{0, 1});
    const auto L = ad::sum(ad::sqrt(ad::square(t)) * c);
    const auto g = ad::grad(L, {t})[0];
    CHECK(std::isnan(g(0)));
    CHECK(g(1) == 1.0);  // d sqrt(t^2) / dt = sign(t) at t = 2
}

TEST_CASE("backward: a NaN reaching a parameter's gradient names the parameter leaf", "[anomaly]")
{
    ad::Parameter<double> w(Tensor<double>{0.0, 1.0});
    Tape<double> tape;
    ad::DetectAnomaly on;
    const auto L = ad::sum(ad::sqrt(tape.param(w)));  // forward finite; d sqrt(0) = 1 / 0
    CHECK_THROWS_WITH(ad::backward(L), Contains("backward of op 'sqrt'") && Contains("recorded by op 'param'"));
}

TEST_CASE("a model trained with anomaly mode on gives the same parameters as with it off", "[anomaly]")
{
    auto run = [](bool anomaly) {
        ad::nn::Rng rng(3);
        ad::nn::MLPOptions o;
        o.sizes = {4, 8, 8, 2};
        o.residual = true;
        o.layer_norm = true;
        auto net = ad::nn::mlp<double>(o, rng);
        ad::nn::SGD<double> opt(*net, {0.1});
        const Tensor<double> x{{0.1, 0.2, 0.3, 0.4}, {-1, 0.5, 0.25, 2}};
        ad::DetectAnomaly mode(anomaly);
        Tape<double> tape;
        for (int step = 0; step < 5; ++step) {
            tape.clear();
            opt.zero_grad();
            ad::backward(ad::nn::cross_entropy_loss((*net)(tape.constant(x)), {0, 1}));
            opt.step();
        }
        return net->parameters().front()->value();
    };
    const Tensor<double> on = run(true), off = run(false);
    CHECK(on.shape() == off.shape());
    CHECK(std::equal(on.begin(), on.end(), off.begin()));
}
