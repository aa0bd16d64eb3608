// One tape per thread: two threads training two independent models at once get bit-identical
// parameters to the same two runs done one after the other. The engine's only mutable globals
// are the no-grad and anomaly flags (thread-local) and the tapes' generation counter (atomic);
// scripts/test-threads runs this file under ThreadSanitizer.
#include "nn/nn.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

using ad::Tape;
using ad::Tensor;
namespace nn = ad::nn;

namespace {

// A residual MLP with layer norm and dropout, trained for `steps` AdamW steps (gradients
// clipped) on one fixed random classification batch; returns every parameter after training.
template <class T>
std::vector<Tensor<T>> train(std::uint64_t seed, int steps)
{
    nn::Rng rng(seed);
    nn::MLPOptions o;
    o.sizes = {12, 24, 24, 24, 5};
    o.residual = true;
    o.layer_norm = true;
    o.dropout = 0.1;
    o.activation = nn::Activation::gelu;
    auto net = nn::mlp<T>(o, rng);
    nn::AdamW<T> opt(*net, {});

    std::mt19937_64 gen(seed + 100);
    std::normal_distribution<double> normal;
    Tensor<T> x = Tensor<T>::from_shape({16, 12});
    for (auto& v : x) v = T(normal(gen));
    std::vector<std::int64_t> labels(16);
    for (auto& l : labels) l = static_cast<std::int64_t>(gen() % 5);

    Tape<T> tape;
    for (int step = 0; step < steps; ++step) {
        tape.clear();
        opt.zero_grad();
        const auto loss = nn::cross_entropy_loss((*net)(tape.constant(x)), labels);
        ad::backward(loss);
        nn::clip_grad_norm(*net, 1.0);
        opt.step();
    }
    std::vector<Tensor<T>> out;
    for (auto* p : net->parameters()) out.push_back(p->value());
    return out;
}

template <class T>
bool bit_identical(const std::vector<Tensor<T>>& a, const std::vector<Tensor<T>>& b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].shape() != b[i].shape()) return false;
        if (!std::equal(a[i].begin(), a[i].end(), b[i].begin(),
                        [](T x, T y) { return std::memcmp(&x, &y, sizeof(T)) == 0; }))
            return false;
    }
    return true;
}

}  // namespace

TEMPLATE_TEST_CASE("two models trained on two threads at once match the same runs one after the other",
                   "[threads]", float, double)
{
    constexpr int steps = 40;
    const auto first = train<TestType>(1, steps);
    const auto second = train<TestType>(2, steps);
    REQUIRE_FALSE(bit_identical(first, second));  // different seeds: different models

    std::vector<Tensor<TestType>> a, b;
    std::thread ta([&] { a = train<TestType>(1, steps); });
    std::thread tb([&] { b = train<TestType>(2, steps); });
    ta.join();
    tb.join();
    CHECK(bit_identical(a, first));
    CHECK(bit_identical(b, second));
}

TEST_CASE("NoGrad and anomaly mode are per thread", "[threads]")
{
    bool other_grad = false, other_anomaly = true;
    {
        ad::NoGrad off;
        ad::DetectAnomaly on;
        std::thread t([&] {
            other_grad = ad::grad_enabled();
            other_anomaly = ad::anomaly_enabled();
        });
        t.join();
        CHECK_FALSE(ad::grad_enabled());
        CHECK(ad::anomaly_enabled());
    }
    CHECK(other_grad);
    CHECK_FALSE(other_anomaly);
}

TEMPLATE_TEST_CASE("threads with tapes of their own add into shared parameters' gradients without losing any",
                   "[threads]", float, double)
{
    // Each backward() adds 1 to every element of p.grad and 2 to q.grad; the two threads read
    // the parameters in opposite orders, which must not deadlock their sweeps.
    // The parameters are large enough that unguarded additions overlap and lose updates.
    ad::Parameter<TestType> p(Tensor<TestType>(xt::zeros<TestType>({4096}))),
        q(Tensor<TestType>(xt::zeros<TestType>({1024})));
    constexpr int steps = 10000;
    auto work = [&](bool p_first) {
        Tape<TestType> tape;
        for (int s = 0; s < steps; ++s) {
            tape.clear();
            const auto a = ad::sum(tape.param(p_first ? p : q));
            const auto b = ad::sum(tape.param(p_first ? q : p));
            ad::backward(p_first ? a + b * TestType(2) : a * TestType(2) + b);
        }
    };
    std::thread ta(work, true), tb(work, false);
    ta.join();
    tb.join();
    // exact: integers below 2^24
    CHECK(std::count(p.grad.begin(), p.grad.end(), TestType(2 * steps)) == std::ptrdiff_t(p.grad.size()));
    CHECK(std::count(q.grad.begin(), q.grad.end(), TestType(4 * steps)) == std::ptrdiff_t(q.grad.size()));
}

TEMPLATE_TEST_CASE("threads whose checkpointed blocks write each other's parameters take turns without deadlock",
                   "[threads]", float, double)
{
    // Thread a's sweep writes p and, rerunning its block, q; thread b's the reverse. A rerun that
    // waited for its block's parameter while holding its own would wait for ever.
    ad::Parameter<TestType> p(Tensor<TestType>(xt::zeros<TestType>({1024}))),
        q(Tensor<TestType>(xt::zeros<TestType>({1024})));
    constexpr int steps = 2000;
    auto work = [&](ad::Parameter<TestType>& outer, ad::Parameter<TestType>& inner) {
        Tape<TestType> tape;
        for (int s = 0; s < steps; ++s) {
            tape.clear();
            const auto h = ad::checkpoint(
                [&](const std::vector<ad::Var<TestType>>& in) {
                    return ad::sum(in[0]) + ad::sum(in[0].tape().param(inner));
                },
                {tape.param(outer)});
            ad::backward(h);  // adds 1 to every element of outer.grad and of inner.grad
        }
    };
    std::thread ta(work, std::ref(p), std::ref(q)), tb(work, std::ref(q), std::ref(p));
    ta.join();
    tb.join();
    CHECK(std::count(p.grad.begin(), p.grad.end(), TestType(2 * steps)) == std::ptrdiff_t(p.grad.size()));
    CHECK(std::count(q.grad.begin(), q.grad.end(), TestType(2 * steps)) == std::ptrdiff_t(q.grad.size()));
}

TEST_CASE("functional_call's substitutions are per thread: two threads run one model with their own weights", "[threads]")
{
    nn::Linear<double> model(Tensor<double>{{1.0, 2.0}}, Tensor<double>{0.5});
    model.parameters()[0]->requires_grad_(false);  // frozen: read by both threads, written by none
    auto run = [&](double scale, std::vector<double>& outputs) {
        for (int i = 0; i < 200; ++i) {
            Tape<double> tape;
            const ad::Var<double> b = tape.variable(Tensor<double>{scale});
            const ad::Var<double> y = nn::functional_call(model, {{"bias", b}}, Tensor<double>{1.0, 1.0});
            outputs.push_back(y.value()(0) + ad::grad(ad::sum(y * y), {b})[0](0));
        }
    };
    std::vector<double> a, b;
    std::thread ta(run, 1.0, std::ref(a)), tb(run, -4.0, std::ref(b));
    ta.join();
    tb.join();
    // y = 1 + 2 + bias, d y^2 / d bias = 2 y
    for (const double v : a) CHECK(v == 4.0 + 8.0);
    for (const double v : b) CHECK(v == -1.0 - 2.0);
    Tape<double> tape;
    CHECK(model(tape.constant(Tensor<double>{1.0, 1.0})).value()(0) == 3.5);
}

// Two threads run one causal attention model (embeddings, a transformer block) on sequences of
// different lengths at once, each on its own tape: every output matches the same forward pass
// run alone. The module caches its causal mask per length; the threads must not see each
// other's.
TEST_CASE("threads sharing one causal transformer block at different lengths get the results of serial runs", "[threads]")
{
    nn::Rng rng(4);
    nn::Embedding<double> embed(7, 8, rng);
    nn::TransformerBlock<double> block(8, 2, rng, nn::TransformerBlockOptions().causal(true));
    block.eval();
    auto forward = [&](std::size_t length) {
        xt::xarray<std::int64_t> ids = xt::zeros<std::int64_t>({std::size_t(2), length});
        for (std::size_t i = 0; i < ids.size(); ++i) ids.data()[i] = std::int64_t((3 * i + length) % 7);
        Tape<double> tape;
        return Tensor<double>(block(embed(ids, tape)).value());
    };
    const Tensor<double> alone3 = forward(3), alone5 = forward(5);
    auto run = [&](std::size_t length, const Tensor<double>& expected, int& mismatches) {
        for (int i = 0; i < 100; ++i) mismatches += forward(length) != expected;
    };
    int m3 = 0, m5 = 0;
    std::thread ta(run, 3, std::cref(alone3), std::ref(m3)), tb(run, 5, std::cref(alone5), std::ref(m5));
    ta.join();
    tb.join();
    CHECK(m3 == 0);
    CHECK(m5 == 0);
}
