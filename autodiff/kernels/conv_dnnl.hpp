// conv2d's float32 kernels on oneDNN (built with AD_DNNL; autodiff/backends.hpp). Tensors in the
// engine's layouts: x [N, C, H, W], w [F, C / groups, kh, kw], y [N, F, Ho, Wo]. Each function
// returns false, having written nothing, when oneDNN does not take the geometry (or the build has
// no oneDNN): the caller then runs the im2col kernels (nchw.hpp).
#pragma once

#include "autodiff/kernels/nchw.hpp"

namespace ad::kernels::dnnl_conv {

// y = conv(x, w) (+ b when b is not null).
bool forward(const float* x, const float* w, const float* b, const ConvGeometry& g, float* y);
// dx (+)= the input gradient for the output cotangent gy.
bool input_grad(const float* gy, const float* w, const ConvGeometry& g, float* dx, bool accumulate);
// dw (+)= the weight gradient for input x and output cotangent gy.
bool weight_grad(const float* x, const float* gy, const ConvGeometry& g, float* dw, bool accumulate);
// The plans (primitives for one geometry at one pool size) the calling thread holds: for tests.
std::size_t plans_held();

}  // namespace ad::kernels::dnnl_conv
