// Sequential: children applied in order; and the MLP builder.
#pragma once

#include "nn/activation.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ad::nn {

template <class T>
class Sequential : public Module<T> {
public:
    Sequential() = default;
    Sequential(std::initializer_list<std::shared_ptr<Module<T>>> modules);

    // Appends a child named by its position ("0", "1", ...) or by the given name.
    Sequential& add(std::shared_ptr<Module<T>> m);
    Sequential& add(std::string name, std::shared_ptr<Module<T>> m);

    Var<T> forward(const Var<T>& x) override;  // the identity when empty
    std::size_t size() const { return layers_.size(); }
    Module<T>& operator[](std::size_t i);

private:
    std::vector<Module<T>*> layers_;
};

// A multilayer perceptron from layer sizes {in, h1, ..., hk, out}. No activation after the last
// layer (it returns logits or a regression output).
//
// Plain (residual = false), children "0", "1", ... as in PyTorch's Sequential: for each hidden
// layer Linear, then LayerNorm (if layer_norm), the activation, Dropout (if dropout > 0); then
// the output Linear.
//
// Residual (residual = true): the hidden sizes must be equal (a width h). Children:
//   "input"  Linear(in, h), then "input_norm", "input_act", "input_dropout" as above;
//   "blocks" a Sequential of k - 1 ResidualBlocks z + drop_path(dropout(act(norm(Linear(z)))));
//   "output" Linear(h, out).
// So {784, 256, 256, 256, 10} has two residual blocks. Stochastic depth (the same p for every
// block) needs residual = true. Dropout and stochastic-depth generators are seeded from rng.
struct MLPOptions {
    std::vector<std::size_t> sizes;
    Activation activation = Activation::relu;
    std::optional<double> alpha;  // LeakyReLU slope / ELU alpha; defaults 0.01 / 1
    bool residual = false;
    bool layer_norm = false;
    double dropout = 0;
    double stochastic_depth = 0;
    InitScheme init = InitScheme::pytorch_default;  // weights; biases start at zero otherwise
};

template <class T>
std::shared_ptr<Sequential<T>> mlp(const MLPOptions& options, Rng& rng);

extern template class Sequential<float>;
extern template class Sequential<double>;
extern template std::shared_ptr<Sequential<float>> mlp(const MLPOptions&, Rng&);
extern template std::shared_ptr<Sequential<double>> mlp(const MLPOptions&, Rng&);

}  // namespace ad::nn
