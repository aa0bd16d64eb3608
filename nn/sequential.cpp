#include "nn/sequential.hpp"

#include "nn/dropout.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"
#include "nn/residual.hpp"

namespace ad::nn {

template <class T>
Sequential<T>::Sequential(std::initializer_list<std::shared_ptr<Module<T>>> modules)
{
    for (const auto& m : modules) add(m);
}

template <class T>
Sequential<T>& Sequential<T>::add(std::shared_ptr<Module<T>> m)
{
    return add(std::to_string(layers_.size()), std::move(m));
}

template <class T>
Sequential<T>& Sequential<T>::add(std::string name, std::shared_ptr<Module<T>> m)
{
    layers_.push_back(&this->register_module(std::move(name), std::move(m)));
    return *this;
}

template <class T>
Var<T> Sequential<T>::forward(const Var<T>& x)
{
    Var<T> h = x;
    for (Module<T>* m : layers_) h = m->forward(h);
    return h;
}

template <class T>
Module<T>& Sequential<T>::operator[](std::size_t i)
{
    if (i >= layers_.size())
        throw Error("Sequential: index " + std::to_string(i) + " is out of range for " +
                    std::to_string(layers_.size()) + " layers");
    return *layers_[i];
}

template <class T>
std::shared_ptr<Sequential<T>> mlp(const MLPOptions& o, Rng& rng)
{
    const auto& s = o.sizes;
    if (s.size() < 2) throw Error("mlp: sizes " + shape_str(s) + " need at least {in, out}");
    for (auto n : s)
        if (n == 0) throw Error("mlp: sizes " + shape_str(s) + " contain a zero");
    if (!(o.dropout >= 0 && o.dropout < 1))
        throw Error("mlp: dropout = " + std::to_string(o.dropout) + " is outside [0, 1)");
    if (!(o.stochastic_depth >= 0 && o.stochastic_depth < 1))
        throw Error("mlp: stochastic_depth = " + std::to_string(o.stochastic_depth) + " is outside [0, 1)");
    if (o.stochastic_depth > 0 && !o.residual)
        throw Error("mlp: stochastic depth drops residual branches; it needs residual = true");

    const WeightInit<T> init = weight_init<T>(o.init);
    auto linear = [&](std::size_t in, std::size_t out) {
        return init ? std::make_shared<Linear<T>>(in, out, rng, init) : std::make_shared<Linear<T>>(in, out, rng);
    };
    auto act = [&]() { return o.alpha ? make_activation<T>(o.activation, T(*o.alpha)) : make_activation<T>(o.activation); };

    auto net = std::make_shared<Sequential<T>>();
    if (!o.residual) {
        for (std::size_t i = 0; i + 1 < s.size(); ++i) {
            net->add(linear(s[i], s[i + 1]));
            if (i + 2 == s.size()) break;  // no activation after the output layer
            if (o.layer_norm) net->add(std::make_shared<LayerNorm<T>>(s[i + 1]));
            net->add(act());
            if (o.dropout > 0) net->add(std::make_shared<Dropout<T>>(T(o.dropout), rng()));
        }
        return net;
    }

    if (s.size() < 3) throw Error("mlp: a residual MLP needs a hidden width: sizes {in, h, ..., h, out}, got " + shape_str(s));
    const std::size_t h = s[1];
    for (std::size_t i = 1; i + 1 < s.size(); ++i)
        if (s[i] != h)
            throw Error("mlp: residual blocks map a width to itself, so the hidden sizes must be equal; got " +
                        shape_str(s));
    net->add("input", linear(s[0], h));
    if (o.layer_norm) net->add("input_norm", std::make_shared<LayerNorm<T>>(h));
    net->add("input_act", act());
    if (o.dropout > 0) net->add("input_dropout", std::make_shared<Dropout<T>>(T(o.dropout), rng()));
    auto blocks = std::make_shared<Sequential<T>>();
    for (std::size_t i = 2; i + 1 < s.size(); ++i)
        blocks->add(std::make_shared<ResidualBlock<T>>(linear(h, h), act(), o.layer_norm, T(o.dropout),
                                                       T(o.stochastic_depth), rng));
    net->add("blocks", blocks);
    net->add("output", linear(h, s.back()));
    return net;
}

template class Sequential<float>;
template class Sequential<double>;
template std::shared_ptr<Sequential<float>> mlp(const MLPOptions&, Rng&);
template std::shared_ptr<Sequential<double>> mlp(const MLPOptions&, Rng&);

}  // namespace ad::nn
