// The reverse sweep and what is built on it: backward, grad, vjp, and the functional API
// (jacobian, hvp, hessian, jvp).
//
// Higher order: grad(y, xs, ad::create_graph) returns the gradients as Vars on the same tape,
// recorded from every op's differentiable VJP, so they can be differentiated again, to any
// order (libtorch's create_graph = true; JAX's grad of grad).
#pragma once

#include "autodiff/tape.hpp"

#include <functional>
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

// backward() that also calls on_grad_ready(p) for every parameter p the sweep reaches, once, as
// soon as p.grad is final for this sweep: when the sweep passes the earliest record that reads p,
// every op that reads p has added into p.grad. Parameters the output does not depend on are not
// reported (their .grad is untouched). Data-parallel training starts communication from here.
template <class T>
void backward(const Var<T>& output, const std::function<void(Parameter<T>&)>& on_grad_ready);

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

}  // namespace ad
