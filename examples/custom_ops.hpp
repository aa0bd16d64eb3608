// The custom-op example's three ops (examples/custom_op.cpp), written on the public op contract
// (autodiff/op.hpp). A header of their own, so the op table's generic tests check them as they
// check the library's ops.
#pragma once

#include "autodiff/autodiff.hpp"
#include "autodiff/op.hpp"

#include <cmath>
#include <string>

namespace ops {

// log cosh x = |x| + log1p(e^{-2|x|}) - log 2;  d = tanh(x) g
template <class T>
ad::Var<T> log_cosh(const ad::Var<T>& x)
{
    ad::Op<T> op("log_cosh", {x});
    const auto a = xt::abs(op.x(0));
    xt::noalias(op.out()) = a + xt::log1p(xt::exp(T(-2) * a)) - T(std::log(2.0));
    // One lambda for both VJPs: tanh is xt::tanh on tensors and ad::tanh on Vars.
    auto vjp = [](auto& v) { v.acc(0, v.g * tanh(v.x(0))); };
    return op.done(vjp, vjp);
}

// y = x;  dx = clamp(g, -c, c)
template <class T>
ad::Var<T> clip_grad(const ad::Var<T>& x, T c)
{
    if (!(c > 0)) throw ad::Error("clip_grad: the bound c = " + std::to_string(c) + " must be > 0");
    ad::Op<T> op("clip_grad", {x});
    xt::noalias(op.out()) = op.x(0);
    return op.done([c](ad::Vjp<T>& v) { v.acc(0, xt::clip(v.g, -c, c)); },
                   [c](ad::GradVjp<T>& v) { v.acc(0, ad::clamp(v.g, -c, c)); });
}

// y = step round(x / step);  dx = g (straight through)
template <class T>
ad::Var<T> round_ste(const ad::Var<T>& x, T step)
{
    ad::Op<T> op("round_ste", {x});
    xt::noalias(op.out()) = step * xt::round(op.x(0) / step);
    auto straight_through = [](auto& v) { v.acc(0, v.g); };  // reads the same on tensors and Vars
    return op.done(straight_through, straight_through);
}

}  // namespace ops
