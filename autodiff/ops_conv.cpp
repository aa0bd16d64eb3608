// Convolution, pooling and batch normalisation ops on NCHW tensors. Each op checks its shapes,
// fills its output through a kernel of kernels/nchw.hpp and records a VJP that calls the
// adjoint kernels. The op's saved buffer holds the unfolded input (im2col) and the work space
// of both passes, sized by the first step and reused by every later one.
#include "autodiff/ops_conv.hpp"

#include "autodiff/op.hpp"
#include "autodiff/backends.hpp"
#include "autodiff/kernels/conv_dnnl.hpp"
#include "autodiff/kernels/nchw.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace ad {

namespace {

using kernels::ConvGeometry;
using kernels::PoolGeometry;

std::string size2_str(const Size2& s) { return "[" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + "]"; }

using kernels::CheckedSize;

// n, or "more than 18446744073709551615" when it did not fit.
std::string size_str(const CheckedSize& n)
{
    return n.overflow ? "more than " + std::to_string(std::numeric_limits<std::size_t>::max()) : std::to_string(n.value);
}

// Refuses a buffer of n elements of `each` bytes when it needs more than `cap` bytes; what()
// describes the buffer and the op's shapes (built only when the buffer is refused).
template <class T, class What>
void check_bytes(const char* op, const Var<T>& at, CheckedSize n, std::size_t each, std::uint64_t cap,
                 const char* options, What what)
{
    const CheckedSize bytes = n * each;
    if (!bytes.overflow && bytes.value <= cap) return;
    fail(op, at, what() + " would take " + size_str(bytes) + " bytes, more than the " + std::to_string(cap) +
                     " bytes the op may allocate (" + options + "::max_bytes)");
}

// A window attribute as the VJPs capture it: every one is at most window_attribute_limit (checked
// before an op records), so 16 bits hold it exactly.
using Attr = std::uint16_t;
static_assert(window_attribute_limit <= std::numeric_limits<Attr>::max(), "a window attribute must fit in Attr");

// A convolution's attributes as the VJPs capture them: 24 bytes, so both closures are stored in
// the record itself and recording allocates nothing.
struct ConvAttrs {
    Attr sh, sw, ph, pw, dh, dw, groups;
    bool dnnl = false;  // conv2d's forward ran on oneDNN and saved no unfolded input (placed to fill padding)
    std::uint64_t max_bytes;
    explicit ConvAttrs(const Conv2dOptions& o)
        : sh(Attr(o.stride[0])), sw(Attr(o.stride[1])), ph(Attr(o.padding[0])), pw(Attr(o.padding[1])),
          dh(Attr(o.dilation[0])), dw(Attr(o.dilation[1])), groups(Attr(o.groups)), max_bytes(o.max_bytes)
    {
    }
    Conv2dOptions options() const
    {
        Conv2dOptions o;
        o.stride = {sh, sw};
        o.padding = {ph, pw};
        o.dilation = {dh, dw};
        o.groups = groups;
        o.max_bytes = max_bytes;
        return o;
    }
};

// The geometry of a convolution of an input of shape xs by a weight of shape ws (both rank 4,
// already checked).
template <class S1, class S2>
ConvGeometry geometry(const S1& xs, const S2& ws, const Conv2dOptions& o)
{
    ConvGeometry g;
    g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
    g.F = ws[0], g.kh = ws[2], g.kw = ws[3];
    g.sh = o.stride[0], g.sw = o.stride[1];
    g.ph = o.padding[0], g.pw = o.padding[1];
    g.dh = o.dilation[0], g.dw = o.dilation[1];
    g.groups = o.groups;
    g.Ho = kernels::conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
    g.Wo = kernels::conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
    return g;
}

// Which of the three shapes a convolution op returns.
enum class ConvResult { output, input, weight };

// Checks a convolution of input shape xs by weight shape ws: ranks, attributes, groups, channels,
// that the dilated kernel fits the padded input, and the sizes of the result (`result`) and of the
// work space of `parts` parts (carve). `op` names the op in errors, `at` (any of its inputs) gives
// their tape position. Shapes given as a Shape (the adjoint ops') may be anything: every size is
// computed without wrapping.
template <class T, class S1, class S2>
ConvGeometry check_conv(const char* op, const Var<T>& at, const S1& xs, const S2& ws, const Conv2dOptions& o,
                        ConvResult result, int parts)
{
    // Built only when an error is raised: a valid call allocates nothing.
    auto shapes = [&] { return "input " + shape_str(xs) + ", weight " + shape_str(ws); };
    if (xs.size() != 4)
        fail(op, at, "input must be [N, C, H, W] (rank 4), got shape " + shape_str(xs));
    if (ws.size() != 4)
        fail(op, at, "weight must be [F, C / groups, kh, kw] (rank 4), got shape " + shape_str(ws));
    for (std::size_t v : {ws[2], ws[3], o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0],
                          o.dilation[1], o.groups})
        if (v > window_attribute_limit)
            fail(op, at, "the kernel [" + std::to_string(ws[2]) + ", " + std::to_string(ws[3]) + "], stride " +
                             size2_str(o.stride) + ", padding " + size2_str(o.padding) + ", dilation " +
                             size2_str(o.dilation) + " and groups = " + std::to_string(o.groups) +
                             " must each be at most " + std::to_string(window_attribute_limit) +
                             ", the limit of convolution and pooling attributes (" + shapes() + ")");
    if (o.stride[0] == 0 || o.stride[1] == 0)
        fail(op, at, "stride " + size2_str(o.stride) + " must be >= 1 (" + shapes() + ")");
    if (o.dilation[0] == 0 || o.dilation[1] == 0)
        fail(op, at, "dilation " + size2_str(o.dilation) + " must be >= 1 (" + shapes() + ")");
    if (o.groups == 0 || xs[1] % o.groups != 0 || ws[0] % o.groups != 0)
        fail(op, at, "groups = " + std::to_string(o.groups) +
                         " must be >= 1 and divide both the input channels C = " + std::to_string(xs[1]) +
                         " and the output channels F = " + std::to_string(ws[0]) + " (" + shapes() + ")");
    if (ws[1] != xs[1] / o.groups)
        fail(op, at, "channel mismatch: the weight " + shape_str(ws) + " with groups = " +
                         std::to_string(o.groups) + " takes " + size_str(CheckedSize(ws[1]) * o.groups) +
                         " input channels, the input " + shape_str(xs) + " has " + std::to_string(xs[1]));
    if (ws[2] == 0 || ws[3] == 0)
        fail(op, at, "the kernel is empty (" + shapes() + ")");
    for (int a = 0; a < 2; ++a) {
        const std::size_t in = xs[2 + a], k = ws[2 + a], pad = o.padding[a], dil = o.dilation[a];
        const std::size_t span = dil * (k - 1) + 1;  // below 2^32: both are at most 65535
        const CheckedSize padded = CheckedSize(in) + 2 * pad;
        const char* axis = a == 0 ? "height " : "width ";
        if (padded.overflow)
            fail(op, at, std::string("the padded ") + axis + std::to_string(in) + " + 2 x " + std::to_string(pad) +
                             " does not fit in 64 bits (" + shapes() + ")");
        if (span > padded.value)
            fail(op, at, "the kernel (" + std::to_string(k) + " taps, dilation " +
                             std::to_string(dil) + ": spans " + std::to_string(span) + ") is larger than the padded " +
                             axis + std::to_string(in) + " + 2 x " + std::to_string(pad) +
                             " = " + std::to_string(padded.value) + " (" + shapes() + ")");
    }
    const ConvGeometry g = geometry(xs, ws, o);
    const CheckedSize pixels = CheckedSize(g.N) * g.Ho * g.Wo;
    const CheckedSize out = CheckedSize(g.F) * pixels, taps = CheckedSize(g.C) * g.kh * g.kw;
    const CheckedSize cols = taps * pixels;
    auto out_shape = [&] {
        return Shape{g.N, g.F, g.Ho, g.Wo};
    };
    CheckedSize n;
    const char* what = "";
    switch (result) {
    case ConvResult::output: n = out; what = "the output "; break;
    case ConvResult::input: n = CheckedSize(g.N) * g.C * g.H * g.W; what = "the input gradient "; break;
    case ConvResult::weight: n = CheckedSize(g.F) * ws[1] * g.kh * g.kw; what = "the weight gradient "; break;
    }
    check_bytes(op, at, n, sizeof(T), o.max_bytes, "Conv2dOptions", [&] {
        const std::string s = result == ConvResult::output ? shape_str(out_shape())
                              : result == ConvResult::input ? shape_str(xs)
                                                            : shape_str(ws);
        return std::string(what) + s + " (" + size_str(n) + " elements; " + shapes() + ")";
    });
    const CheckedSize parts_sizes[4] = {cols, out, cols, out};
    CheckedSize work = 0;
    for (int i = 0; i < parts; ++i) work = work + parts_sizes[i];
    check_bytes(op, at, work, sizeof(T), o.max_bytes, "Conv2dOptions", [&] {
        return "the work space of " + size_str(work) + " elements (the unfolded input, [C kh kw, N Ho Wo] = [" +
               size_str(taps) + ", " + size_str(pixels) + "], and the output " + shape_str(out_shape()) +
               " as [F, N Ho Wo]; " + shapes() + ")";
    });
    return g;
}

// Work space carved from one saved tensor: cols [C kh kw, N P], cnp [F, N P], dcols like cols,
// ycnp like cnp. Each op sizes the parts it uses.
template <class T>
struct ConvBuffers {
    T *cols, *cnp, *dcols, *ycnp;
};

template <class T>
ConvBuffers<T> carve(Tensor<T>& saved, const ConvGeometry& g, int parts)
{
    const std::size_t c = g.cols_size(), y = g.F * g.columns();
    const std::size_t sizes[4] = {c, y, c, y};
    std::size_t total = 0;
    for (int i = 0; i < parts; ++i) total += sizes[i];
    if (saved.dimension() != 1 || saved.size() != total) saved.resize({total});
    T* p = saved.data();
    ConvBuffers<T> b{nullptr, nullptr, nullptr, nullptr};
    T** slots[4] = {&b.cols, &b.cnp, &b.dcols, &b.ycnp};
    for (int i = 0; i < parts; ++i) {
        *slots[i] = p;
        p += sizes[i];
    }
    return b;
}

// The op's saved buffer 0 as the VJP's work space (its contents from the forward pass are only
// read; the work parts are overwritten).
template <class T>
ConvBuffers<T> buffers(const Vjp<T>& v, const ConvGeometry& g, int parts)
{
    return carve(const_cast<Tensor<T>&>(v.saved(0)), g, parts);
}

template <class T>
void set_shape4(Tensor<T>& t, std::size_t a, std::size_t b, std::size_t c, std::size_t d)
{
    Shape s;  // inline storage: no allocation
    s.push_back(a), s.push_back(b), s.push_back(c), s.push_back(d);
    if (t.shape() != s) t.resize(s);
}


// The sum of g [N, F, H, W] over n, h and w, as tape ops: [F].
template <class T>
Var<T> sum_nhw(const Var<T>& g) { return sum(sum(sum(g, 3), 2), 0); }

// y = conv2d(x, w) (+ b) on oneDNN, when enabled and it takes the geometry (float32 only);
// false otherwise, with nothing written.
template <class T>
bool dnnl_forward(const T* x, const T* w, const T* b, const ConvGeometry& g, T* y)
{
    if constexpr (std::is_same_v<T, float>) return dnnl_enabled() && kernels::dnnl_conv::forward(x, w, b, g, y);
    else return false;
}

// y = conv2d(x, w) (+ b). On im2col, the VJP reads cols = im2col(x) saved by the forward pass:
//   dx = col2im(W^T G), dw = G cols^T (one GEMM per group each), db = sum of g over n, h, w.
// After a forward on oneDNN, dx and dw come from oneDNN's backward primitives (from x, w and g).
// Inputs {x, w} or {x, w, b}; saved(0) = [cols | cnp | dcols] (on im2col).
template <class T>
void conv2d_vjp(const ConvAttrs& a, Vjp<T>& v)
{
    const ConvGeometry g = geometry(v.x(0).shape(), v.x(1).shape(), a.options());
    const bool want_x = v.wants(0), want_w = v.wants(1), want_b = v.inputs() == 3 && v.wants(2);
    bool first;
    if (want_b) {
        T* db = v.slot(2, first).data();
        kernels::bias_grad(v.g.data(), g.N, g.F, g.pixels(), db, !first);
    }
    if (!want_x && !want_w) return;
    // Each adjoint slot is taken once: the second call would report its first contribution done.
    bool first_w = false, first_x = false;
    T* dw = want_w ? v.slot(1, first_w).data() : nullptr;
    T* dx = want_x ? v.slot(0, first_x).data() : nullptr;
    bool w_done = !want_w, x_done = !want_x;
    if constexpr (std::is_same_v<T, float>) {
        if (a.dnnl && want_w) w_done = kernels::dnnl_conv::weight_grad(v.x(0).data(), v.g.data(), g, dw, !first_w);
        if (a.dnnl && want_x) x_done = kernels::dnnl_conv::input_grad(v.g.data(), v.x(1).data(), g, dx, !first_x);
    }
    if (w_done && x_done) return;
    const auto buf = buffers(v, g, 3);
    kernels::to_cnp(v.g.data(), g.N, g.F, g.pixels(), buf.cnp);
    if (!w_done) {
        if (a.dnnl) kernels::im2col(v.x(0).data(), g, buf.cols);  // the forward on oneDNN did not save it
        kernels::conv2d_weight_grad(buf.cnp, buf.cols, g, dw, !first_w);
    }
    if (!x_done) kernels::conv2d_input_grad(buf.cnp, v.x(1).data(), g, buf.dcols, dx, !first_x);
}

// The same VJP in tape ops, so that it can be differentiated again:
//   dx = conv2d_input_grad(g, w), dw = conv2d_weight_grad(x, g), db = sum of g over n, h, w.
template <class T>
void conv2d_graph_vjp(const ConvAttrs& a, GradVjp<T>& v)
{
    const Conv2dOptions o = a.options();
    const Var<T> x = v.x(0), w = v.x(1);
    if (v.wants(0)) v.acc(0, conv2d_input_grad(v.g, w, x.shape(), o));
    if (v.wants(1)) v.acc(1, conv2d_weight_grad(x, v.g, w.shape(), o));
    if (v.inputs() == 3 && v.wants(2)) v.acc(2, sum_nhw(v.g));
}

// conv2d's forward into op (inputs {x, w} or {x, w, b}, bias null without b): on oneDNN when it
// takes the geometry, otherwise im2col + GEMM into the op's saved work space.
template <class T>
Var<T> record_conv2d(Op<T>& op, const Var<T>& x, const Var<T>& w, const T* bias, const ConvGeometry& g,
                     const Conv2dOptions& o)
{
    Tensor<T>& saved = op.save(0);
    auto& y = op.out();
    set_shape4(y, g.N, g.F, g.Ho, g.Wo);
    ConvAttrs a(o);
    a.dnnl = dnnl_forward<T>(x.value().data(), w.value().data(), bias, g, y.data());
    if (!a.dnnl) {
        auto buf = carve(saved, g, 3);
        kernels::conv2d_forward<T>(x.value().data(), w.value().data(), bias, g, buf.cols, buf.cnp, y.data());
    }
    return op.done([a](Vjp<T>& v) { conv2d_vjp(a, v); }, [a](GradVjp<T>& v) { conv2d_graph_vjp(a, v); });
}

}  // namespace

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Conv2dOptions& o)
{
    check_handles("conv2d", {x, w});
    const ConvGeometry g = check_conv("conv2d", x, x.shape(), w.shape(), o, ConvResult::output, 3);
    Op<T> op("conv2d", {x, w});
    return record_conv2d<T>(op, x, w, nullptr, g, o);
}

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, const Conv2dOptions& o)
{
    check_handles("conv2d", {x, w, b});
    const ConvGeometry g = check_conv("conv2d", x, x.shape(), w.shape(), o, ConvResult::output, 3);
    if (b.dimension() != 1 || b.shape()[0] != g.F)
        fail("conv2d", x, "bias must have shape [F] = [" + std::to_string(g.F) + "], got " + shape_str(b.shape()) +
                              " (input " + shape_str(x.shape()) + ", weight " + shape_str(w.shape()) + ")");
    Op<T> op("conv2d", {x, w, b});
    return record_conv2d(op, x, w, b.value().data(), g, o);
}

namespace {

// dx = conv2d_input_grad(g, w): linear in each argument, the adjoint of x -> conv2d(x, w). For a
// cotangent u of dx's shape: <dx, u> = <g, conv2d(u, w)>, so
//   d g = conv2d(u, w),   d w = conv2d_weight_grad(u, g).
// Inputs {g, w}; saved(0) = [cols | cnp | dcols | ycnp]: cnp = g as [F, N P] from the forward pass.
template <class T>
void conv2d_input_grad_vjp(const ConvAttrs& a, Vjp<T>& v)
{
    const ConvGeometry g = geometry(v.y.shape(), v.x(1).shape(), a.options());
    if (!v.wants(0) && !v.wants(1)) return;
    const auto buf = buffers(v, g, 4);
    kernels::im2col(v.g.data(), g, buf.cols);  // the cotangent u, unfolded
    bool first;
    if (v.wants(0)) {  // conv2d(u, w)
        const std::size_t Fg = g.Fg(), Kg = g.Kg(), NP = g.columns();
        for (std::size_t k = 0; k < g.groups; ++k)
            kernels::matmul_into(v.x(1).data() + k * Fg * Kg, false, buf.cols + k * Kg * NP, false,
                                 buf.ycnp + k * Fg * NP, Fg, NP, Kg, false);
        T* dg = v.slot(0, first).data();
        kernels::from_cnp<T>(buf.ycnp, g.N, g.F, g.pixels(), nullptr, dg, !first);
    }
    if (v.wants(1)) {  // conv2d_weight_grad(u, g)
        T* dw = v.slot(1, first).data();
        kernels::conv2d_weight_grad(buf.cnp, buf.cols, g, dw, !first);
    }
}

// dw = conv2d_weight_grad(x, g). For a cotangent u of dw's shape: <dw, u> = <g, conv2d(x, u)>, so
//   d x = conv2d_input_grad(g, u),   d g = conv2d(x, u).
// Inputs {x, g}; saved(0) = [cols | cnp | dcols | ycnp]: cols = im2col(x), cnp = g as [F, N P].
template <class T>
void conv2d_weight_grad_vjp(const ConvAttrs& a, Vjp<T>& v)
{
    const ConvGeometry g = geometry(v.x(0).shape(), v.y.shape(), a.options());
    if (!v.wants(0) && !v.wants(1)) return;
    const auto buf = buffers(v, g, 4);
    const T* u = v.g.data();
    bool first;
    if (v.wants(0)) {
        T* dx = v.slot(0, first).data();
        kernels::conv2d_input_grad(buf.cnp, u, g, buf.dcols, dx, !first);
    }
    if (v.wants(1)) {
        const std::size_t Fg = g.Fg(), Kg = g.Kg(), NP = g.columns();
        for (std::size_t k = 0; k < g.groups; ++k)
            kernels::matmul_into(u + k * Fg * Kg, false, buf.cols + k * Kg * NP, false, buf.ycnp + k * Fg * NP, Fg,
                                 NP, Kg, false);
        T* dg = v.slot(1, first).data();
        kernels::from_cnp<T>(buf.ycnp, g.N, g.F, g.pixels(), nullptr, dg, !first);
    }
}

}  // namespace

template <class T>
Var<T> conv2d_input_grad(const Var<T>& gy, const Var<T>& w, const Shape& input_shape, const Conv2dOptions& o)
{
    check_handles("conv2d_input_grad", {gy, w});
    const ConvGeometry g = check_conv("conv2d_input_grad", gy, input_shape, w.shape(), o, ConvResult::input, 4);
    const auto& gs = gy.shape();
    if (gs.size() != 4 || gs[0] != g.N || gs[1] != g.F || gs[2] != g.Ho || gs[3] != g.Wo)
        fail("conv2d_input_grad", gy,
             "the output cotangent has shape " + shape_str(gs) + "; the convolution of " + shape_str(input_shape) +
                 " by " + shape_str(w.shape()) + " gives [" + std::to_string(g.N) + ", " + std::to_string(g.F) +
                 ", " + std::to_string(g.Ho) + ", " + std::to_string(g.Wo) + "]");
    Op<T> op("conv2d_input_grad", {gy, w});
    auto buf = carve(op.save(0), g, 4);
    auto& dx = op.out();
    set_shape4(dx, g.N, g.C, g.H, g.W);
    kernels::to_cnp(gy.value().data(), g.N, g.F, g.pixels(), buf.cnp);
    kernels::conv2d_input_grad(buf.cnp, w.value().data(), g, buf.dcols, dx.data(), false);
    const ConvAttrs a(o);
    return op.done([a](Vjp<T>& v) { conv2d_input_grad_vjp(a, v); },
                   [a](GradVjp<T>& v) {
                       const Conv2dOptions o = a.options();
                       const Var<T> gy = v.x(0), w = v.x(1);
                       if (v.wants(0)) v.acc(0, conv2d(v.g, w, o));
                       if (v.wants(1)) v.acc(1, conv2d_weight_grad(v.g, gy, w.shape(), o));
                   });
}

template <class T>
Var<T> conv2d_weight_grad(const Var<T>& x, const Var<T>& gy, const Shape& weight_shape, const Conv2dOptions& o)
{
    check_handles("conv2d_weight_grad", {x, gy});
    const ConvGeometry g = check_conv("conv2d_weight_grad", x, x.shape(), weight_shape, o, ConvResult::weight, 4);
    const auto& gs = gy.shape();
    if (gs.size() != 4 || gs[0] != g.N || gs[1] != g.F || gs[2] != g.Ho || gs[3] != g.Wo)
        fail("conv2d_weight_grad", x,
             "the output cotangent has shape " + shape_str(gs) + "; the convolution of " + shape_str(x.shape()) +
                 " by " + shape_str(weight_shape) + " gives [" + std::to_string(g.N) + ", " + std::to_string(g.F) +
                 ", " + std::to_string(g.Ho) + ", " + std::to_string(g.Wo) + "]");
    Op<T> op("conv2d_weight_grad", {x, gy});
    auto buf = carve(op.save(0), g, 4);
    auto& dw = op.out();
    set_shape4(dw, g.F, g.Cg(), g.kh, g.kw);
    kernels::im2col(x.value().data(), g, buf.cols);
    kernels::to_cnp(gy.value().data(), g.N, g.F, g.pixels(), buf.cnp);
    kernels::conv2d_weight_grad(buf.cnp, buf.cols, g, dw.data(), false);
    const ConvAttrs a(o);
    return op.done([a](Vjp<T>& v) { conv2d_weight_grad_vjp(a, v); },
                   [a](GradVjp<T>& v) {
                       const Conv2dOptions o = a.options();
                       const Var<T> x = v.x(0), gy = v.x(1);
                       if (v.wants(0)) v.acc(0, conv2d_input_grad(gy, v.g, x.shape(), o));
                       if (v.wants(1)) v.acc(1, conv2d(x, v.g, o));
                   });
}

namespace {

// Checks a pooling of x - attributes, that the kernel fits the padded input, the sizes of the
// output and (`indices`: max_pool2d) of the saved positions of the maxima - and returns its
// geometry.
template <class T>
PoolGeometry check_pool(const char* op, const Var<T>& x, const Pool2dOptions& o, bool indices)
{
    check_handles(op, {x});
    const auto& s = x.shape();
    if (s.size() != 4) fail(op, x, "input must be [N, C, H, W] (rank 4), got shape " + shape_str(s));
    for (std::size_t v : {o.kernel[0], o.kernel[1], o.stride[0], o.stride[1], o.padding[0], o.padding[1]})
        if (v > window_attribute_limit)
            fail(op, x, "kernel " + size2_str(o.kernel) + ", stride " + size2_str(o.stride) + " and padding " +
                            size2_str(o.padding) + " must each be at most " + std::to_string(window_attribute_limit) +
                            ", the limit of convolution and pooling attributes (input " + shape_str(s) + ")");
    if (o.kernel[0] == 0 || o.kernel[1] == 0)
        fail(op, x, "kernel " + size2_str(o.kernel) + " must be >= 1 (input " + shape_str(s) + ")");
    if (o.stride[0] == 0 || o.stride[1] == 0)
        fail(op, x, "stride " + size2_str(o.stride) + " must be >= 1 (input " + shape_str(s) + ")");
    if (2 * o.padding[0] > o.kernel[0] || 2 * o.padding[1] > o.kernel[1])
        fail(op, x, "padding " + size2_str(o.padding) + " must be at most half the kernel " +
                        size2_str(o.kernel) + " (input " + shape_str(s) + ")");
    for (int a = 0; a < 2; ++a)  // s[2 + a], the extent of a tensor that exists, is far below 2^63
        if (o.kernel[a] > s[2 + a] + 2 * o.padding[a])
            fail(op, x, "the kernel " + size2_str(o.kernel) + " is larger than the padded input " +
                            (a == 0 ? "height " : "width ") + std::to_string(s[2 + a]) + " + 2 x " +
                            std::to_string(o.padding[a]) + " (input " + shape_str(s) + ")");
    PoolGeometry g;
    g.N = s[0], g.C = s[1], g.H = s[2], g.W = s[3];
    g.kh = o.kernel[0], g.kw = o.kernel[1], g.sh = o.stride[0], g.sw = o.stride[1];
    g.ph = o.padding[0], g.pw = o.padding[1];
    g.Ho = kernels::conv_out_size(g.H, g.kh, g.sh, g.ph, 1);
    g.Wo = kernels::conv_out_size(g.W, g.kw, g.sw, g.pw, 1);
    const CheckedSize out = CheckedSize(g.N) * g.C * g.Ho * g.Wo;
    auto what = [&](const char* buffer) {
        return [&s, &g, &out, buffer] {
            return std::string(buffer) + shape_str(Shape{g.N, g.C, g.Ho, g.Wo}) + " (" + size_str(out) +
                   " elements; input " + shape_str(s) + ")";
        };
    };
    check_bytes(op, x, out, sizeof(T), o.max_bytes, "Pool2dOptions", what("the output "));
    if (indices)
        check_bytes(op, x, out, sizeof(std::ptrdiff_t), o.max_bytes, "Pool2dOptions",
                    what("the positions of the maxima, one for each element of the output "));
    return g;
}

// A pooling's attributes as its VJPs capture them: 24 bytes, stored in the record itself (each
// attribute is at most window_attribute_limit, checked by check_pool).
struct PoolAttrs {
    Attr kh, kw, sh, sw, ph, pw;
    std::uint64_t max_bytes;
    PoolAttrs(const PoolGeometry& g, std::uint64_t max_bytes)
        : kh(Attr(g.kh)), kw(Attr(g.kw)), sh(Attr(g.sh)), sw(Attr(g.sw)), ph(Attr(g.ph)), pw(Attr(g.pw)),
          max_bytes(max_bytes)
    {
    }
    Pool2dOptions options() const
    {
        Pool2dOptions o;
        o.kernel = {kh, kw}, o.stride = {sh, sw}, o.padding = {ph, pw};
        o.max_bytes = max_bytes;
        return o;
    }
    // The geometry again, from the input's and output's shapes.
    template <class S1, class S2>
    PoolGeometry geometry(const S1& xs, const S2& ys) const
    {
        PoolGeometry g;
        g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
        g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw;
        g.Ho = ys[2], g.Wo = ys[3];
        return g;
    }
};

}  // namespace

namespace {

// The pooling VJPs as ops of their own, so that the pools' gradients are differentiable. Each is
// linear in its input, and the adjoint of one is the other:
//   max_pool2d_scatter(g): g added at the saved positions of the maxima (max_pool2d's VJP),
//   max_pool2d_gather(u):  u read at those positions (the scatter's VJP, and max_pool2d itself
//                          with the positions held fixed);
//   avg_pool2d_adjoint(g): g / (kh kw) spread over each window (avg_pool2d's VJP), whose VJP is
//                          avg_pool2d.
template <class T>
Var<T> max_pool2d_gather(const Var<T>& u, const std::vector<std::ptrdiff_t>& arg, const PoolAttrs& a, const Shape& ys);

template <class T>
Var<T> max_pool2d_scatter(const Var<T>& g, const std::vector<std::ptrdiff_t>& arg, const PoolAttrs& a, const Shape& xs)
{
    Op<T> op("max_pool2d_scatter", {g});
    auto& idx = op.save_indices();
    idx.assign(arg.begin(), arg.end());
    auto& dx = op.out();
    set_shape4(dx, xs[0], xs[1], xs[2], xs[3]);
    kernels::max_pool2d_backward(g.value().data(), idx.data(), a.geometry(xs, g.shape()), dx.data(), false);
    return op.done(
        [a](Vjp<T>& v) {
            if (!v.wants(0)) return;
            bool first;
            T* d = v.slot(0, first).data();
            kernels::max_pool2d_gather(v.g.data(), v.indices().data(), a.geometry(v.y.shape(), v.x(0).shape()), d,
                                       !first);
        },
        [a](GradVjp<T>& v) { v.acc(0, max_pool2d_gather(v.g, v.indices(), a, v.x(0).shape())); });
}

template <class T>
Var<T> max_pool2d_gather(const Var<T>& u, const std::vector<std::ptrdiff_t>& arg, const PoolAttrs& a, const Shape& ys)
{
    Op<T> op("max_pool2d_gather", {u});
    auto& idx = op.save_indices();
    idx.assign(arg.begin(), arg.end());
    auto& y = op.out();
    set_shape4(y, ys[0], ys[1], ys[2], ys[3]);
    kernels::max_pool2d_gather(u.value().data(), idx.data(), a.geometry(u.shape(), ys), y.data(), false);
    return op.done(
        [a](Vjp<T>& v) {
            if (!v.wants(0)) return;
            bool first;
            T* d = v.slot(0, first).data();
            kernels::max_pool2d_backward(v.g.data(), v.indices().data(), a.geometry(v.x(0).shape(), v.y.shape()), d,
                                         !first);
        },
        [a](GradVjp<T>& v) { v.acc(0, max_pool2d_scatter(v.g, v.indices(), a, v.x(0).shape())); });
}

template <class T>
Var<T> avg_pool2d_adjoint(const Var<T>& g, const PoolAttrs& a, const Shape& xs)
{
    Op<T> op("avg_pool2d_adjoint", {g});
    auto& dx = op.out();
    set_shape4(dx, xs[0], xs[1], xs[2], xs[3]);
    kernels::avg_pool2d_backward(g.value().data(), a.geometry(xs, g.shape()), dx.data(), false);
    return op.done(
        [a](Vjp<T>& v) {
            if (!v.wants(0)) return;
            bool first;
            T* d = v.slot(0, first).data();
            const PoolGeometry geo = a.geometry(v.y.shape(), v.x(0).shape());
            if (first) {
                kernels::avg_pool2d_forward(v.g.data(), geo, d);
                return;
            }
            Tensor<T>& tmp = v.sweep.scratch();  // the pooled cotangent, then added
            if (tmp.size() != v.x(0).size()) tmp.resize({v.x(0).size()});
            kernels::avg_pool2d_forward(v.g.data(), geo, tmp.data());
            for (std::size_t i = 0; i < v.x(0).size(); ++i) d[i] += tmp.data()[i];
        },
        [a](GradVjp<T>& v) { v.acc(0, avg_pool2d(v.g, a.options())); });
}

}  // namespace

// y = the maximum of each window; dx = g scattered to the positions of the maxima, saved as
// indices (each output's maximum, as a position in its input plane).
template <class T>
Var<T> max_pool2d(const Var<T>& x, const Pool2dOptions& o)
{
    const PoolGeometry g = check_pool("max_pool2d", x, o, true);
    Op<T> op("max_pool2d", {x});
    auto& arg = op.save_indices();
    arg.resize(g.out_size());
    auto& y = op.out();
    set_shape4(y, g.N, g.C, g.Ho, g.Wo);
    kernels::max_pool2d_forward(x.value().data(), g, y.data(), arg.data());
    const PoolAttrs a(g, o.max_bytes);
    return op.done([a](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const PoolGeometry g = a.geometry(v.x(0).shape(), v.y.shape());
        bool first;
        T* dx = v.slot(0, first).data();
        kernels::max_pool2d_backward(v.g.data(), v.indices().data(), g, dx, !first);
    },
                   [a](GradVjp<T>& v) {
                       v.acc(0, max_pool2d_scatter(v.g, v.indices(), a, v.x(0).shape()));
                   });
}

// y = the mean of each window; dx = g / (kh kw) spread over each window.
template <class T>
Var<T> avg_pool2d(const Var<T>& x, const Pool2dOptions& o)
{
    const PoolGeometry g = check_pool("avg_pool2d", x, o, false);
    Op<T> op("avg_pool2d", {x});
    auto& y = op.out();
    set_shape4(y, g.N, g.C, g.Ho, g.Wo);
    kernels::avg_pool2d_forward(x.value().data(), g, y.data());
    const PoolAttrs a(g, o.max_bytes);
    return op.done([a](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const PoolGeometry g = a.geometry(v.x(0).shape(), v.y.shape());
        bool first;
        T* dx = v.slot(0, first).data();
        kernels::avg_pool2d_backward(v.g.data(), g, dx, !first);
    },
                   [a](GradVjp<T>& v) { v.acc(0, avg_pool2d_adjoint(v.g, a, v.x(0).shape())); });
}

// y[n, c] = mean over h, w of x[n, c, h, w]; dx = g[n, c] / (H W) at every h, w.
template <class T>
Var<T> global_avg_pool2d(const Var<T>& x)
{
    check_handles("global_avg_pool2d", {x});
    const auto& s = x.shape();
    if (s.size() != 4)
        fail("global_avg_pool2d", x, "input must be [N, C, H, W] (rank 4), got shape " + shape_str(s));
    if (s[2] * s[3] == 0)
        fail("global_avg_pool2d", x, "the mean over an empty plane is undefined (input " + shape_str(s) + ")");
    Op<T> op("global_avg_pool2d", {x});
    const std::size_t NC = s[0] * s[1], P = s[2] * s[3];
    auto& y = op.out();
    Shape ys;
    ys.push_back(s[0]), ys.push_back(s[1]);
    if (y.shape() != ys) y.resize(ys);
    const T* xp = x.value().data();
    for (std::size_t i = 0; i < NC; ++i) y.data()[i] = kernels::sum_all(xp + i * P, P) / T(P);
    return op.done([](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const auto& xs = v.x(0).shape();
        const std::size_t NC = xs[0] * xs[1], P = xs[2] * xs[3];
        const T scale = T(1) / T(P);
        bool first;
        T* dx = v.slot(0, first).data();
        const T* g = v.g.data();
        for (std::size_t i = 0; i < NC; ++i) {
            const T d = g[i] * scale;
            T* p = dx + i * P;
            if (first) std::fill_n(p, P, d);
            else
                for (std::size_t k = 0; k < P; ++k) p[k] += d;
        }
    },
                   [](GradVjp<T>& v) {  // dx = g / (H W) broadcast over each plane
                       const auto& xs = v.x(0).shape();
                       const Var<T> g4 = reshape(v.g, {xs[0], xs[1], 1, 1});
                       v.acc(0, broadcast_to(g4, xs) * (T(1) / T(xs[2] * xs[3])));
                   });
}

// [N, d1, d2, ...] -> [N, d1 d2 ...]; dx = g with x's shape.
template <class T>
Var<T> flatten(const Var<T>& x)
{
    check_handles("flatten", {x});
    const auto& s = x.shape();
    if (s.size() < 1) fail("flatten", x, "input must have a batch axis, got a scalar (shape " + shape_str(s) + ")");
    Op<T> op("flatten", {x});
    auto& y = op.out();
    Shape ys;
    std::size_t rest = 1;
    for (std::size_t i = 1; i < s.size(); ++i) rest *= s[i];
    ys.push_back(s[0]);
    ys.push_back(rest);
    if (y.shape() != ys) y.resize(ys);
    std::copy_n(x.value().data(), x.size(), y.data());
    return op.done(
        [](Vjp<T>& v) {
            if (!v.wants(0)) return;
            bool first;
            T* dx = v.slot(0, first).data();
            const T* g = v.g.data();
            const std::size_t n = v.g.size();
            if (first) std::copy_n(g, n, dx);
            else
                for (std::size_t i = 0; i < n; ++i) dx[i] += g[i];
        },
        [](GradVjp<T>& v) {  // dx = g with x's shape
            const auto& xs = v.x(0).shape();
            v.acc(0, reshape(v.g, xs));
        });
}

namespace {

// The mean over every axis but the channels (1), keeping them: [1, C, 1, 1] or [1, C].
template <class T>
Var<T> mean_but_channels(const Var<T>& t)
{
    Var<T> r = mean(t, 0, keepdims);
    for (std::ptrdiff_t a = 2; a < std::ptrdiff_t(t.dimension()); ++a) r = mean(r, a, keepdims);
    return r;
}

// The sizes of a per-channel op's input x ([N, C, H, W] or [N, C]) after checking it and the
// op's two [C] factors a and b (named in the message): N, C and P = H W (1 for [N, C]).
struct ChannelSizes {
    std::size_t N, C, P;
};

template <class T>
ChannelSizes check_channel_op(const char* op, const Var<T>& x, const char* a_name, const Var<T>& a, const char* b_name,
                              const Var<T>& b)
{
    const auto& s = x.shape();
    if (s.size() != 4 && s.size() != 2) fail(op, x, "input must be [N, C, H, W] or [N, C], got shape " + shape_str(s));
    const std::size_t C = s[1];
    if (a.dimension() != 1 || a.shape()[0] != C || b.dimension() != 1 || b.shape()[0] != C)
        fail(op, x,
             std::string(a_name) + " " + shape_str(a.shape()) + " and " + b_name + " " + shape_str(b.shape()) +
                 " must both have shape [C] = [" + std::to_string(C) + "] for the input " + shape_str(s));
    return {s[0], C, s.size() == 4 ? s[2] * s[3] : 1};
}

// batch_norm2d's VJP in tape ops, the statistics recomputed from x so that they are
// differentiated too: with xhat = (x - mean) rstd and means over n, h, w,
//   dx = gamma rstd (g - mean(g) - xhat mean(g xhat)), dgamma = sum(g xhat), dbeta = sum(g).
template <class T>
void batch_norm2d_graph_vjp(GradVjp<T>& v, T eps)
{
    const Var<T> x = v.x(0), g = v.g;
    const std::size_t C = x.shape()[1];
    Shape col(x.dimension(), 1);
    col[1] = C;
    const Var<T> centred = x - mean_but_channels(x);
    const Var<T> rstd = pow(mean_but_channels(square(centred)) + eps, T(-0.5));
    const Var<T> xhat = centred * rstd;
    const Var<T> gx = g * xhat;
    const std::size_t m = C ? x.size() / C : 0;  // values per channel (no channels: nothing to scale)
    auto per_channel = [&](const Var<T>& t) {  // the sum over n, h, w as [C]
        return reshape(mean_but_channels(t) * T(m), {C});
    };
    if (v.wants(0)) {
        const Var<T> gamma = reshape(v.x(1), col);
        v.acc(0, gamma * rstd * (g - mean_but_channels(g) - xhat * mean_but_channels(gx)));
    }
    if (v.wants(1)) v.acc(1, per_channel(gx));
    if (v.wants(2)) v.acc(2, per_channel(g));
}

}  // namespace

// Per channel c with m = N H W values: xhat = (x - mean_c) rstd_c, y = xhat gamma_c + beta_c;
//   dbeta = sum g, dgamma = sum g xhat, dx = gamma rstd (g - dbeta / m - xhat dgamma / m).
// saved(0) = [3, C]: the mean, rstd and biased variance of every channel.
template <class T>
Var<T> batch_norm2d(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, Scalar<T> eps, BatchStats<T>* stats)
{
    check_handles("batch_norm2d", {x, gamma, beta});
    const auto& s = x.shape();
    const auto [N, C, P] = check_channel_op("batch_norm2d", x, "gamma", gamma, "beta", beta);
    if (N * P < 2)  // the variance of one value is 0 / 0 (NaN with eps = 0)
        fail("batch_norm2d", x,
             "expected more than 1 value per channel for batch statistics (training mode), got " +
                 std::to_string(N * P) + " (N H W of the input " + shape_str(s) + ")");
    if (!(eps >= T(0))) fail("batch_norm2d", x, "eps = " + std::to_string(eps) + " must be >= 0");
    Op<T> op("batch_norm2d", {x, gamma, beta});
    Tensor<T>& stat = op.save(0);
    Shape ss;
    ss.push_back(3), ss.push_back(C);
    if (stat.shape() != ss) stat.resize(ss);
    auto& y = op.out();
    if (y.shape() != s) y.resize(s);
    T* st = stat.data();
    kernels::batch_norm_forward(x.value().data(), gamma.value().data(), beta.value().data(), N, C, P, T(eps), st,
                                st + C, st + 2 * C, y.data());
    if (stats) {
        if (stats->mean.size() != C) stats->mean.resize({C});
        if (stats->var.size() != C) stats->var.resize({C});
        for (std::size_t c = 0; c < C; ++c) {
            stats->mean(c) = st[c];
            stats->var(c) = st[2 * C + c];
        }
    }
    return op.done([](Vjp<T>& v) {
        const auto& xs = v.x(0).shape();
        const std::size_t N = xs[0], C = xs[1], P = xs.size() == 4 ? xs[2] * xs[3] : 1;
        bool fx = false, fg = false, fb = false;
        T* dx = v.wants(0) ? v.slot(0, fx).data() : nullptr;
        T* dgamma = v.wants(1) ? v.slot(1, fg).data() : nullptr;
        T* dbeta = v.wants(2) ? v.slot(2, fb).data() : nullptr;
        const T* st = v.saved(0).data();
        kernels::batch_norm_backward(v.x(0).data(), v.x(1).data(), v.g.data(), st, st + C, N, C, P, dx, !fx, dgamma,
                                     !fg, dbeta, !fb);
    },
                   [e = T(eps)](GradVjp<T>& v) { batch_norm2d_graph_vjp(v, e); });
}

// y[n, c, p] = x[n, c, p] scale[c] + shift[c]; dx = g scale[c], dscale[c] = sum g x and
// dshift[c] = sum g, the sums over n and p.
template <class T>
Var<T> channel_affine(const Var<T>& x, const Var<T>& scale, const Var<T>& shift)
{
    check_handles("channel_affine", {x, scale, shift});
    const auto& s = x.shape();
    const auto [N, C, P] = check_channel_op("channel_affine", x, "scale", scale, "shift", shift);
    Op<T> op("channel_affine", {x, scale, shift});
    auto& y = op.out();
    if (y.shape() != s) y.resize(s);
    kernels::channel_affine_forward(x.value().data(), scale.value().data(), shift.value().data(), N, C, P, y.data());
    return op.done(
        [](Vjp<T>& v) {
            const auto& xs = v.x(0).shape();
            const std::size_t N = xs[0], C = xs[1], P = xs.size() == 4 ? xs[2] * xs[3] : 1;
            bool fx = false, fs = false, fb = false;
            T* dx = v.wants(0) ? v.slot(0, fx).data() : nullptr;
            T* dscale = v.wants(1) ? v.slot(1, fs).data() : nullptr;
            T* dshift = v.wants(2) ? v.slot(2, fb).data() : nullptr;
            kernels::channel_affine_backward(v.x(0).data(), v.x(1).data(), v.g.data(), N, C, P, dx, !fx, dscale, !fs,
                                             dshift, !fb);
        },
        [](GradVjp<T>& v) {  // the same in tape ops: scale broadcast along the channel axis, sums back to [C]
            const Shape& xs = v.x(0).shape();
            const std::size_t C = xs[1];
            Shape col(xs.size(), 1);
            col[1] = C;
            if (v.wants(0)) v.acc(0, v.g * reshape(v.x(1), col));
            if (v.wants(1)) v.acc(1, reshape(sum_to(v.g * v.x(0), col), {C}));
            if (v.wants(2)) v.acc(2, reshape(sum_to(v.g, col), {C}));
        });
}

#define AD_CONV_INSTANTIATE(T)                                                                                      \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, const Conv2dOptions&);                                \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, const Var<T>&, const Conv2dOptions&);                 \
    template Var<T> conv2d_input_grad(const Var<T>&, const Var<T>&, const Shape&, const Conv2dOptions&);       \
    template Var<T> conv2d_weight_grad(const Var<T>&, const Var<T>&, const Shape&, const Conv2dOptions&);      \
    template Var<T> max_pool2d(const Var<T>&, const Pool2dOptions&);                                           \
    template Var<T> avg_pool2d(const Var<T>&, const Pool2dOptions&);                                           \
    template Var<T> global_avg_pool2d(const Var<T>&);                                                          \
    template Var<T> flatten(const Var<T>&);                                                                    \
    template Var<T> batch_norm2d(const Var<T>&, const Var<T>&, const Var<T>&, Scalar<T>, BatchStats<T>*);      \
    template Var<T> channel_affine(const Var<T>&, const Var<T>&, const Var<T>&);
AD_CONV_INSTANTIATE(float)
AD_CONV_INSTANTIATE(double)

}  // namespace ad
