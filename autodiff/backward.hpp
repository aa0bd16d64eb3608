// The reverse sweep and what is built on it: backward, grad, vjp, and the functional API
// (jacobian, hvp, hessian, jvp) over one tensor or several, JAX-style.
//
// Higher order: grad(y, xs, ad::create_graph) returns the gradients as Vars on the same tape,
// recorded from every op's differentiable VJP, so they can be differentiated again, to any
// order (libtorch's create_graph = true; JAX's grad of grad).
#pragma once

#include "autodiff/tape.hpp"

#include <xtensor/xexpression.hpp>

#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

namespace ad {

// The tag that asks a sweep to record its VJPs as tape ops.
struct CreateGraph {};
inline constexpr CreateGraph create_graph{};
// The tag that asks grad() and vjp() for zeros for an input the output does not depend on (a
// constant, a value off the output's path, or one recorded after it), which they otherwise
// refuse with an ad::Error naming the input (PyTorch's allow_unused). It follows
// ad::create_graph where both are given.
struct AllowUnused {};
inline constexpr AllowUnused allow_unused{};

// Adds d(output)/d(p) into p.grad for every parameter p the output depends on. The output must
// have one element, or a cotangent of the output's shape must be given (then this is the
// vector-Jacobian product cotangent^T J accumulated into the parameters). The tape is kept:
// backward from another output of the same forward pass works without re-running it. An output
// that needs no gradient (recorded under NoGrad, or built from constants) is refused, as grad()
// refuses it. If a VJP or the hook below throws, every .grad is left as it was before the call.
template <class T>
void backward(const Var<T>& output);
template <class T>
void backward(const Var<T>& output, const Tensor<T>& cotangent);

// backward() from several outputs of one tape in one sweep: adds cotangents[k]^T J_k into
// every parameter's .grad, summed over k (PyTorch's torch.autograd.backward(outputs,
// grad_tensors)). An output given twice gets the sum of its cotangents. After
// g = grad(loss, params, ad::create_graph), backward(g, v) leaves the Hessian-vector product
// H v in the parameters' .grad, without recording the inner product <g, v>. Each cotangent has
// its output's shape; an output that needs no gradient is refused, as backward() refuses it.
template <class T>
void backward(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents);

// backward() that also calls on_grad_ready(p) for every parameter p the sweep reaches, once, as
// soon as p.grad is final for this sweep: when the sweep passes the earliest record that reads p,
// every op that reads p has added into p.grad. Parameters the output does not depend on are not
// reported (their .grad is untouched). Data-parallel training starts communication from here.
template <class T>
void backward(const Var<T>& output, const std::function<void(Parameter<T>&)>& on_grad_ready);
// The same from a cotangent of the output's shape (cotangent^T J, as backward(output, cotangent)).
template <class T>
void backward(const Var<T>& output, const Tensor<T>& cotangent,
              const std::function<void(Parameter<T>&)>& on_grad_ready);

// Gradients of a one-element output with respect to chosen inputs (variables, parameters or
// intermediate values), returned in order. Parameter gradients (.grad) are left untouched.
// An input the output does not depend on is refused, or gets zeros with ad::allow_unused. An
// output that needs no gradient (recorded under NoGrad, built from constants, detached values,
// or a gradient taken without create_graph) is refused.
template <class T>
std::vector<Tensor<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs);
template <class T>
std::vector<Tensor<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, AllowUnused);
// The same gradients as Vars recorded on the tape, differentiable again.
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, CreateGraph);
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, CreateGraph, AllowUnused);

// Gradients with respect to parameters, each summed over every leaf that read it in the
// forward pass (tape.param(p) may have been called more than once), as Vars: what a Hessian-vector
// product over a model's weights or a gradient penalty on them needs. A parameter the output
// does not depend on is refused, or gets zeros with ad::allow_unused.
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Parameter<T>*>& params, CreateGraph);
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Parameter<T>*>& params, CreateGraph, AllowUnused);

// cotangent^T J for each chosen input, where J is the Jacobian of output with respect to it.
// Unused inputs and an output that needs no gradient are treated as grad() treats them.
template <class T>
std::vector<Tensor<T>> vjp(const Var<T>& output, const Tensor<T>& cotangent,
                           const std::vector<Var<T>>& inputs);
template <class T>
std::vector<Tensor<T>> vjp(const Var<T>& output, const Tensor<T>& cotangent,
                           const std::vector<Var<T>>& inputs, AllowUnused);
// The same from several outputs of one tape in one sweep: sum_k cotangents[k]^T J_k for each
// input (PyTorch's torch.autograd.grad(outputs, inputs, grad_outputs)). Errors as backward() over
// several outputs gives them.
template <class T>
std::vector<Tensor<T>> vjp(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents,
                           const std::vector<Var<T>>& inputs);
template <class T>
std::vector<Tensor<T>> vjp(const std::vector<Var<T>>& outputs, const std::vector<Tensor<T>>& cotangents,
                           const std::vector<Var<T>>& inputs, AllowUnused);
// The same as Vars recorded on the tape; the cotangent may itself be a Var (then the result is
// differentiable with respect to it too).
template <class T>
std::vector<Var<T>> vjp(const Var<T>& output, const Var<T>& cotangent, const std::vector<Var<T>>& inputs,
                        CreateGraph);
template <class T>
std::vector<Var<T>> vjp(const Var<T>& output, const Var<T>& cotangent, const std::vector<Var<T>>& inputs,
                        CreateGraph, AllowUnused);

namespace detail {
// backward(output, cotangent) that also returns the adjoints of `inputs` (zeros where unused),
// which must not be parameter leaves: what a checkpointed block's VJP needs in one sweep.
template <class T>
std::vector<Tensor<T>> backward_and_grad(const Var<T>& output, const Tensor<T>& cotangent,
                                         const std::vector<Var<T>>& inputs);
}  // namespace detail

// --- functional API: each runs f on a tape of its own, with grad enabled (inside NoGrad too) ---

template <class X>
struct NonDeduced {
    using type = X;
};
// A function of one tensor, taking T from the tensor argument beside it (so a lambda works
// without template arguments).
template <class T>
using Fn = typename NonDeduced<std::function<Var<T>(const Var<T>&)>>::type;

// The Jacobian of f at x, of shape f(x).shape followed by x.shape: for f: R^n -> R^m, the
// m x n matrix d f_i / d x_j. Built one VJP row per output element (reverse mode), or, when the
// output has more elements than the input, one JVP column per input element (forward mode).
template <class T>
Tensor<T> jacobian(const Fn<T>& f, const Tensor<T>& x);

// H v for a one-element f, H its Hessian at x: the VJP of the gradient (built with
// create_graph) with cotangent v. Costs about four times one gradient.
template <class T>
Tensor<T> hvp(const Fn<T>& f, const Tensor<T>& x, const Tensor<T>& v);

// The Hessian of a one-element f at x, of shape x.shape followed by x.shape: the gradient
// recorded once, then one sweep over it per element of x.
template <class T>
Tensor<T> hessian(const Fn<T>& f, const Tensor<T>& x);

// (f(x), J v): the Jacobian-vector product, forward mode by transposing reverse mode: the VJP
// u -> J^T u is recorded with create_graph for a variable cotangent u, and its own VJP with
// cotangent v is J v. It needs no tangent rule per op (every op with a differentiable VJP has a
// JVP), and costs about three times one VJP.
template <class T>
std::pair<Tensor<T>, Tensor<T>> jvp(const Fn<T>& f, const Tensor<T>& x, const Tensor<T>& v);

// --- the same over several tensors (JAX's argnums, torch.func's tuple of inputs) ---
//
// f takes the inputs as one list, xs[0], xs[1], ..., and returns one Var or a list of them.
// `argnums` picks the inputs to differentiate (in the order given; empty: all of them); the
// others are passed to f as constants. Every result is a list in the order of argnums:
//
//   auto f = [](const std::vector<ad::Var<double>>& v) { return ad::sum(v[0] * ad::exp(v[1])); };
//   auto J = ad::jacobian<double>(f, {x, y});       // J[0][1]: d f / d y, of shape y.shape
//   auto H = ad::hessian<double>(f, {x, y}, {1});   // H[0][0]: d2 f / dy2
//
// (T is deduced from a std::vector<Tensor<T>>; a braced list needs it spelled, as above.)
//
// - jacobian: J[i][j] = d outputs[i] / d xs[argnums[j]], of shape outputs[i].shape ++
//   xs[argnums[j]].shape (one output: J[0][j]). Reverse mode per output, or forward mode when
//   that output has more elements than the chosen inputs together.
// - hessian: f returns one element; H[i][j] = d2 f / d xs[argnums[i]] d xs[argnums[j]], of shape
//   xs[argnums[i]].shape ++ xs[argnums[j]].shape.
// - hvp: f returns one element; v holds one tensor per chosen input, shaped like it; result[i] =
//   sum_j H[i][j] v[j].
// - jvp: v as for hvp; returns (the outputs' values, the outputs' tangents sum_j J[i][j] v[j]).
// A bad argnums (out of range, repeated), a wrong number or shape of vectors, or f returning no
// output is an ad::Error naming the function.
template <class T>
using TensorList = std::vector<Tensor<T>>;
template <class T>
using ManyFn = std::function<std::vector<Var<T>>(const std::vector<Var<T>>&)>;
using Argnums = std::vector<std::size_t>;

namespace detail {
template <class T>
std::vector<TensorList<T>> jacobian_many(const ManyFn<T>& f, const TensorList<T>& xs, const Argnums& argnums);
template <class T>
std::vector<TensorList<T>> hessian_many(const ManyFn<T>& f, const TensorList<T>& xs, const Argnums& argnums);
template <class T>
TensorList<T> hvp_many(const ManyFn<T>& f, const TensorList<T>& xs, const TensorList<T>& v, const Argnums& argnums);
template <class T>
std::pair<TensorList<T>, TensorList<T>> jvp_many(const ManyFn<T>& f, const TensorList<T>& xs, const TensorList<T>& v,
                                           const Argnums& argnums);

// f as a function returning a list, whether it returns one Var or a list.
template <class T, class F>
ManyFn<T> many_outputs(F&& f)
{
    using R = std::decay_t<std::invoke_result_t<F&, const std::vector<Var<T>>&>>;
    if constexpr (std::is_same<R, Var<T>>::value)
        return [g = std::forward<F>(f)](const std::vector<Var<T>>& xs) { return std::vector<Var<T>>{g(xs)}; };
    else {
        static_assert(std::is_same<R, std::vector<Var<T>>>::value,
                      "f must take a std::vector<Var<T>> and return a Var<T> or a std::vector<Var<T>>");
        return ManyFn<T>(std::forward<F>(f));
    }
}

template <class E>
using value_type_of = typename std::decay_t<E>::value_type;
// An xtensor expression other than Tensor<value_type> itself: what the overloads below convert.
template <class E>
constexpr bool is_expression_v = xt::is_xexpression<std::decay_t<E>>::value &&
                                 !std::is_same<std::decay_t<E>, Tensor<value_type_of<E>>>::value;
}  // namespace detail

template <class T, class F>
std::vector<TensorList<T>> jacobian(F&& f, const TensorList<T>& xs, const Argnums& argnums = {})
{
    return detail::jacobian_many<T>(detail::many_outputs<T>(std::forward<F>(f)), xs, argnums);
}
template <class T, class F>
std::vector<TensorList<T>> hessian(F&& f, const TensorList<T>& xs, const Argnums& argnums = {})
{
    return detail::hessian_many<T>(detail::many_outputs<T>(std::forward<F>(f)), xs, argnums);
}
template <class T, class F>
TensorList<T> hvp(F&& f, const TensorList<T>& xs, const TensorList<T>& v, const Argnums& argnums = {})
{
    return detail::hvp_many<T>(detail::many_outputs<T>(std::forward<F>(f)), xs, v, argnums);
}
template <class T, class F>
std::pair<TensorList<T>, TensorList<T>> jvp(F&& f, const TensorList<T>& xs, const TensorList<T>& v, const Argnums& argnums = {})
{
    return detail::jvp_many<T>(detail::many_outputs<T>(std::forward<F>(f)), xs, v, argnums);
}

// --- any xtensor expression where a tensor is expected ---
// ad::hessian(f, xt::zeros<double>({2})), ad::jacobian(f, x + 2.0 * y): the expression is
// evaluated once into a Tensor of its value_type, which is T.
template <class F, class E, std::enable_if_t<detail::is_expression_v<E>, int> = 0>
auto jacobian(F&& f, const E& x)
{
    using T = detail::value_type_of<E>;
    return jacobian<T>(Fn<T>(std::forward<F>(f)), Tensor<T>(x));
}
template <class F, class E, std::enable_if_t<detail::is_expression_v<E>, int> = 0>
auto hessian(F&& f, const E& x)
{
    using T = detail::value_type_of<E>;
    return hessian<T>(Fn<T>(std::forward<F>(f)), Tensor<T>(x));
}
template <class F, class E1, class E2,
          std::enable_if_t<(xt::is_xexpression<E1>::value && xt::is_xexpression<E2>::value) &&
                               (detail::is_expression_v<E1> || detail::is_expression_v<E2>),
                           int> = 0>
auto hvp(F&& f, const E1& x, const E2& v)
{
    using T = detail::value_type_of<E1>;
    return hvp<T>(Fn<T>(std::forward<F>(f)), Tensor<T>(x), Tensor<T>(v));
}
template <class F, class E1, class E2,
          std::enable_if_t<(xt::is_xexpression<E1>::value && xt::is_xexpression<E2>::value) &&
                               (detail::is_expression_v<E1> || detail::is_expression_v<E2>),
                           int> = 0>
auto jvp(F&& f, const E1& x, const E2& v)
{
    using T = detail::value_type_of<E1>;
    return jvp<T>(Fn<T>(std::forward<F>(f)), Tensor<T>(x), Tensor<T>(v));
}

}  // namespace ad
