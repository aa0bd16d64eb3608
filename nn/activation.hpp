// Activation modules: each applies one elementwise tape op (seed 002's table: sigmoid, ReLU,
// LeakyReLU, ELU, SELU; and tanh, softplus, GELU). They have no parameters.
//
// The table below is the one place an activation is defined: a new activation is one row.
// Each row gives the enum value and name, the module's class name, the default of alpha (the
// slope of LeakyReLU, the alpha of ELU; unused by the others) and the op applied to x.
#pragma once

#include "nn/module.hpp"

#include <memory>
#include <string>

namespace ad::nn {

#define AD_NN_ACTIVATIONS(X)                              \
    X(identity, Identity, 0, x)                           \
    X(sigmoid, Sigmoid, 0, sigmoid(x))                    \
    X(tanh, Tanh, 0, tanh(x))                             \
    X(relu, ReLU, 0, relu(x))                             \
    X(leaky_relu, LeakyReLU, 0.01, leaky_relu(x, alpha))  \
    X(elu, ELU, 1, elu(x, alpha))                         \
    X(selu, SELU, 0, selu(x))                             \
    X(softplus, Softplus, 0, softplus(x))                 \
    X(gelu, GELU, 0, gelu(x))

#define AD_NN_ENUM(name, Class, alpha, formula) name,
enum class Activation { AD_NN_ACTIVATIONS(AD_NN_ENUM) };
#undef AD_NN_ENUM

std::string activation_name(Activation a);
// The module's describe(): its class name, with the slope or alpha where the activation has one
// ("LeakyReLU(negative_slope=0.01)", "ELU(alpha=1)").
std::string describe_activation(Activation a, double alpha);
double default_alpha(Activation a);
template <class T>
Var<T> activate(Activation a, const Var<T>& x, T alpha);

template <class T, Activation A>
class ActivationModule : public Module<T> {
public:
    explicit ActivationModule(T alpha = T(default_alpha(A))) : alpha_(alpha) {}
    Var<T> forward(const Var<T>& x) override { return activate(A, x, alpha_); }
    std::string describe() const override { return describe_activation(A, double(alpha_)); }
    T alpha() const { return alpha_; }

private:
    T alpha_;
};

// Identity<T>, Sigmoid<T>, Tanh<T>, ReLU<T>, LeakyReLU<T>, ELU<T>, SELU<T>, Softplus<T>, GELU<T>
#define AD_NN_CLASS(name, Class, alpha, formula) \
    template <class T>                           \
    using Class = ActivationModule<T, Activation::name>;
AD_NN_ACTIVATIONS(AD_NN_CLASS)
#undef AD_NN_CLASS

// The module for `a`, with alpha given or at its default.
template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a, T alpha);
template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a);

extern template Var<float> activate(Activation, const Var<float>&, float);
extern template Var<double> activate(Activation, const Var<double>&, double);
extern template std::shared_ptr<Module<float>> make_activation(Activation, float);
extern template std::shared_ptr<Module<double>> make_activation(Activation, double);
extern template std::shared_ptr<Module<float>> make_activation<float>(Activation);
extern template std::shared_ptr<Module<double>> make_activation<double>(Activation);

}  // namespace ad::nn
