// The one reverse sweep. It knows nothing about particular ops: it seeds the output's adjoint,
// then walks the records from last to first and calls each one's VJP. Tape order puts every
// record after its inputs, so each VJP runs once, after all of its consumers have added into
// its adjoint. What the sweep reached and the adjoints it holds live in a Sweep object of its
// own (autodiff/sweep.hpp), so a sweep started from a hook or a VJP on the same tape leaves the
// running one alone. The graph-building sweep is the same loop over Vars: the VJPs it calls record
// ops, appended past the output, so the loop never meets them.
#include "autodiff/backward.hpp"

#include "autodiff/op.hpp"
#include "autodiff/ops.hpp"

#include <xtensor/xbuilder.hpp>

#include <algorithm>

namespace ad {

namespace {

// Refuses a sweep through a parameter changed since the forward pass read it.
template <class T>
void check_versions(const Tape<T>& tape, std::size_t out, bool into_params, const char* who)
{
    for (const auto i : tape.param_leaves()) {
        if (i > out) break;
        const auto& r = tape.record(i);
        if (into_params && r.needs_grad && !r.param->requires_grad())
            throw Error(std::string(who) + ": a parameter of shape " + shape_str(r.param->value().shape()) +
                        " was frozen (requires_grad_(false)) after the forward pass recorded it as trained; "
                        "run the forward pass again");
        if (r.param->version() == r.param_version) continue;
        std::size_t reads = 0;
        for (const auto j : tape.param_leaves()) reads += tape.record(j).param == r.param;
        const std::string shape = shape_str(r.param->value().shape());
        if (reads > 1)
            throw Error(std::string(who) + ": a parameter of shape " + shape +
                        " was modified after the forward pass recorded it, and the tape holds " +
                        std::to_string(reads) + " reads of it since its last clear(): tape.clear() "
                        "was probably forgotten between training steps");
        throw Error(std::string(who) + ": a parameter of shape " + shape +
                    " was modified after the forward pass recorded it (an optimiser step between "
                    "forward and backward?); run the forward pass again");
    }
}

// backward() adds into a gradient in place, so one it finds must have the value's shape. Read
// once the sweep holds its parameters' locks: another thread's sweep may be writing .grad.
template <class T>
void check_grad_shapes(const Sweep<T>& s, const char* who)
{
    for (const auto i : s.tape.param_leaves()) {
        if (i > s.output()) break;
        const auto& r = s.tape.record(i);
        if (r.needs_grad && r.param->grad.size() != 0 && !r.param->has_grad())
            throw Error(std::string(who) + ": the .grad of a parameter of shape " + shape_str(r.param->value().shape()) +
                        " has shape " + shape_str(r.param->grad.shape()) +
                        "; a gradient must have its parameter's shape (zero_grad() empties it)");
    }
}

template <class T>
void check_output(Tape<T>& tape, const Var<T>& output, const Shape* cotangent, const char* who)
{
    tape.check(output, who);
    tape.check_thread(who);
    const auto& shape = tape.shape(output.index());
    if (cotangent) {
        if (!std::equal(cotangent->begin(), cotangent->end(), shape.begin(), shape.end()))
            throw Error(std::string(who) + ": cotangent has shape " + shape_str(*cotangent) +
                        " but the output has shape " + shape_str(shape) + "; they must be equal");
    } else if (tape.value_size(output.index()) != 1) {
        throw Error(std::string(who) + ": output has shape " + shape_str(shape) +
                    "; without a cotangent the output must have one element (reduce it with "
                    "sum or mean, or pass a cotangent of its shape)");
    }
}

// An output that needs no gradient: nothing upstream of it can have one, which is almost always
// a mistake (PyTorch: "element 0 of tensors does not require grad").
template <class T>
void check_differentiable(const Tape<T>& tape, const Var<T>& output, const char* who)
{
    if (tape.record(output.index()).needs_grad) return;
    throw Error(std::string(who) + ": the output (op '" + tape.record(output.index()).op + "', tape position " +
                std::to_string(output.index()) +
                ") depends on nothing that needs a gradient: it was recorded under NoGrad, or built from "
                "constants, detached values, or a gradient computed without ad::create_graph (pass ad::create_graph to the grad() that "
                "computed it to differentiate it again)");
}

// The checks every sweep makes before it starts; returns the output's tape.
template <class T>
Tape<T>& start(const Var<T>& output, const Shape* cotangent, const std::vector<Var<T>>* inputs, bool into_params,
                const char* who)
{
    Tape<T>& tape = tape_of(output, who);
    if (inputs)
        for (const auto& x : *inputs) tape.check(x, who);
    check_output(tape, output, cotangent, who);
    check_differentiable(tape, output, who);
    check_versions(tape, output.index(), into_params, who);
    return tape;
}

[[noreturn]] void refuse_unused(const char* who, std::size_t k, const char* op, std::size_t at, bool after)
{
    throw Error(std::string(who) + ": input " + std::to_string(k) + " (op '" + op + "', tape position " +
                std::to_string(at) + ") is not used by the output" +
                (after ? " (it was recorded after the output)" : "") +
                ", so it has no gradient; pass ad::allow_unused to get zeros for inputs the output does not "
                "depend on");
}

template <class T>
using Hook = std::function<void(Parameter<T>&)>;

// Where a sweep starts: an output and its cotangent (null: ones, for a one-element output).
template <class T>
struct Seed {
    std::size_t index;
    const Tensor<T>* cotangent;
};

// adjoint(output) += cotangent, as a VJP adds into an input's adjoint: an output seeded twice
// gets the sum.
template <class T>
void plant(Sweep<T>& s, const Seed<T>& seed)
{
    const auto i = seed.index;
    const auto& r = s.tape.record(i);
    bool first;
    Tensor<T>* a;
    if (r.param && s.into_params) {
        a = &s.param_grad(i, first);  // the output is a parameter itself: dp/dp = I, no VJP adds it
    } else {
        auto& flag = s.reach_flag(i);
        first = !flag;
        flag = 1;
        a = first ? &s.take_adjoint(i, s.tape.shape(i)) : &s.adjoint(i);
    }
    if (first) {
        if (seed.cotangent) xt::noalias(*a) = *seed.cotangent;
        else a->fill(T(1));
    } else {
        if (seed.cotangent) xt::noalias(*a) += *seed.cotangent;
        else *a += T(1);
    }
}

// The sweep on tensors, from the seeds seed_at(0 .. n_seeds - 1) (s.output() is the last of
// them). `hook`, if given, is called for each parameter reached, at its earliest leaf; `keep`
// lists the records whose adjoints the caller reads after the loop.
template <class T, class SeedAt>
void run(Sweep<T>& s, std::size_t n_seeds, SeedAt seed_at, const Hook<T>* hook, const std::vector<Var<T>>* keep)
{
    Tape<T>& tape = s.tape;
    const std::size_t out = s.output();

    // With a hook: each parameter's earliest leaf, and whether any of its leaves was reached.
    std::vector<std::pair<std::uint32_t, Parameter<T>*>> earliest;
    if (hook) {
        for (const auto i : tape.param_leaves()) {
            if (i > out) break;
            auto* p = tape.record(i).param;
            bool seen = false;
            for (const auto& e : earliest) seen = seen || e.second == p;
            if (!seen) earliest.emplace_back(i, p);
        }
    }
    auto fire = [&](std::size_t i) {
        while (!earliest.empty() && earliest.back().first >= i) {
            auto* p = earliest.back().second;
            bool reached = false;
            for (const auto j : tape.param_leaves())
                reached = reached || (j <= out && tape.record(j).param == p && tape.record(j).needs_grad && s.reached(j));
            earliest.pop_back();
            if (reached) (*hook)(*p);
        }
    };

    // The records whose adjoints the caller reads after the sweep, last first: their buffers
    // are not handed on.
    std::vector<std::size_t> kept;
    if (keep) {
        kept.reserve(keep->size());
        for (const auto& v : *keep) kept.push_back(v.index());
    }
    std::sort(kept.begin(), kept.end());
    for (std::size_t k = 0; k < n_seeds; ++k) plant(s, seed_at(k));
    const bool check = anomaly_enabled();
    for (std::size_t i = out + 1; i-- > 0;) {
        auto& r = tape.record(i);
        if (s.reach_flag(i) && r.vjp) {  // i <= out
            Vjp<T> v{s, tape, r, i, s.adjoint(i), tape.read(i, [&s]() -> Tensor<T>& { return s.output_read(); })};
            r.vjp(v);
            if (check) check_backward_anomaly(s, i);
            while (!kept.empty() && kept.back() > i) kept.pop_back();
            if (kept.empty() || kept.back() != i) s.release_adjoint(i);
        }
        if (hook) fire(i);
    }
}

// The adjoints of the inputs after sweep s: zeros for one the sweep did not reach if
// `allow_unused`, else an ad::Error.
template <class T>
std::vector<Tensor<T>> collect(Sweep<T>& s, const std::vector<Var<T>>& inputs, bool allow_unused, const char* who)
{
    std::vector<Tensor<T>> out;
    out.reserve(inputs.size());
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        const std::size_t i = inputs[k].index();
        if (s.reached(i)) out.push_back(s.adjoint(i));
        else if (allow_unused) out.push_back(xt::zeros<T>(inputs[k].shape()));
        else refuse_unused(who, k, s.tape.record(i).op, i, i > s.output());
    }
    return out;
}

template <class T>
void backward_sweep(const Var<T>& output, const Tensor<T>* cotangent, const Hook<T>* hook)
{
    Tape<T>& tape = start<T>(output, cotangent ? &cotangent->shape() : nullptr, nullptr, true, "backward");
    Sweep<T> s(tape, output.index(), true);
    check_grad_shapes(s, "backward");
    const Seed<T> seed{output.index(), cotangent};
    try {
        run<T>(s, 1, [&](std::size_t) { return seed; }, hook, nullptr);
    } catch (...) {  // leave every .grad as it was before this sweep
        s.restore_params();
        throw;
    }
}

template <class T>
std::vector<Tensor<T>> first_order(const Var<T>& output, const Tensor<T>* cotangent, const std::vector<Var<T>>& inputs,
                                   bool allow_unused, const char* who)
{
    Tape<T>& tape = start<T>(output, cotangent ? &cotangent->shape() : nullptr, &inputs, false, who);
    Sweep<T> s(tape, output.index(), false);
    const Seed<T> seed{output.index(), cotangent};
    run<T>(s, 1, [&](std::size_t) { return seed; }, nullptr, &inputs);
    return collect(s, inputs, allow_unused, who);
}

// The sweep on Vars: every VJP is the op's differentiable one, recorded on the tape. An input
// the sweep did not reach gets an empty Var.
template <class T>
std::vector<Var<T>> graph_sweep(const Var<T>& output, const Var<T>* cotangent, const std::vector<Var<T>>& inputs,
                                const char* who)
{
    Tape<T>& tape = tape_of(output, who);
    if (!grad_enabled())
        throw Error(std::string(who) + ": ad::create_graph inside NoGrad: a graph of the gradient cannot be "
                                       "recorded while recording is off (leave the NoGrad scope first)");
    if (cotangent) tape.check(*cotangent, who);
    start<T>(output, cotangent ? &cotangent->shape() : nullptr, &inputs, false, who);
    const std::size_t out = output.index();

    std::vector<Var<T>> adjoints(out + 1);
    std::vector<char> reached(out + 1, 0);
    adjoints[out] = cotangent ? *cotangent : tape.constant_of(xt::ones<T>(tape.shape(out)));
    reached[out] = 1;
    for (std::size_t i = out + 1; i-- > 0;) {
        const auto& r = tape.record(i);
        if (!reached[i] || !r.vjp) continue;
        if (!r.vjp.differentiable())
            throw Error(std::string(who) + ": op '" + r.op + "' at tape position " + std::to_string(i) +
                        " has no differentiable VJP, so its gradient cannot be differentiated again "
                        "(it was written with Op::done(vjp) alone; state the VJP in tape ops too: "
                        "Op::done(vjp, graph_vjp))");
        GradVjp<T> v{tape, i, adjoints[i], tape.handle(i), adjoints, reached};
        r.vjp(v);
    }
    std::vector<Var<T>> result;
    result.reserve(inputs.size());
    for (const auto& x : inputs) {
        const std::size_t i = x.index();
        result.push_back(i <= out && reached[i] ? adjoints[i] : Var<T>());
    }
    return result;
}

// graph_sweep's result with zeros, or an ad::Error, for the inputs it did not reach.
template <class T>
std::vector<Var<T>> fill_unused(std::vector<Var<T>> gs, const Var<T>& output, const std::vector<Var<T>>& inputs,
                                bool allow_unused, const char* who)
{
    Tape<T>& tape = output.tape();
    for (std::size_t k = 0; k < gs.size(); ++k) {
        if (gs[k].anchor()) continue;
        const std::size_t i = inputs[k].index();
        if (!allow_unused) refuse_unused(who, k, tape.record(i).op, i, i > output.index());
        gs[k] = tape.constant(xt::zeros<T>(inputs[k].shape()));
    }
    return gs;
}

template <class T>
std::vector<Var<T>> param_grads(const Var<T>& output, const std::vector<Parameter<T>*>& params, bool allow_unused)
{
    Tape<T>& tape = tape_of(output, "grad");
    tape.check(output, "grad");
    std::vector<Var<T>> leaves;
    std::vector<std::size_t> owner;  // which parameter each leaf reads
    leaves.reserve(tape.param_leaves().size());
    owner.reserve(tape.param_leaves().size());
    for (const auto i : tape.param_leaves()) {
        if (i > output.index()) break;
        for (std::size_t k = 0; k < params.size(); ++k)
            if (tape.record(i).param == params[k] && tape.record(i).needs_grad) {
                leaves.push_back(tape.handle(i));
                owner.push_back(k);
            }
    }
    const auto per_leaf = graph_sweep<T>(output, nullptr, leaves, "grad");
    std::vector<Var<T>> result(params.size());
    for (std::size_t j = 0; j < leaves.size(); ++j) {
        if (!per_leaf[j].anchor()) continue;  // a leaf the output does not depend on
        const std::size_t k = owner[j];
        result[k] = result[k].anchor() ? add(result[k], per_leaf[j]) : per_leaf[j];
    }
    for (std::size_t k = 0; k < params.size(); ++k) {
        if (result[k].anchor()) continue;
        if (!allow_unused && !params[k]->requires_grad())
            throw Error("grad: parameter " + std::to_string(k) + " (shape " + shape_str(params[k]->value().shape()) +
                        ") is frozen (requires_grad_(false)), so it has no gradient; unfreeze it, or pass "
                        "ad::allow_unused to get zeros for it");
        if (!allow_unused)
            throw Error("grad: parameter " + std::to_string(k) + " (shape " + shape_str(params[k]->value().shape()) +
                        ") is not used by the output, so it has no gradient; pass ad::allow_unused to get zeros "
                        "for parameters the output does not depend on");
        result[k] = tape.constant(xt::zeros<T>(params[k]->value().shape()));
    }
    return result;
}

// The checks of a sweep from several outputs: as start() makes for one, each error naming the
// output. Returns the outputs' tape and, in `last`, the latest output's position.
template <class T>
Tape<T>& start_many(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents,
                    const std::vector<Var<T>>* inputs, bool into_params, const char* who, std::size_t& last)
{
    if (outputs.empty())
        throw Error(std::string(who) + ": no outputs given; pass at least one output and its cotangent");
    if (outputs.size() != cotangents.size())
        throw Error(std::string(who) + ": " + std::to_string(outputs.size()) + " outputs but " +
                    std::to_string(cotangents.size()) + " cotangents; give one cotangent per output");
    Tape<T>& tape = tape_of(outputs[0], who);
    tape.check_thread(who);
    if (inputs)
        for (const auto& x : *inputs) tape.check(x, who);
    last = 0;
    for (std::size_t k = 0; k < outputs.size(); ++k) {  // messages built only to throw: no allocation
        const auto output_k = [who, k] { return std::string(who) + ": output " + std::to_string(k); };
        if (&tape_of(outputs[k], who) != &tape)
            throw Error(output_k() + " was recorded on another tape than output 0; one sweep walks one tape");
        const auto& shape = tape.shape(outputs[k].index());
        if (!equal_shapes(cotangents[k].shape(), shape))
            throw Error(output_k() + " has shape " + shape_str(shape) + " but its cotangent has shape " +
                        shape_str(cotangents[k].shape()) + "; they must be equal");
        if (!tape.record(outputs[k].index()).needs_grad) check_differentiable(tape, outputs[k], output_k().c_str());
        last = std::max<std::size_t>(last, outputs[k].index());
    }
    check_versions(tape, last, into_params, who);
    return tape;
}

// Seed k of a sweep from several outputs, for run().
template <class T>
auto seeds_of(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents)
{
    return [&outputs, &cotangents](std::size_t k) { return Seed<T>{outputs[k].index(), &cotangents[k]}; };
}

template <class T>
std::vector<Tensor<T>> first_order_many(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents,
                                        const std::vector<Var<T>>& inputs, bool allow_unused)
{
    std::size_t last;
    Tape<T>& tape = start_many<T>(outputs, cotangents, &inputs, false, "vjp", last);
    Sweep<T> s(tape, last, false);
    run<T>(s, outputs.size(), seeds_of(outputs, cotangents), nullptr, &inputs);
    return collect(s, inputs, allow_unused, "vjp");
}

}  // namespace

template <class T>
void backward(const Var<T>& output)
{
    backward_sweep<T>(output, nullptr, nullptr);
}

template <class T>
void backward(const Var<T>& output, const Tensor<T>& cotangent)
{
    backward_sweep<T>(output, &cotangent, nullptr);
}

template <class T>
void backward(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents)
{
    std::size_t last;
    Tape<T>& tape = start_many<T>(outputs, cotangents, nullptr, true, "backward", last);
    Sweep<T> s(tape, last, true);
    check_grad_shapes(s, "backward");
    try {
        run<T>(s, outputs.size(), seeds_of(outputs, cotangents), nullptr, nullptr);
    } catch (...) {
        s.restore_params();
        throw;
    }
}

template <class T>
void backward(const Var<T>& output, const std::function<void(Parameter<T>&)>& on_grad_ready)
{
    backward_sweep<T>(output, nullptr, &on_grad_ready);
}

template <class T>
void backward(const Var<T>& output, const Tensor<T>& cotangent, const std::function<void(Parameter<T>&)>& on_grad_ready)
{
    backward_sweep<T>(output, &cotangent, &on_grad_ready);
}

template <class T>
std::vector<Tensor<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs)
{
    return first_order<T>(output, nullptr, inputs, false, "grad");
}

template <class T>
std::vector<Tensor<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, AllowUnused)
{
    return first_order<T>(output, nullptr, inputs, true, "grad");
}

template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, CreateGraph)
{
    return fill_unused(graph_sweep<T>(output, nullptr, inputs, "grad"), output, inputs, false, "grad");
}

template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, CreateGraph, AllowUnused)
{
    return fill_unused(graph_sweep<T>(output, nullptr, inputs, "grad"), output, inputs, true, "grad");
}

template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Parameter<T>*>& params, CreateGraph)
{
    return param_grads(output, params, false);
}

template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Parameter<T>*>& params, CreateGraph, AllowUnused)
{
    return param_grads(output, params, true);
}

template <class T>
std::vector<Tensor<T>> vjp(const Var<T>& output, const Tensor<T>& cotangent, const std::vector<Var<T>>& inputs)
{
    return first_order<T>(output, &cotangent, inputs, false, "vjp");
}

template <class T>
std::vector<Tensor<T>> vjp(const Var<T>& output, const Tensor<T>& cotangent, const std::vector<Var<T>>& inputs,
                           AllowUnused)
{
    return first_order<T>(output, &cotangent, inputs, true, "vjp");
}

template <class T>
std::vector<Tensor<T>> vjp(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents,
                           const std::vector<Var<T>>& inputs)
{
    return first_order_many<T>(outputs, cotangents, inputs, false);
}

template <class T>
std::vector<Tensor<T>> vjp(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents,
                           const std::vector<Var<T>>& inputs, AllowUnused)
{
    return first_order_many<T>(outputs, cotangents, inputs, true);
}

template <class T>
std::vector<Var<T>> vjp(const Var<T>& output, const Var<T>& cotangent, const std::vector<Var<T>>& inputs,
                        CreateGraph)
{
    return fill_unused(graph_sweep<T>(output, &cotangent, inputs, "vjp"), output, inputs, false, "vjp");
}

template <class T>
std::vector<Var<T>> vjp(const Var<T>& output, const Var<T>& cotangent, const std::vector<Var<T>>& inputs,
                        CreateGraph, AllowUnused)
{
    return fill_unused(graph_sweep<T>(output, &cotangent, inputs, "vjp"), output, inputs, true, "vjp");
}

template <class T>
std::vector<Tensor<T>> detail::backward_and_grad(const Var<T>& output, const Tensor<T>& cotangent,
                                                 const std::vector<Var<T>>& inputs)
{
    Tape<T>& tape = start<T>(output, &cotangent.shape(), &inputs, true, "backward");
    Sweep<T> s(tape, output.index(), true);
    check_grad_shapes(s, "backward");
    const Seed<T> seed{output.index(), &cotangent};
    try {
        run<T>(s, 1, [&](std::size_t) { return seed; }, nullptr, &inputs);
        return collect(s, inputs, true, "backward");
    } catch (...) {
        s.restore_params();
        throw;
    }
}

namespace {

template <class T>
Shape joined(const Tensor<T>& a, const Tensor<T>& b)
{
    Shape s = a.shape();
    s.insert(s.end(), b.shape().begin(), b.shape().end());
    return s;
}

template <class T>
void check_like(const char* who, const Tensor<T>& x, const Tensor<T>& v)
{
    if (x.shape() != v.shape())
        throw Error(std::string(who) + ": the vector has shape " + shape_str(v.shape()) + " but x has shape " +
                    shape_str(x.shape()) + "; they must be equal");
}

template <class T>
Var<T> scalar_output(const char* who, const Fn<T>& f, const Var<T>& x)
{
    const Var<T> y = f(x);
    x.tape().check(y, who);
    if (y.size() != 1)
        throw Error(std::string(who) + ": f must return one element, got shape " + shape_str(y.shape()));
    return y;
}

// f of one tensor as a function of a list of one: the one-tensor forms are the list forms.
template <class T>
ManyFn<T> one_input(const Fn<T>& f)
{
    return [&f](const std::vector<Var<T>>& in) { return std::vector<Var<T>>{f(in[0])}; };
}

}  // namespace

// Each records with grad enabled, inside a NoGrad scope too (PyTorch's functional API does the
// same): f runs on a tape of its own, so nothing outside is recorded.

template <class T>
Tensor<T> jacobian(const Fn<T>& f, const Tensor<T>& x)
{
    return detail::jacobian_many<T>(one_input<T>(f), {x}, {})[0][0];
}

template <class T>
Tensor<T> hvp(const Fn<T>& f, const Tensor<T>& x, const Tensor<T>& v)
{
    check_like("hvp", x, v);
    const EnableGrad on;
    Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> y = scalar_output("hvp", f, xv);
    if (!y.requires_grad()) return xt::zeros<T>(x.shape());
    const Var<T> g = grad<T>(y, {xv}, create_graph, allow_unused)[0];
    if (!g.requires_grad()) return xt::zeros<T>(x.shape());  // f is linear in x
    return vjp<T>(g, v, {xv}, allow_unused)[0];
}

template <class T>
Tensor<T> hessian(const Fn<T>& f, const Tensor<T>& x)
{
    return detail::hessian_many<T>(one_input<T>(f), {x}, {})[0][0];
}

template <class T>
std::pair<Tensor<T>, Tensor<T>> jvp(const Fn<T>& f, const Tensor<T>& x, const Tensor<T>& v)
{
    check_like("jvp", x, v);
    auto r = detail::jvp_many<T>(one_input<T>(f), {x}, {v}, {});
    return {std::move(r.first[0]), std::move(r.second[0])};
}

namespace {

// The chosen inputs' positions: argnums checked, or every input when it is empty.
inline Argnums chosen(const char* who, const Argnums& argnums, std::size_t n)
{
    if (argnums.empty()) {
        Argnums all(n);
        for (std::size_t i = 0; i < n; ++i) all[i] = i;
        return all;
    }
    for (std::size_t k = 0; k < argnums.size(); ++k) {
        if (argnums[k] >= n)
            throw Error(std::string(who) + ": argnums[" + std::to_string(k) + "] = " + std::to_string(argnums[k]) +
                        " is out of range for " + std::to_string(n) + " inputs");
        for (std::size_t j = 0; j < k; ++j)
            if (argnums[j] == argnums[k])
                throw Error(std::string(who) + ": argnums lists input " + std::to_string(argnums[k]) +
                            " twice (positions " + std::to_string(j) + " and " + std::to_string(k) + ")");
    }
    return argnums;
}

// f run on a tape of its own: the chosen inputs as variables, the others as constants.
template <class T>
struct ManyRun {
    const EnableGrad on;
    Tape<T> tape;
    Argnums args;
    std::vector<Var<T>> vars;    // chosen inputs, in the order of args
    std::vector<Var<T>> outputs;

    ManyRun(const char* who, const ManyFn<T>& f, const TensorList<T>& xs, const Argnums& argnums)
        : args(chosen(who, argnums, xs.size()))
    {
        std::vector<Var<T>> in(xs.size());
        std::vector<char> picked(xs.size(), 0);
        for (const auto a : args) picked[a] = 1;
        for (std::size_t i = 0; i < xs.size(); ++i) in[i] = picked[i] ? tape.variable(xs[i]) : tape.constant(xs[i]);
        for (const auto a : args) vars.push_back(in[a]);
        outputs = f(in);
        if (outputs.empty()) throw Error(std::string(who) + ": f returned no output");
        for (const auto& y : outputs) tape.check(y, who);
    }
    const Tensor<T>& x(std::size_t j) const { return tape.value(vars[j].index()); }
    std::size_t inputs_size() const
    {
        std::size_t n = 0;
        for (const auto& v : vars) n += v.size();
        return n;
    }
};

// The vectors of hvp and jvp: one per chosen input, shaped like it.
template <class T>
void check_vectors(const char* who, const ManyRun<T>& r, const TensorList<T>& v)
{
    if (v.size() != r.vars.size())
        throw Error(std::string(who) + ": " + std::to_string(v.size()) + " vectors were given for " +
                    std::to_string(r.vars.size()) + " differentiated inputs; expected one per input");
    for (std::size_t j = 0; j < v.size(); ++j)
        if (v[j].shape() != r.x(j).shape())
            throw Error(std::string(who) + ": vector " + std::to_string(j) + " has shape " + shape_str(v[j].shape()) +
                        " but input " + std::to_string(r.args[j]) + " has shape " + shape_str(r.x(j).shape()) +
                        "; they must be equal");
}

template <class T>
Var<T> one_output(const char* who, const ManyRun<T>& r)
{
    if (r.outputs.size() != 1 || r.outputs[0].size() != 1)
        throw Error(std::string(who) + ": f must return one element, got " +
                    (r.outputs.size() != 1 ? std::to_string(r.outputs.size()) + " outputs"
                                           : "shape " + shape_str(r.outputs[0].shape())));
    return r.outputs[0];
}

// out.flat(row * width + offset + k) = part.flat(k): a row's piece in a block of the result.
template <class T>
void put_row(Tensor<T>& out, std::size_t row, const Tensor<T>& part)
{
    std::copy(part.begin(), part.end(), out.begin() + static_cast<std::ptrdiff_t>(row * part.size()));
}

}  // namespace

template <class T>
std::vector<TensorList<T>> detail::jacobian_many(const ManyFn<T>& f, const TensorList<T>& xs, const Argnums& argnums)
{
    ManyRun<T> r("jacobian", f, xs, argnums);
    const std::size_t n_in = r.inputs_size();
    std::vector<TensorList<T>> J(r.outputs.size());
    for (std::size_t i = 0; i < r.outputs.size(); ++i) {
        const Var<T> y = r.outputs[i];
        for (std::size_t j = 0; j < r.vars.size(); ++j) J[i].push_back(xt::zeros<T>(joined(y.value(), r.x(j))));
        if (!y.requires_grad()) continue;  // depends on no chosen input
        const std::size_t m = y.size();
        if (m <= n_in) {  // reverse mode: row e of every block is e^T J
            Tensor<T> e = xt::zeros<T>(y.shape());
            for (std::size_t k = 0; k < m; ++k) {
                e.flat(k) = T(1);
                const auto rows = vjp<T>(y, e, r.vars, allow_unused);
                for (std::size_t j = 0; j < rows.size(); ++j) put_row(J[i][j], k, rows[j]);
                e.flat(k) = T(0);
            }
            continue;
        }
        // forward mode: g_j(u) = J_j^T u recorded once; column c of block j is the VJP of g_j
        // with cotangent e_c
        const Var<T> u = r.tape.variable(xt::zeros<T>(y.shape()));
        const auto g = vjp<T>(y, u, r.vars, create_graph, allow_unused);
        for (std::size_t j = 0; j < g.size(); ++j) {
            if (!g[j].requires_grad()) continue;
            const std::size_t n = r.vars[j].size();
            Tensor<T> e = xt::zeros<T>(r.x(j).shape());
            for (std::size_t c = 0; c < n; ++c) {
                e.flat(c) = T(1);
                const auto column = vjp<T>(g[j], e, {u}, allow_unused)[0];
                for (std::size_t k = 0; k < m; ++k) J[i][j].flat(k * n + c) = column.flat(k);
                e.flat(c) = T(0);
            }
        }
    }
    return J;
}

template <class T>
std::vector<TensorList<T>> detail::hessian_many(const ManyFn<T>& f, const TensorList<T>& xs, const Argnums& argnums)
{
    ManyRun<T> r("hessian", f, xs, argnums);
    const Var<T> y = one_output("hessian", r);
    const std::size_t n = r.vars.size();
    std::vector<TensorList<T>> H(n);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) H[i].push_back(xt::zeros<T>(joined(r.x(i), r.x(j))));
    if (!y.requires_grad()) return H;
    const auto g = grad<T>(y, r.vars, create_graph, allow_unused);
    for (std::size_t i = 0; i < n; ++i) {
        if (!g[i].requires_grad()) continue;  // f is linear in input i
        Tensor<T> e = xt::zeros<T>(r.x(i).shape());
        for (std::size_t k = 0; k < e.size(); ++k) {
            e.flat(k) = T(1);
            const auto rows = vjp<T>(g[i], e, r.vars, allow_unused);  // d g_i[k] / d x_j
            for (std::size_t j = 0; j < n; ++j) put_row(H[i][j], k, rows[j]);
            e.flat(k) = T(0);
        }
    }
    return H;
}

template <class T>
TensorList<T> detail::hvp_many(const ManyFn<T>& f, const TensorList<T>& xs, const TensorList<T>& v, const Argnums& argnums)
{
    ManyRun<T> r("hvp", f, xs, argnums);
    check_vectors("hvp", r, v);
    const Var<T> y = one_output("hvp", r);
    TensorList<T> out;
    for (std::size_t j = 0; j < r.vars.size(); ++j) out.push_back(xt::zeros<T>(r.x(j).shape()));
    if (!y.requires_grad()) return out;
    // H v = d/dx <grad f(x), v>: one sweep seeded with v_j at each gradient g_j
    const auto g = grad<T>(y, r.vars, create_graph, allow_unused);
    if (std::all_of(g.begin(), g.end(), [](const Var<T>& gj) { return gj.requires_grad(); }))
        return vjp<T>(g, v, r.vars, allow_unused);
    std::vector<Var<T>> outputs;  // leave out the gradients constant in x (no second derivative)
    TensorList<T> cotangents;
    for (std::size_t j = 0; j < g.size(); ++j) {
        if (!g[j].requires_grad()) continue;
        outputs.push_back(g[j]);
        cotangents.push_back(v[j]);
    }
    if (outputs.empty()) return out;  // f is linear in every chosen input
    return vjp<T>(outputs, cotangents, r.vars, allow_unused);
}

template <class T>
std::pair<TensorList<T>, TensorList<T>> detail::jvp_many(const ManyFn<T>& f, const TensorList<T>& xs, const TensorList<T>& v,
                                                   const Argnums& argnums)
{
    ManyRun<T> r("jvp", f, xs, argnums);
    check_vectors("jvp", r, v);
    std::pair<TensorList<T>, TensorList<T>> out;
    for (const auto& y : r.outputs) {
        out.first.push_back(y.value());
        Tensor<T> t = xt::zeros<T>(y.shape());
        if (y.requires_grad()) {
            // J v = d/du <J^T u, v>, J^T u recorded for a variable u
            const Var<T> u = r.tape.variable(xt::zeros<T>(y.shape()));
            const auto g = vjp<T>(y, u, r.vars, create_graph, allow_unused);
            for (std::size_t j = 0; j < g.size(); ++j)
                if (g[j].requires_grad()) t += vjp<T>(g[j], v[j], {u}, allow_unused)[0];
        }
        out.second.push_back(std::move(t));
    }
    return out;
}

#define AD_INSTANTIATE_SWEEPS(T)                                                                            \
    template void backward(const Var<T>&);                                                                  \
    template void backward(const Var<T>&, const Tensor<T>&);                                                \
    template void backward(const std::vector<Var<T>>&, const std::vector<Tensor<T>>&);                      \
    template std::vector<Tensor<T>> vjp(const std::vector<Var<T>>&, const std::vector<Tensor<T>>&,          \
                                        const std::vector<Var<T>>&);                                        \
    template std::vector<Tensor<T>> vjp(const std::vector<Var<T>>&, const std::vector<Tensor<T>>&,          \
                                        const std::vector<Var<T>>&, AllowUnused);                           \
    template void backward(const Var<T>&, const std::function<void(Parameter<T>&)>&);                       \
    template void backward(const Var<T>&, const Tensor<T>&, const std::function<void(Parameter<T>&)>&);     \
    template std::vector<Tensor<T>> grad(const Var<T>&, const std::vector<Var<T>>&);                        \
    template std::vector<Tensor<T>> grad(const Var<T>&, const std::vector<Var<T>>&, AllowUnused);           \
    template std::vector<Var<T>> grad(const Var<T>&, const std::vector<Var<T>>&, CreateGraph);              \
    template std::vector<Var<T>> grad(const Var<T>&, const std::vector<Var<T>>&, CreateGraph, AllowUnused); \
    template std::vector<Var<T>> grad(const Var<T>&, const std::vector<Parameter<T>*>&, CreateGraph);       \
    template std::vector<Var<T>> grad(const Var<T>&, const std::vector<Parameter<T>*>&, CreateGraph,        \
                                      AllowUnused);                                                         \
    template std::vector<Tensor<T>> vjp(const Var<T>&, const Tensor<T>&, const std::vector<Var<T>>&);       \
    template std::vector<Tensor<T>> vjp(const Var<T>&, const Tensor<T>&, const std::vector<Var<T>>&,        \
                                        AllowUnused);                                                       \
    template std::vector<Var<T>> vjp(const Var<T>&, const Var<T>&, const std::vector<Var<T>>&, CreateGraph); \
    template std::vector<Var<T>> vjp(const Var<T>&, const Var<T>&, const std::vector<Var<T>>&, CreateGraph,  \
                                     AllowUnused);                                                          \
    template std::vector<Tensor<T>> detail::backward_and_grad(const Var<T>&, const Tensor<T>&,              \
                                                              const std::vector<Var<T>>&);                  \
    template Tensor<T> jacobian(const Fn<T>&, const Tensor<T>&);                                            \
    template Tensor<T> hvp(const Fn<T>&, const Tensor<T>&, const Tensor<T>&);                               \
    template Tensor<T> hessian(const Fn<T>&, const Tensor<T>&);                                             \
    template std::pair<Tensor<T>, Tensor<T>> jvp(const Fn<T>&, const Tensor<T>&, const Tensor<T>&);            \
    template std::vector<TensorList<T>> detail::jacobian_many(const ManyFn<T>&, const TensorList<T>&, const Argnums&); \
    template std::vector<TensorList<T>> detail::hessian_many(const ManyFn<T>&, const TensorList<T>&, const Argnums&);  \
    template TensorList<T> detail::hvp_many(const ManyFn<T>&, const TensorList<T>&, const TensorList<T>&, const Argnums&); \
    template std::pair<TensorList<T>, TensorList<T>> detail::jvp_many(const ManyFn<T>&, const TensorList<T>&,           \
                                                                const TensorList<T>&, const Argnums&);
AD_INSTANTIATE_SWEEPS(float)
AD_INSTANTIATE_SWEEPS(double)

}  // namespace ad
