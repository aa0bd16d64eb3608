#include "nn/activation.hpp"

namespace ad::nn {

std::string activation_name(Activation a)
{
#define AD_NN_NAME(name, Class, alpha, formula) \
    case Activation::name: return #name;
    switch (a) { AD_NN_ACTIVATIONS(AD_NN_NAME) }
#undef AD_NN_NAME
    throw Error("activation_name: unknown activation " + std::to_string(static_cast<int>(a)));
}

double default_alpha(Activation a)
{
#define AD_NN_ALPHA(name, Class, alpha, formula) \
    case Activation::name: return alpha;
    switch (a) { AD_NN_ACTIVATIONS(AD_NN_ALPHA) }
#undef AD_NN_ALPHA
    throw Error("default_alpha: unknown activation " + std::to_string(static_cast<int>(a)));
}

std::string describe_activation(Activation a, double alpha)
{
    if (a == Activation::leaky_relu) return "LeakyReLU(negative_slope=" + detail::number_str(alpha) + ")";
    if (a == Activation::elu) return "ELU(alpha=" + detail::number_str(alpha) + ")";
#define AD_NN_CLASS_NAME(name, Class, alpha, formula) \
    case Activation::name: return #Class;
    switch (a) { AD_NN_ACTIVATIONS(AD_NN_CLASS_NAME) }
#undef AD_NN_CLASS_NAME
    throw Error("describe_activation: unknown activation " + std::to_string(static_cast<int>(a)));
}

template <class T>
Var<T> activate(Activation a, const Var<T>& x, [[maybe_unused]] T alpha)
{
#define AD_NN_APPLY(name, Class, default_alpha, formula) \
    case Activation::name: return formula;
    switch (a) { AD_NN_ACTIVATIONS(AD_NN_APPLY) }
#undef AD_NN_APPLY
    throw Error("activate: unknown activation " + std::to_string(static_cast<int>(a)));
}

template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a, T alpha)
{
#define AD_NN_MAKE(name, Class, default_alpha, formula) \
    case Activation::name: return std::make_shared<Class<T>>(alpha);
    switch (a) { AD_NN_ACTIVATIONS(AD_NN_MAKE) }
#undef AD_NN_MAKE
    throw Error("make_activation: unknown activation " + std::to_string(static_cast<int>(a)));
}

template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a)
{
    return make_activation<T>(a, T(default_alpha(a)));
}

template Var<float> activate(Activation, const Var<float>&, float);
template Var<double> activate(Activation, const Var<double>&, double);
template std::shared_ptr<Module<float>> make_activation(Activation, float);
template std::shared_ptr<Module<double>> make_activation(Activation, double);
template std::shared_ptr<Module<float>> make_activation<float>(Activation);
template std::shared_ptr<Module<double>> make_activation<double>(Activation);

}  // namespace ad::nn
