// Module: the base of every layer. A module owns named parameters, named buffers and named child
// modules; its forward pass is a composition of tape ops, so its gradient comes from the
// engine's reverse sweep and no module has a backward pass of its own.
//
// Names are hierarchical and stable: a parameter "weight" of the child "norm" of the child "3" of
// the child "blocks" is "blocks.3.norm.weight". Iteration lists a module's own entries in
// registration order, then each child's, in the order the children were registered (PyTorch's
// rule), so the same model always yields the same names in the same order: they are the keys
// of saved models, of state dicts and of gradient reports.
#pragma once

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ad::nn {

namespace detail {
// A hyperparameter as describe() shows it: six significant digits, no trailing zeros ("0.1", "1e-05").
std::string number_str(double v);
}  // namespace detail

namespace detail {
// The Vars that stand in for parameters while a ParameterSubstitution (nn/functional.hpp) is
// alive on this thread; scopes nest, the innermost first.
template <class T>
struct Substitution {
    struct Entry {
        const Parameter<T>* param;
        const std::string* name;
        Var<T> var;
    };
    std::vector<Entry> vars;
    const Substitution* outer = nullptr;
};
template <class T>
inline thread_local const Substitution<T>* substitution = nullptr;
// e.var after checking that it is on x's tape.
template <class T>
Var<T> substitute(const typename Substitution<T>::Entry& e, const Var<T>& x);
}  // namespace detail

// Every random choice in nn/ (initialisation, dropout masks) takes a seeded generator.
using Rng = std::mt19937_64;

// Whether a layer (Linear, Conv2d) has a bias: Linear<T>(in, out, rng, nn::no_bias). A type of
// its own, so no bare bool stands for it at a call site; Bias{flag} when the choice is computed.
struct Bias {
    bool on = true;
};
inline constexpr Bias no_bias{false};

template <class T>
class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    // Parameters are referred to by address (optimisers, tapes), so a module is not copied.
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    virtual Var<T> forward(const Var<T>& x) = 0;
    Var<T> operator()(const Var<T>& x) { return forward(x); }

    std::vector<std::pair<std::string, Parameter<T>*>> named_parameters();
    std::vector<Parameter<T>*> parameters();
    // State that is saved with the model but not trained (BatchNorm's running statistics).
    std::vector<std::pair<std::string, Tensor<T>*>> named_buffers();
    // Every descendant, depth first, with its full name; this module itself is not listed.
    std::vector<std::pair<std::string, Module<T>*>> named_modules();
    // The direct children, in registration order.
    std::vector<std::pair<std::string, Module<T>*>> children();

    // Training mode (dropout active, batch statistics) or evaluation mode; recursive.
    void train(bool on = true);
    void eval() { train(false); }
    bool training() const { return training_; }

    std::size_t parameter_count();  // number of scalars in all parameters
    // Empties every parameter's gradient (see ad::Parameter); ad::fill_zeros makes them zeros.
    void zero_grad();
    void zero_grad(FillZeros);
    // Freezes (false) or unfreezes every parameter, recursively (PyTorch's module.requires_grad_).
    Module& requires_grad_(bool on = true);
    // The module's type and hyperparameters on one line, in libtorch's words: "ReLU",
    // "Linear(in_features=784, out_features=256, bias=true)", "Dropout(p=0.1)". The default is
    // the class name without namespace and template arguments; layers with hyperparameters
    // override it.
    virtual std::string describe() const;
    // One line per module (its name and describe()) and per parameter and buffer (name, shape,
    // element count), then the total: what printing a model shows.
    std::string summary();

protected:
    // The name must be non-empty, without '.', and not already used in this module.
    Parameter<T>& register_parameter(std::string name, Tensor<T> init);
    Tensor<T>& register_buffer(std::string name, Tensor<T> init);
    template <class M>
    M& register_module(std::string name, std::shared_ptr<M> m)
    {
        static_assert(std::is_base_of<Module<T>, M>::value, "register_module: M must be a Module<T>");
        add_child(std::move(name), m);
        return *m;
    }

    // The parameter as a leaf on x's tape (the tape the forward pass is recorded on), or the Var
    // standing in for it inside functional_call (nn/functional.hpp). Every layer reads its
    // parameters through here, so functional_call needs nothing from the layers.
    static Var<T> use(Parameter<T>& p, const Var<T>& x)
    {
        for (auto* s = detail::substitution<T>; s; s = s->outer)
            for (const auto& e : s->vars)
                if (e.param == &p) return detail::substitute(e, x);
        return x.tape().param(p);
    }

private:
    void check_name(const std::string& name, const char* what) const;
    void add_child(std::string name, std::shared_ptr<Module<T>> m);
    void collect_parameters(const std::string& prefix,
                            std::vector<std::pair<std::string, Parameter<T>*>>& out);
    void collect_buffers(const std::string& prefix,
                         std::vector<std::pair<std::string, Tensor<T>*>>& out);
    void collect_modules(const std::string& prefix,
                         std::vector<std::pair<std::string, Module<T>*>>& out);

    // unique_ptr: addresses stay valid as more are registered.
    std::vector<std::pair<std::string, std::unique_ptr<Parameter<T>>>> params_;
    std::vector<std::pair<std::string, std::unique_ptr<Tensor<T>>>> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>> children_;
    bool training_ = true;
};

template <class T>
std::ostream& operator<<(std::ostream& out, Module<T>& m)
{
    return out << m.summary();
}

extern template class Module<float>;
extern template class Module<double>;

}  // namespace ad::nn
