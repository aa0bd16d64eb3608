// Convolution, pooling and batch normalisation on NCHW tensors ([batch, channels, height,
// width]), declared for T = float and T = double. Definitions, each with its VJP, are in
// ops_conv.cpp; the loops they call are in kernels/nchw.hpp. Convolutions run as im2col and one
// GEMM per group over the whole batch, in both passes.
//
// Sizes follow PyTorch: an output axis has (in + 2 padding - dilation (k - 1) - 1) / stride + 1
// elements. Every op refuses bad shapes and attributes with an ad::Error that names the op and
// the shapes.
//
// Limits, the same for convolutions and pooling: every window attribute - the kernel's height
// and width (a convolution's from its weight), stride, padding, dilation, groups - is at most
// window_attribute_limit (65535), far above any real network and small enough that no size built
// from them wraps. Every size is computed in 64 bits that cannot wrap, and the output and each
// work buffer (im2col columns, pooling indices) must fit in `max_bytes` of the options (4 GiB by
// default; raise it for larger layers): both are checked once per call, before anything is
// allocated, and refused with an ad::Error naming the op, the shapes and the byte count.
#pragma once

#include "autodiff/ops_elementwise.hpp"  // Scalar
#include "autodiff/tape.hpp"

#include <array>
#include <cstddef>
#include <cstdint>

namespace ad {

using Size2 = std::array<std::size_t, 2>;  // (height, width)

// The largest kernel extent, stride, padding, dilation or groups of a convolution or pooling.
inline constexpr std::size_t window_attribute_limit = 65535;
// The default largest buffer a convolution or pooling may allocate, in bytes.
inline constexpr std::uint64_t window_default_max_bytes = std::uint64_t(4) << 30;

struct Conv2dOptions {
    Size2 stride{1, 1};
    Size2 padding{0, 0};   // zeros added on both sides
    Size2 dilation{1, 1};  // spacing of the kernel taps
    std::size_t groups = 1;  // C and F split into this many groups; groups = C is depthwise
    // The largest output or work buffer (the unfolded input) the op may allocate, in bytes; the
    // ops its gradient records keep it.
    std::uint64_t max_bytes = window_default_max_bytes;
};

struct Pool2dOptions {
    Size2 kernel{2, 2};
    Size2 stride{2, 2};
    Size2 padding{0, 0};  // at most half the kernel (PyTorch's rule), so no window is all padding
    // The largest output or index buffer the op may allocate, in bytes.
    std::uint64_t max_bytes = window_default_max_bytes;
    Pool2dOptions() = default;
    // A k x k window moved by k (PyTorch's default stride).
    explicit Pool2dOptions(std::size_t k, std::size_t stride = 0, std::size_t pad = 0)
        : kernel{k, k}, stride{stride ? stride : k, stride ? stride : k}, padding{pad, pad} {}
};

// y[n, f] = b[f] + sum over c in f's group, i, j of w[f, c, i, j] x[n, c, sh oh + dh i - ph, sw ow + dw j - pw]
// (cross-correlation, as every deep-learning library computes it). x [N, C, H, W],
// w [F, C / groups, kh, kw], b [F]; y [N, F, Ho, Wo].
template <class T> Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Conv2dOptions& o = {});
template <class T> Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, const Conv2dOptions& o = {});

// The two adjoints of conv2d, as ops of their own (so conv2d's gradient is itself
// differentiable): for y = conv2d(x, w) and a cotangent g of y's shape,
//   conv2d_input_grad(g, w, x's shape)  = dx  (a transposed convolution of g),
//   conv2d_weight_grad(x, g, w's shape) = dw.
template <class T>
Var<T> conv2d_input_grad(const Var<T>& g, const Var<T>& w, const Shape& input_shape, const Conv2dOptions& o = {});
template <class T>
Var<T> conv2d_weight_grad(const Var<T>& x, const Var<T>& g, const Shape& weight_shape, const Conv2dOptions& o = {});

// The maximum of each window; the gradient goes to the (first) maximal element. Padding counts
// as -infinity.
template <class T> Var<T> max_pool2d(const Var<T>& x, const Pool2dOptions& o);
// The mean of each window, padding counted as zeros (divisor kh kw; PyTorch's default).
template <class T> Var<T> avg_pool2d(const Var<T>& x, const Pool2dOptions& o);
// [N, C, H, W] -> [N, C]: the mean over each channel's plane.
template <class T> Var<T> global_avg_pool2d(const Var<T>& x);
// [N, d1, d2, ...] -> [N, d1 d2 ...].
template <class T> Var<T> flatten(const Var<T>& x);

// Batch normalisation over the channels of x [N, C, H, W] (or [N, C]) with batch statistics
// (training mode: at least 2 values per channel, N H W >= 2, as in PyTorch), one op: per channel
// c, over n, h, w,
//   mean_c, var_c = the mean and the biased (1/m) variance, m = N H W;
//   y = (x - mean_c) / sqrt(var_c + eps) gamma_c + beta_c;  gamma, beta of shape [C].
// If `stats` is given it receives mean and var ([C] each), for running statistics (nn::BatchNorm2d
// keeps those; evaluation mode is channel_affine, below, with factors built from them).
template <class T>
struct BatchStats {
    Tensor<T> mean, var;
};
template <class T>
Var<T> batch_norm2d(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Scalar<T> eps = T(1e-5),
                    BatchStats<T>* stats = nullptr);

// A per-channel affine map of x [N, C, H, W] (or [N, C]), one op: y = x scale_c + shift_c, with
// scale and shift of shape [C]. Batch normalisation with fixed statistics (nn::BatchNorm2d in
// evaluation mode) folds them and the affine parameters into scale and shift.
template <class T> Var<T> channel_affine(const Var<T>& x, const Var<T>& scale, const Var<T>& shift);

}  // namespace ad
