// The reverse sweep and what is built on it: backward, grad, vjp, jacobian.
#pragma once

#include "autodiff/tape.hpp"

#include <functional>
#include <vector>

namespace ad {

// Adds d(output)/d(p) into p.grad for every parameter p the output depends on. The output must
// have one element, or a cotangent of the output's shape must be given (then this is the
// vector-Jacobian product cotangent^T J accumulated into the parameters). The tape is kept:
// backward from another output of the same forward pass works without re-running it.
template <class T>
void backward(const Var<T>& output);
template <class T>
void backward(const Var<T>& output, const Tensor<T>& cotangent);

// backward() that also calls on_grad_ready(p) for every parameter p the sweep reaches, once, as soon
// as p.grad is final for this sweep: when the sweep passes the earliest record that reads p (a
// parameter leaf), every op that reads p has already added into p.grad. Parameters the output does not
// depend on are not reported (their .grad is untouched). Data-parallel training starts reducing a
// gradient from here while the rest of the sweep runs.
template <class T>
void backward(const Var<T>& output, const std::function<void(Parameter<T>&)>& on_grad_ready);

// Gradients of a one-element output with respect to chosen inputs (variables, parameters or
// intermediate values), returned in order. Parameter gradients (.grad) are left untouched.
// An input the output does not depend on gets zeros.
template <class T>
std::vector<Tensor<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs);

// cotangent^T J for each chosen input, where J is the Jacobian of output with respect to it.
template <class T>
std::vector<Tensor<T>> vjp(const Var<T>& output, const Tensor<T>& cotangent,
                           const std::vector<Var<T>>& inputs);

// The Jacobian of f at x, built one VJP row per output element on a tape of its own. Its shape
// is f(x).shape followed by x.shape: for f: R^n -> R^m, the m x n matrix d f_i / d x_j.
template <class T>
Tensor<T> jacobian(const std::function<Var<T>(const Var<T>&)>& f, const Tensor<T>& x);

}  // namespace ad
