#include "nn/activation.hpp"

namespace ad::nn {

std::string activation_name(Activation a)
{
    switch (a) {
    case Activation::identity: return "identity";
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
    case Activation::relu: return "relu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::elu: return "elu";
    case Activation::selu: return "selu";
    case Activation::softplus: return "softplus";
    case Activation::gelu: return "gelu";
    }
    return "unknown";
}

template <class T> Var<T> Sigmoid<T>::forward(const Var<T>& x) { return sigmoid(x); }
template <class T> Var<T> Tanh<T>::forward(const Var<T>& x) { return tanh(x); }
template <class T> Var<T> ReLU<T>::forward(const Var<T>& x) { return relu(x); }
template <class T> Var<T> LeakyReLU<T>::forward(const Var<T>& x) { return leaky_relu(x, alpha_); }
template <class T> Var<T> ELU<T>::forward(const Var<T>& x) { return elu(x, alpha_); }
template <class T> Var<T> SELU<T>::forward(const Var<T>& x) { return selu(x); }
template <class T> Var<T> Softplus<T>::forward(const Var<T>& x) { return softplus(x); }
template <class T> Var<T> GELU<T>::forward(const Var<T>& x) { return gelu(x); }

template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a, T alpha)
{
    switch (a) {
    case Activation::identity: return std::make_shared<Identity<T>>();
    case Activation::sigmoid: return std::make_shared<Sigmoid<T>>();
    case Activation::tanh: return std::make_shared<Tanh<T>>();
    case Activation::relu: return std::make_shared<ReLU<T>>();
    case Activation::leaky_relu: return std::make_shared<LeakyReLU<T>>(alpha);
    case Activation::elu: return std::make_shared<ELU<T>>(alpha);
    case Activation::selu: return std::make_shared<SELU<T>>();
    case Activation::softplus: return std::make_shared<Softplus<T>>();
    case Activation::gelu: return std::make_shared<GELU<T>>();
    }
    throw Error("make_activation: unknown activation " + std::to_string(static_cast<int>(a)));
}

template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a)
{
    return make_activation<T>(a, a == Activation::leaky_relu ? T(0.01) : T(1));
}

#define AD_NN_ACTIVATION(T)                                              \
    template class Sigmoid<T>;                                           \
    template class Tanh<T>;                                              \
    template class ReLU<T>;                                              \
    template class LeakyReLU<T>;                                         \
    template class ELU<T>;                                               \
    template class SELU<T>;                                              \
    template class Softplus<T>;                                          \
    template class GELU<T>;                                              \
    template std::shared_ptr<Module<T>> make_activation(Activation, T);  \
    template std::shared_ptr<Module<T>> make_activation<T>(Activation);
AD_NN_ACTIVATION(float)
AD_NN_ACTIVATION(double)

}  // namespace ad::nn
