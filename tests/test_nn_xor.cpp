// XOR (seed 003) learnt by a model built only from nn/ pieces: a 2-8-1 tanh MLP, binary
// cross-entropy on the logit, and plain full-batch gradient descent written out here.
#include "nn/nn.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>

using ad::Tape;
using ad::Tensor;
namespace nn = ad::nn;

namespace {

const Tensor<double> X = Tensor<double>{{0.0, 0.0}, {0.0, 1.0}, {1.0, 0.0}, {1.0, 1.0}};
const Tensor<double> Y = [] {
    Tensor<double> y = {0.0, 1.0, 1.0, 0.0};
    y.reshape({4, 1});
    return y;
}();

template <class T>
std::size_t correct(nn::Module<T>& net)
{
    Tape<T> tape;
    const Tensor<T> logits = net(tape.constant(xt::cast<T>(X))).value();
    std::size_t n = 0;
    for (std::size_t i = 0; i < 4; ++i) n += (logits(i, 0) > 0) == (Y(i, 0) > 0.5);
    return n;
}

// Gradient descent: p <- p - lr dL/dp, for `steps` full-batch steps on one reused tape.
template <class T>
T train(nn::Module<T>& net, T lr, int steps)
{
    Tape<T> tape;
    const Tensor<T> x = xt::cast<T>(X), y = xt::cast<T>(Y);
    T loss = 0;
    for (int step = 0; step < steps; ++step) {
        tape.clear();
        net.zero_grad();
        const auto L = nn::bce_with_logits_loss(net(tape.constant(x)), y);
        ad::backward(L);
        loss = L.item();
        for (auto* p : net.parameters()) p->mutable_value() -= lr * p->grad;
    }
    return loss;
}

}  // namespace

TEST_CASE("a 2-8-1 tanh MLP trained by gradient descent classifies XOR 100% from every seed tried",
          "[nn][xor]")
{
    const std::uint64_t seed = GENERATE(1, 2, 3, 4, 5);
    nn::Rng rng(seed);
    nn::MLPOptions o;
    o.sizes = {2, 8, 1};
    o.activation = nn::Activation::tanh;
    auto net = nn::mlp<double>(o, rng);
    CHECK(correct(*net) < 4);  // untrained, it does not already solve the task...
    const double loss = train<double>(*net, 0.5, 2000);
    INFO("seed " << seed << ", final loss " << loss);
    CHECK(correct(*net) == 4);  // ...trained, it does
    CHECK(loss < 0.05);
}

TEST_CASE("the same XOR model trains in float", "[nn][xor]")
{
    nn::Rng rng(7);
    nn::MLPOptions o;
    o.sizes = {2, 8, 1};
    o.activation = nn::Activation::tanh;
    auto net = nn::mlp<float>(o, rng);
    train<float>(*net, 0.5f, 2000);
    CHECK(correct(*net) == 4);
}

TEST_CASE("without a nonlinearity the model is linear and cannot fit XOR", "[nn][xor]")
{
    // Stacked Linear layers collapse to one affine map (seed 003); no line separates XOR, so at
    // most 3 of the 4 points are right however long it trains.
    nn::Rng rng(8);
    nn::MLPOptions o;
    o.sizes = {2, 8, 1};
    o.activation = nn::Activation::identity;
    auto net = nn::mlp<double>(o, rng);
    train<double>(*net, 0.5, 2000);
    CHECK(correct(*net) <= 3);
}
