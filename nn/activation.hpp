// Activation modules: each applies one elementwise tape op (seed 002's table: sigmoid, ReLU,
// LeakyReLU, ELU, SELU; and tanh, softplus, GELU). They have no parameters.
#pragma once

#include "nn/module.hpp"

#include <memory>
#include <string>

namespace ad::nn {

enum class Activation { identity, sigmoid, tanh, relu, leaky_relu, elu, selu, softplus, gelu };

std::string activation_name(Activation a);

template <class T>
class Identity : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return x; }
};

template <class T>
class Sigmoid : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
};

template <class T>
class Tanh : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
};

template <class T>
class ReLU : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
};

// max(x, alpha x) for 0 < alpha < 1
template <class T>
class LeakyReLU : public Module<T> {
public:
    explicit LeakyReLU(T alpha = T(0.01)) : alpha_(alpha) {}
    Var<T> forward(const Var<T>& x) override;
    T alpha() const { return alpha_; }

private:
    T alpha_;
};

// x for x >= 0, alpha (e^x - 1) otherwise
template <class T>
class ELU : public Module<T> {
public:
    explicit ELU(T alpha = T(1)) : alpha_(alpha) {}
    Var<T> forward(const Var<T>& x) override;
    T alpha() const { return alpha_; }

private:
    T alpha_;
};

// lambda ELU_alpha(x) with the self-normalising constants lambda ~ 1.0507, alpha ~ 1.6733
template <class T>
class SELU : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
};

template <class T>
class Softplus : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
};

// x Phi(x), the erf form
template <class T>
class GELU : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
};

// The module for `a`; alpha is LeakyReLU's slope or ELU's alpha and is ignored by the others.
template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a, T alpha);
template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a);  // default slopes: 0.01 and 1

#define AD_NN_ACTIVATION_EXTERN(T)                                              \
    extern template class Sigmoid<T>;                                           \
    extern template class Tanh<T>;                                              \
    extern template class ReLU<T>;                                              \
    extern template class LeakyReLU<T>;                                         \
    extern template class ELU<T>;                                               \
    extern template class SELU<T>;                                              \
    extern template class Softplus<T>;                                          \
    extern template class GELU<T>;                                              \
    extern template std::shared_ptr<Module<T>> make_activation(Activation, T);  \
    extern template std::shared_ptr<Module<T>> make_activation<T>(Activation);
AD_NN_ACTIVATION_EXTERN(float)
AD_NN_ACTIVATION_EXTERN(double)
#undef AD_NN_ACTIVATION_EXTERN

}  // namespace ad::nn
