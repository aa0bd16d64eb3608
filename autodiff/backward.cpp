// The one reverse sweep. It knows nothing about particular ops: it seeds the output's adjoint,
// then walks the records from last to first and calls each one's VJP. Tape order puts every
// record after its inputs, so each VJP runs once, after all of its consumers have added into
// its adjoint.
#include "autodiff/backward.hpp"

#include "autodiff/detail/op.hpp"

#include <xtensor/xbuilder.hpp>

#include <unordered_map>

namespace ad {

namespace {

// Which parameter leaves a hooked sweep reports, and when. For every parameter leaf at or before
// the output, first[i] is the index of the earliest leaf of the same parameter; reached[j] is set
// (j = first[i]) once a VJP that reads leaf i has run, i.e. the output depends on that parameter.
// The sweep reports the parameter when it passes index j: every leaf of it sits at j or later, so
// every op that reads it came after j and has already run.
template <class T>
struct GradReady {
    const std::function<void(Parameter<T>&)>* hook = nullptr;
    std::vector<std::uint32_t> first;  // per record; meaningful for parameter leaves only
    std::vector<char> reached;
    std::unordered_map<const Parameter<T>*, std::uint32_t> earliest;

    void prepare(Tape<T>& tape, std::size_t out)
    {
        first.assign(out + 1, 0);
        reached.assign(out + 1, 0);
        earliest.clear();
        for (std::size_t i = 0; i <= out; ++i)
            if (const auto* p = tape.record(i).param)
                first[i] = earliest.emplace(p, static_cast<std::uint32_t>(i)).first->second;
    }
    // Record i's VJP has run: each parameter leaf among its inputs that wants a gradient got it.
    void mark_inputs(Tape<T>& tape, const detail::Record<T>& r)
    {
        for (std::uint32_t k = 0; k < r.n_inputs; ++k) {
            const auto j = tape.input(r, k);
            const auto& in = tape.record(j);
            if (in.param && in.needs_grad) reached[first[j]] = 1;
        }
    }
};

template <class T>
void sweep(const Var<T>& output, const Tensor<T>* cotangent, bool into_params, const char* who,
           GradReady<T>* ready = nullptr)
{
    Tape<T>& tape = output.tape();
    tape.check(output, who);
    const std::size_t out = output.index();
    const auto& shape = tape.value(out).shape();
    if (cotangent) {
        if (cotangent->shape() != shape)
            throw Error(std::string(who) + ": cotangent has shape " +
                        shape_str(cotangent->shape()) + " but the output has shape " +
                        shape_str(shape) + "; they must be equal");
    } else if (tape.value(out).size() != 1) {
        throw Error(std::string(who) + ": output has shape " + shape_str(shape) +
                    "; without a cotangent the output must have one element (reduce it with "
                    "sum or mean, or pass a cotangent of its shape)");
    }
    for (std::size_t i = 0; i <= out; ++i) {
        const auto& r = tape.record(i);
        if (r.param && r.param->version != r.param_version)
            throw Error(std::string(who) + ": a parameter of shape " +
                        shape_str(r.param->value.shape()) +
                        " was modified after the forward pass recorded it (an optimiser step "
                        "between forward and backward?); run the forward pass again");
    }

    if (ready) ready->prepare(tape, out);

    auto& has = tape.has_adjoint();
    // Clear the marks of the whole tape, not only up to the output: grad() and vjp() read them for
    // inputs that may have been recorded after the output (and were reached by an earlier sweep).
    std::fill(has.begin(), has.begin() + static_cast<std::ptrdiff_t>(tape.size()), 0);
    tape.into_params = into_params;
    if (!tape.record(out).needs_grad) return;  // nothing upstream wants a gradient

    auto& seed = tape.adjoint(out);
    if (cotangent) seed = *cotangent;
    else xt::noalias(seed) = xt::ones<T>(shape);
    has[out] = 1;
    // The output is a parameter itself: dp/dp = I, so the seed is its gradient (no VJP adds it).
    if (auto& r = tape.record(out); r.param && into_params) {
        xt::noalias(r.param->grad) += seed;
        if (ready) ready->reached[ready->first[out]] = 1;
    }
    const bool check = anomaly_enabled();
    for (std::size_t i = out + 1; i-- > 0;) {
        auto& r = tape.record(i);
        // A parameter leaf has no VJP; at its parameter's earliest leaf the gradient is final.
        if (ready && r.param && ready->first[i] == i && ready->reached[i]) (*ready->hook)(*r.param);
        if (!has[i] || !r.vjp) continue;
        Vjp<T> v{tape, r, i, tape.adjoint(i), tape.value(i)};
        r.vjp(v);
        if (check) check_backward_anomaly(tape, i);
        if (ready) ready->mark_inputs(tape, r);
    }
}

template <class T>
std::vector<Tensor<T>> collect(Tape<T>& tape, const std::vector<Var<T>>& inputs, const char* who)
{
    std::vector<Tensor<T>> out;
    out.reserve(inputs.size());
    for (const auto& v : inputs) {
        tape.check(v, who);
        if (tape.has_adjoint()[v.index()]) out.push_back(tape.adjoint(v.index()));
        else out.push_back(xt::zeros<T>(v.shape()));
    }
    return out;
}

}  // namespace

template <class T>
void backward(const Var<T>& output)
{
    sweep<T>(output, nullptr, true, "backward");
}

template <class T>
void backward(const Var<T>& output, const Tensor<T>& cotangent)
{
    sweep<T>(output, &cotangent, true, "backward");
}

template <class T>
void backward(const Var<T>& output, const std::function<void(Parameter<T>&)>& on_grad_ready)
{
    // One per thread: its buffers are kept, so a training loop allocates nothing in steady state.
    thread_local GradReady<T> ready;
    ready.hook = &on_grad_ready;
    sweep<T>(output, nullptr, true, "backward", &ready);
}

template <class T>
std::vector<Tensor<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs)
{
    for (const auto& v : inputs) output.tape().check(v, "grad");
    sweep<T>(output, nullptr, false, "grad");
    return collect(output.tape(), inputs, "grad");
}

template <class T>
std::vector<Tensor<T>> vjp(const Var<T>& output, const Tensor<T>& cotangent,
                           const std::vector<Var<T>>& inputs)
{
    for (const auto& v : inputs) output.tape().check(v, "vjp");
    sweep<T>(output, &cotangent, false, "vjp");
    return collect(output.tape(), inputs, "vjp");
}

template <class T>
Tensor<T> jacobian(const std::function<Var<T>(const Var<T>&)>& f, const Tensor<T>& x)
{
    Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> y = f(xv);
    tape.check(y, "jacobian");
    Shape shape(y.shape().begin(), y.shape().end());
    shape.insert(shape.end(), x.shape().begin(), x.shape().end());
    Tensor<T> J = xt::zeros<T>(shape);
    Tensor<T> e = xt::zeros<T>(y.shape());
    for (std::size_t k = 0; k < y.size(); ++k) {
        e.flat(k) = T(1);
        const auto row = vjp<T>(y, e, {xv})[0];
        std::copy(row.begin(), row.end(), J.begin() + static_cast<std::ptrdiff_t>(k * x.size()));
        e.flat(k) = T(0);
    }
    return J;
}

#define AD_INSTANTIATE(T)                                                                      \
    template void backward(const Var<T>&);                                                      \
    template void backward(const Var<T>&, const Tensor<T>&);                                    \
    template void backward(const Var<T>&, const std::function<void(Parameter<T>&)>&);           \
    template std::vector<Tensor<T>> grad(const Var<T>&, const std::vector<Var<T>>&);            \
    template std::vector<Tensor<T>> vjp(const Var<T>&, const Tensor<T>&,                       \
                                        const std::vector<Var<T>>&);                            \
    template Tensor<T> jacobian(const std::function<Var<T>(const Var<T>&)>&, const Tensor<T>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
