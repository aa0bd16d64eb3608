#include "nn/functional.hpp"

namespace ad::nn {

template <class T>
TensorMap<T> parameter_values(Module<T>& model)
{
    TensorMap<T> out;
    for (auto& [name, p] : model.named_parameters()) out.emplace(name, p->value());
    return out;
}

template <class T>
ParameterSubstitution<T>::ParameterSubstitution(Module<T>& model, const VarMap<T>& weights)
{
    const auto params = model.named_parameters();
    names_.reserve(weights.size());
    for (const auto& [name, var] : weights) {
        const Parameter<T>* found = nullptr;
        for (const auto& [pname, p] : params)
            if (pname == name) found = p;
        if (!found) {
            std::string known;
            for (const auto& e : params) known += (known.empty() ? "" : ", ") + e.first;
            throw Error("functional_call: the module has no parameter named '" + name + "' (its parameters: " +
                        (known.empty() ? "none" : known) + ")");
        }
        if (!var.valid())
            throw Error("functional_call: the weight '" + name + "' is an empty handle, or its tape was cleared or "
                        "destroyed");
        if (!equal_shapes(var.shape(), found->value().shape()))
            throw Error("functional_call: the weight '" + name + "' has shape " + shape_str(var.shape()) +
                        " but the parameter has shape " + shape_str(found->value().shape()));
        names_.push_back(name);
    }
    // entries point into names_, complete by now
    std::size_t k = 0;
    for (const auto& [name, var] : weights) {
        const Parameter<T>* p = nullptr;
        for (const auto& e : params)
            if (e.first == name) p = e.second;
        frame_.vars.push_back({p, &names_[k++], var});
    }
    frame_.outer = detail::substitution<T>;
    detail::substitution<T> = &frame_;
}

template <class T>
Var<T> functional_call(Module<T>& model, const VarMap<T>& weights, const Tensor<T>& input)
{
    if (weights.empty())
        throw Error("functional_call: a tensor input needs at least one weight Var, to know which tape to record "
                    "it on; pass the input as a Var instead");
    const Var<T>& any = weights.begin()->second;
    const Var<T> x = tape_of(any, "functional_call").constant(input);
    return functional_call(model, weights, x);
}

template class ParameterSubstitution<float>;
template class ParameterSubstitution<double>;
template TensorMap<float> parameter_values(Module<float>&);
template TensorMap<double> parameter_values(Module<double>&);
template Var<float> functional_call(Module<float>&, const VarMap<float>&, const Tensor<float>&);
template Var<double> functional_call(Module<double>&, const VarMap<double>&, const Tensor<double>&);

}  // namespace ad::nn
