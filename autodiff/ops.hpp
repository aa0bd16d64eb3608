// Every differentiable op, declared for T = float and T = double. Each ops_X.hpp declares what
// ops_X.cpp defines, each op with its vector-Jacobian product beside it. Binary ops broadcast
// like NumPy.
//
// Choices at points where an op is not differentiable (each matches PyTorch):
//   relu'(0) = 0; abs'(0) = 0; leaky_relu'(0) = alpha; elu'(0) = alpha;
//   maximum/minimum with a tie split the gradient equally between the two inputs;
//   max along an axis with ties sends the gradient to the first maximal element;
//   clamp passes the gradient where lo <= x <= hi, boundaries included;
//   norm(x) at x = 0 has gradient 0; sqrt'(0) = +inf.
// NaN propagates (as in PyTorch): relu, maximum, minimum, clamp and max along an axis give NaN
// where an input is NaN (max: for the whole slice) and leave every other element as it would
// be. Gradients there follow PyTorch too: maximum and minimum pass g to both operands, clamp
// passes 0.
//
// Second derivatives: every op here states a differentiable VJP (autodiff/op.hpp), so
// ad::create_graph sweeps differentiate to any order. Ops whose derivative is a step function
// (relu, leaky_relu, abs, clamp, maximum, minimum, max along an axis, dropout) have second
// derivative exactly 0; at the kinks the first-order choices above hold.
#pragma once

#include "autodiff/ops_conv.hpp"
#include "autodiff/ops_decomp.hpp"
#include "autodiff/ops_elementwise.hpp"
#include "autodiff/ops_linalg.hpp"
#include "autodiff/ops_nn.hpp"
#include "autodiff/ops_reduce.hpp"
#include "autodiff/ops_shape.hpp"
