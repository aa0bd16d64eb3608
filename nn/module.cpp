#include "nn/module.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <sstream>
#include <typeinfo>

#include <xtensor/xbuilder.hpp>

namespace ad::nn {

template <class T>
void Module<T>::check_name(const std::string& name, const char* what) const
{
    if (name.empty() || name.find('.') != std::string::npos)
        throw Error(std::string(what) + ": name \"" + name +
                    "\" must be non-empty and contain no '.' (dots join hierarchical names)");
    auto taken = [&](const auto& list) {
        for (const auto& e : list)
            if (e.first == name) return true;
        return false;
    };
    if (taken(params_) || taken(buffers_) || taken(children_))
        throw Error(std::string(what) + ": name \"" + name + "\" is already used in this module");
}

template <class T>
Parameter<T>& Module<T>::register_parameter(std::string name, Tensor<T> init)
{
    check_name(name, "register_parameter");
    params_.emplace_back(std::move(name), std::make_unique<Parameter<T>>(std::move(init)));
    return *params_.back().second;
}

template <class T>
Tensor<T>& Module<T>::register_buffer(std::string name, Tensor<T> init)
{
    check_name(name, "register_buffer");
    buffers_.emplace_back(std::move(name), std::make_unique<Tensor<T>>(std::move(init)));
    return *buffers_.back().second;
}

template <class T>
void Module<T>::add_child(std::string name, std::shared_ptr<Module<T>> m)
{
    check_name(name, "register_module");
    if (!m) throw Error("register_module: module \"" + name + "\" is null");
    m->train(training_);
    children_.emplace_back(std::move(name), std::move(m));
}

template <class T>
void Module<T>::collect_parameters(const std::string& prefix,
                                   std::vector<std::pair<std::string, Parameter<T>*>>& out)
{
    for (auto& [name, p] : params_) out.emplace_back(prefix + name, p.get());
    for (auto& [name, c] : children_) c->collect_parameters(prefix + name + ".", out);
}

template <class T>
void Module<T>::collect_buffers(const std::string& prefix,
                                std::vector<std::pair<std::string, Tensor<T>*>>& out)
{
    for (auto& [name, b] : buffers_) out.emplace_back(prefix + name, b.get());
    for (auto& [name, c] : children_) c->collect_buffers(prefix + name + ".", out);
}

template <class T>
void Module<T>::collect_modules(const std::string& prefix,
                                std::vector<std::pair<std::string, Module<T>*>>& out)
{
    for (auto& [name, c] : children_) {
        out.emplace_back(prefix + name, c.get());
        c->collect_modules(prefix + name + ".", out);
    }
}

template <class T>
std::vector<std::pair<std::string, Parameter<T>*>> Module<T>::named_parameters()
{
    std::vector<std::pair<std::string, Parameter<T>*>> out;
    collect_parameters("", out);
    return out;
}

template <class T>
std::vector<Parameter<T>*> Module<T>::parameters()
{
    std::vector<Parameter<T>*> out;
    for (auto& e : named_parameters()) out.push_back(e.second);
    return out;
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> Module<T>::named_buffers()
{
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    collect_buffers("", out);
    return out;
}

template <class T>
std::vector<std::pair<std::string, Module<T>*>> Module<T>::named_modules()
{
    std::vector<std::pair<std::string, Module<T>*>> out;
    collect_modules("", out);
    return out;
}

template <class T>
std::vector<std::pair<std::string, Module<T>*>> Module<T>::children()
{
    std::vector<std::pair<std::string, Module<T>*>> out;
    for (auto& [name, c] : children_) out.emplace_back(name, c.get());
    return out;
}

template <class T>
void Module<T>::train(bool on)
{
    training_ = on;
    for (auto& e : children_) e.second->train(on);
}

std::string detail::number_str(double v)
{
    std::ostringstream out;
    out << v;
    return out.str();
}

template <class T>
std::string Module<T>::describe() const
{
    std::string n = typeid(*this).name();
    int status = 0;
    char* readable = abi::__cxa_demangle(n.c_str(), nullptr, nullptr, &status);
    if (status == 0 && readable) n = readable;
    std::free(readable);
    // "app::TwoLayerNet<float>" -> "TwoLayerNet": the namespace and the element type say nothing
    // about the layer. Namespaces are cut only before the template arguments.
    const auto open = n.find('<');
    std::string head = n.substr(0, open);
    const auto colon = head.rfind("::");
    return colon == std::string::npos ? head : head.substr(colon + 2);
}

template <class T>
std::string Module<T>::summary()
{
    std::ostringstream out;
    out << describe() << '\n';
    for (auto& [name, m] : named_modules()) out << "  " << name << ": " << m->describe() << '\n';
    for (auto& [name, p] : named_parameters())
        out << "  " << name << ' ' << shape_str(p->value().shape()) << ' ' << p->value().size() << '\n';
    for (auto& [name, b] : named_buffers())
        out << "  " << name << ' ' << shape_str(b->shape()) << ' ' << b->size() << " (buffer)\n";
    out << "parameters: " << parameter_count() << '\n';
    return out.str();
}

template <class T>
std::size_t Module<T>::parameter_count()
{
    std::size_t n = 0;
    for (auto* p : parameters()) n += p->value().size();
    return n;
}

template <class T>
void Module<T>::zero_grad()
{
    for (auto* p : parameters()) p->zero_grad();
}

template <class T>
void Module<T>::zero_grad(FillZeros)
{
    for (auto* p : parameters()) p->zero_grad(fill_zeros);
}

template <class T>
Module<T>& Module<T>::requires_grad_(bool on)
{
    for (auto* p : parameters()) p->requires_grad_(on);
    return *this;
}

template <class T>
Var<T> detail::substitute(const typename Substitution<T>::Entry& e, const Var<T>& x)
{
    const Tape<T>& tape = tape_of(x, "functional_call");
    if (!e.var.valid() || e.var.anchor() != x.anchor() || e.var.generation() != tape.generation())
        throw Error("functional_call: the weight '" + *e.name + "' is not on the tape the module's input is "
                    "recorded on (or that tape was cleared since); record the weights and the input on one tape");
    return e.var;
}
template Var<float> detail::substitute(const Substitution<float>::Entry&, const Var<float>&);
template Var<double> detail::substitute(const Substitution<double>::Entry&, const Var<double>&);

template class Module<float>;
template class Module<double>;

}  // namespace ad::nn
