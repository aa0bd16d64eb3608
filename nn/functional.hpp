// A module as a function of its weights (torch.func): functional_call runs a module's forward
// pass with Vars standing in for its parameters, and jacobian, hessian and hvp differentiate a
// function of named weights, keyed by parameter name.
//
//   auto w = nn::parameter_values(model);                        // name -> a copy of the value
//   auto loss = [&](const nn::VarMap<double>& v) { return ad::mse(nn::functional_call(model, v, x), y); };
//   auto H = nn::hessian(loss, w);                               // H["0.weight"]["2.bias"]
//
// functional_call needs nothing from the layers: every layer reads its parameters through
// Module::use, which looks the parameter up in the substitutions alive on the calling thread
// (innermost first) before recording the parameter itself. A ParameterSubstitution is that
// scope: made for the duration of the call, undone by its destructor (an exception included),
// per thread, nesting. Buffers (BatchNorm's running statistics) are the module's own. A block
// run under ad::checkpoint records on a tape of its own and reruns during backward(), after the
// scope has ended, so substituted weights read inside one are refused (an ad::Error naming the
// weight): pass them to the block as inputs instead.
#pragma once

#include "autodiff/backward.hpp"
#include "nn/module.hpp"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ad::nn {

template <class T>
using VarMap = std::map<std::string, Var<T>>;
template <class T>
using TensorMap = std::map<std::string, Tensor<T>>;

// Name -> a copy of each parameter's value (PyTorch's dict(model.named_parameters())), frozen
// ones included.
template <class T>
TensorMap<T> parameter_values(Module<T>& model);

// While alive, model's forward pass on this thread reads weights[name] for the parameter `name`
// (the module's own parameter for names not given). An unknown name, a shape that differs from
// the parameter's, or an invalid Var is an ad::Error naming the key and the shapes.
template <class T>
class ParameterSubstitution {
public:
    ParameterSubstitution(Module<T>& model, const VarMap<T>& weights);
    ~ParameterSubstitution() { detail::substitution<T> = frame_.outer; }
    ParameterSubstitution(const ParameterSubstitution&) = delete;
    ParameterSubstitution& operator=(const ParameterSubstitution&) = delete;

private:
    std::vector<std::string> names_;
    detail::Substitution<T> frame_;
};

// model(input) with weights[name] in place of the parameter `name` (torch.func.functional_call).
// The weights must be on the input's tape; a Tensor input is recorded as a constant on the
// weights' tape.
template <class T>
Var<T> functional_call(Module<T>& model, const VarMap<T>& weights, const Var<T>& input)
{
    const ParameterSubstitution<T> scope(model, weights);
    return model(input);
}
template <class T>
Var<T> functional_call(Module<T>& model, const VarMap<T>& weights, const Tensor<T>& input);

// --- derivatives with respect to named weights ---
// f maps the weights (a VarMap with the keys of w, the same order: std::map's, sorted by name)
// to a Var. Built on ad::jacobian/hessian/hvp over several tensors.

namespace detail {
template <class T, class F>
ManyFn<T> by_name(F& f, const std::vector<std::string>& names)
{
    return [&f, &names](const std::vector<Var<T>>& xs) {
        VarMap<T> m;
        for (std::size_t i = 0; i < names.size(); ++i) m.emplace(names[i], xs[i]);
        return std::vector<Var<T>>{f(m)};
    };
}
template <class T>
std::pair<std::vector<std::string>, TensorList<T>> split(const TensorMap<T>& w)
{
    std::pair<std::vector<std::string>, TensorList<T>> out;
    for (const auto& [name, t] : w) {
        out.first.push_back(name);
        out.second.push_back(t);
    }
    return out;
}
}  // namespace detail

// name -> d f / d w[name], of shape f(w).shape ++ w[name].shape (for a one-element loss: the
// gradient, shaped like the weight).
template <class T, class F>
TensorMap<T> jacobian(F&& f, const TensorMap<T>& w)
{
    const auto [names, xs] = detail::split(w);
    const auto J = ad::detail::jacobian_many<T>(detail::by_name<T>(f, names), xs, {});
    TensorMap<T> out;
    for (std::size_t i = 0; i < names.size(); ++i) out.emplace(names[i], J[0][i]);
    return out;
}
// The Jacobian of model(input) with respect to its weights at w (torch.func.jacrev over
// functional_call): name -> [output shape ++ weight shape].
template <class T>
TensorMap<T> jacobian(Module<T>& model, const TensorMap<T>& w, const Tensor<T>& input)
{
    return jacobian([&](const VarMap<T>& v) { return functional_call(model, v, input); }, w);
}

// H[a][b] = d2 f / d w[a] d w[b], of shape w[a].shape ++ w[b].shape; f returns one element.
template <class T, class F>
std::map<std::string, TensorMap<T>> hessian(F&& f, const TensorMap<T>& w)
{
    const auto [names, xs] = detail::split(w);
    const auto H = ad::detail::hessian_many<T>(detail::by_name<T>(f, names), xs, {});
    std::map<std::string, TensorMap<T>> out;
    for (std::size_t i = 0; i < names.size(); ++i)
        for (std::size_t j = 0; j < names.size(); ++j) out[names[i]].emplace(names[j], H[i][j]);
    return out;
}

// name -> (H v)[name] for a one-element f; v has the keys of w (an ad::Error names a missing or
// extra key).
template <class T, class F>
TensorMap<T> hvp(F&& f, const TensorMap<T>& w, const TensorMap<T>& v)
{
    const auto [names, xs] = detail::split(w);
    TensorList<T> vs;
    for (const auto& name : names) {
        const auto it = v.find(name);
        if (it == v.end()) throw Error("hvp: the vector has no entry for the weight '" + name + "'");
        vs.push_back(it->second);
    }
    if (v.size() != w.size())
        for (const auto& e : v)
            if (!w.count(e.first)) throw Error("hvp: the vector has an entry '" + e.first + "' that is not a weight");
    const auto Hv = ad::detail::hvp_many<T>(detail::by_name<T>(f, names), xs, vs, {});
    TensorMap<T> out;
    for (std::size_t i = 0; i < names.size(); ++i) out.emplace(names[i], Hv[i]);
    return out;
}

extern template class ParameterSubstitution<float>;
extern template class ParameterSubstitution<double>;

}  // namespace ad::nn
