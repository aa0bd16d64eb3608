#include "nn/gradcheck_module.hpp"

#include "autodiff/backward.hpp"

namespace ad::nn {

template <class T>
GradcheckResult gradcheck_module(Module<T>& model, const ModuleLoss<T>& loss, GradcheckOptions o)
{
    if constexpr (!std::is_same_v<T, double>) {
        throw Error("gradcheck_module: needs double precision (see ad::gradcheck); build the model as "
                    "Module<double>");
    } else {
        std::vector<std::pair<std::string, Parameter<double>*>> named;  // frozen ones have no gradient to check
        for (auto& e : model.named_parameters())
            if (e.second->requires_grad()) named.push_back(e);
        if (named.empty()) throw Error("gradcheck_module: the model has no trainable parameters to check");
        std::vector<Tensor<double>> start, grads;
        o.names.clear();
        for (auto& [name, p] : named) {
            start.push_back(p->value());
            o.names.push_back(name);
        }
        Tape<double> tape;
        auto set = [&](const std::vector<Tensor<double>>& values) {
            for (std::size_t i = 0; i < named.size(); ++i) named[i].second->set_value(values[i]);
        };
        // Recorded as in the analytic pass, not under NoGrad: a loss may differentiate inside
        // (a gradient penalty takes a create_graph gradient), which needs its ops recorded.
        // Clearing the tape each time keeps one evaluation's records.
        auto value_at = [&](const std::vector<Tensor<double>>& values) {
            set(values);
            tape.clear();
            const Var<double> y = loss(model, tape);
            if (y.size() != 1)
                throw Error("gradcheck_module: the loss must have one element, got shape " + shape_str(y.shape()));
            return y.item();
        };
        model.zero_grad();
        tape.clear();
        const Var<double> y = loss(model, tape);
        if (y.size() != 1)
            throw Error("gradcheck_module: the loss must have one element, got shape " + shape_str(y.shape()));
        backward(y);
        for (auto& [name, p] : named) grads.push_back(p->grad_or_zeros());  // zeros where the loss does not reach
        GradcheckResult r;
        try {
            r = check_gradient(value_at, start, grads, o);
        } catch (...) {
            set(start);
            throw;
        }
        set(start);
        model.zero_grad();
        return r;
    }
}

template GradcheckResult gradcheck_module(Module<float>&, const ModuleLoss<float>&, GradcheckOptions);
template GradcheckResult gradcheck_module(Module<double>&, const ModuleLoss<double>&, GradcheckOptions);

}  // namespace ad::nn
