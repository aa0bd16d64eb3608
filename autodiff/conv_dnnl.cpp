// conv2d's float32 kernels on oneDNN (autodiff/kernels/conv_dnnl.hpp) and the switch that selects
// them (autodiff/backends.hpp).
//
// oneDNN's fast convolutions read and write blocked layouts (channels in groups of 8 or 16), so
// each call reorders the engine's NCHW tensors into the layouts the primitive chose and the result
// back, as libtorch does. Primitives, reorders and the blocked buffers are made once per
// geometry, calling thread and size of the pool (Plan) and reused. oneDNN itself still builds an
// argument table on the heap for every primitive it runs (a few small allocations per call; 84
// per step of the bench's CNN at one thread).
#include "autodiff/backends.hpp"
#include "autodiff/kernels/conv_dnnl.hpp"

#include <atomic>

#ifdef AD_HAVE_DNNL
#include <dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <array>
#include <memory>
#include <vector>
#endif

namespace ad {

namespace {
std::atomic<bool> use_dnnl{true};
}  // namespace

#ifdef AD_HAVE_DNNL
bool dnnl_available() { return true; }
#else
bool dnnl_available() { return false; }
#endif
bool dnnl_enabled() { return dnnl_available() && use_dnnl.load(std::memory_order_relaxed); }
void set_dnnl_enabled(bool enabled) { use_dnnl.store(enabled, std::memory_order_relaxed); }

}  // namespace ad

namespace ad::kernels::dnnl_conv {

#ifndef AD_HAVE_DNNL

bool forward(const float*, const float*, const float*, const ConvGeometry&, float*) { return false; }
bool input_grad(const float*, const float*, const ConvGeometry&, float*, bool) { return false; }
bool weight_grad(const float*, const float*, const ConvGeometry&, float*, bool) { return false; }
std::size_t plans_held() { return 0; }

#else

namespace {

using dnnl::memory;
using tag = memory::format_tag;

// What a Plan is made for: a geometry (Ho and Wo follow from the rest), whether the forward adds
// a bias, and the pool's size. oneDNN splits a primitive's work for the threads there are when it
// is made, so a primitive made at one thread runs on one thread however many the pool has later.
struct Key {
    std::array<std::size_t, 14> v;
    bool bias;
    int threads;
    bool operator==(const Key& o) const { return v == o.v && bias == o.bias && threads == o.threads; }
};

Key key_of(const ConvGeometry& g, bool bias)
{
    return {{g.N, g.C, g.H, g.W, g.F, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups}, bias,
            omp_get_max_threads()};
}

// One tensor a primitive reads or writes: `user` wraps the engine's buffer (its address set per
// call), `work` is the primitive's layout, and `copy` moves between them (user -> work for an
// input, work -> user for an output). When the layouts agree, the primitive uses `user` itself.
struct Staged {
    memory user, work;
    dnnl::reorder copy;
    dnnl::reorder::primitive_desc copy_pd;
    bool same = true;

    Staged() = default;
    Staged(const memory::desc& user_md, const memory::desc& wanted, const dnnl::engine& eng, bool input,
           const dnnl::primitive_attr& attr)
        : user(user_md, eng, DNNL_MEMORY_NONE), same(user_md == wanted)
    {
        if (same) return;
        work = memory(wanted, eng);
        copy_pd = input ? dnnl::reorder::primitive_desc(user, work, attr) : dnnl::reorder::primitive_desc(work, user, attr);
        copy = dnnl::reorder(copy_pd);
    }
    const memory& operand() const { return same ? user : work; }
};

// Runs a primitive with its arguments through the C API: the C++ overload takes an
// unordered_map, which would add allocations of its own to oneDNN's on every call.
void run(const dnnl::primitive& p, const dnnl::stream& s, std::initializer_list<dnnl_exec_arg_t> args)
{
    dnnl::error::wrap_c_api(dnnl_primitive_execute(p.get(), s.get(), int(args.size()), args.begin()),
                            "could not execute a convolution primitive");
}

// Every primitive runs with the plan's scratch memory (scratchpad_mode::user): in oneDNN's default
// mode each execution takes its scratchpad from a per-thread buffer that is freed whenever no
// execution holds it, so large ones are mapped and unmapped on every call.
void copy(const Staged& t, const memory& from, const memory& to, dnnl::stream& s, const memory& scratch)
{
    run(t.copy, s, {{DNNL_ARG_FROM, from.get()}, {DNNL_ARG_TO, to.get()}, {DNNL_ARG_SCRATCHPAD, scratch.get()}});
}

void stage_in(Staged& t, const float* data, dnnl::stream& s, const memory& scratch)
{
    t.user.set_data_handle(const_cast<float*>(data));
    if (!t.same) copy(t, t.user, t.work, s, scratch);
}

// The result of a primitive (already run into t.operand()) into out: written, or added when
// accumulating (through `sum`, a buffer of out's size).
void stage_out(Staged& t, float* out, std::size_t n, bool accumulate, std::vector<float>& sum, dnnl::stream& s,
               const memory& scratch)
{
    if (!accumulate) {
        if (t.same) return;  // the primitive wrote out itself
        t.user.set_data_handle(out);
        copy(t, t.work, t.user, s, scratch);
        return;
    }
    if (!t.same) {
        if (sum.size() != n) sum.resize(n);
        t.user.set_data_handle(sum.data());
        copy(t, t.work, t.user, s, scratch);
    }
    const float* r = sum.data();
    parallel_for(n, 1, [=](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) out[i] += r[i];
    });
}

struct Plan {
    Key key;
    dnnl::convolution_forward fwd;
    dnnl::convolution_backward_data bwd_data;
    dnnl::convolution_backward_weights bwd_weights;
    Staged x, w, y;              // forward
    memory b;                    // the forward's bias, read in place
    Staged gy_d, w_d, dx;        // backward data
    Staged x_w, gy_w, dw;        // backward weights
    memory scratch;              // every primitive's scratchpad, sized for the largest
    std::vector<float> sum;      // an output to be added, in the engine's layout
};

struct Context {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{eng};
    std::vector<std::unique_ptr<Plan>> plans;  // most recently used first
};

// The thread's plans: primitives and their buffers serve one call at a time.
Context& context()
{
    thread_local Context c;
    return c;
}

memory::dim dim(std::size_t n) { return memory::dim(n); }

// The right padding that gives the engine's output size (the division rounds down; oneDNN wants
// the sizes to agree exactly).
std::ptrdiff_t right_pad(std::size_t in, std::size_t out, std::size_t k, std::size_t s, std::size_t pad,
                         std::size_t d)
{
    return std::ptrdiff_t((out - 1) * s + (k - 1) * d + 1) - std::ptrdiff_t(in) - std::ptrdiff_t(pad);
}

std::unique_ptr<Plan> make_plan(const Key& key, const ConvGeometry& g, const dnnl::engine& eng)
{
    const memory::dims xs{dim(g.N), dim(g.C), dim(g.H), dim(g.W)}, ys{dim(g.N), dim(g.F), dim(g.Ho), dim(g.Wo)};
    const memory::dims ws = g.groups == 1
                                ? memory::dims{dim(g.F), dim(g.C), dim(g.kh), dim(g.kw)}
                                : memory::dims{dim(g.groups), dim(g.Fg()), dim(g.Cg()), dim(g.kh), dim(g.kw)};
    const tag wtag = g.groups == 1 ? tag::oihw : tag::goihw;  // the engine's [F, C / groups, kh, kw]
    const auto f32 = memory::data_type::f32;
    const memory::desc x_user(xs, f32, tag::nchw), y_user(ys, f32, tag::nchw), w_user(ws, f32, wtag),
        b_user({dim(g.F)}, f32, tag::x);
    const memory::desc x_any(xs, f32, tag::any), y_any(ys, f32, tag::any), w_any(ws, f32, tag::any);
    const memory::dims strides{dim(g.sh), dim(g.sw)}, dilates{dim(g.dh - 1), dim(g.dw - 1)},
        pad_l{dim(g.ph), dim(g.pw)},
        pad_r{right_pad(g.H, g.Ho, g.kh, g.sh, g.ph, g.dh), right_pad(g.W, g.Wo, g.kw, g.sw, g.pw, g.dw)};
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const auto alg = dnnl::algorithm::convolution_direct;
    const auto train = dnnl::prop_kind::forward_training;

    using fwd_t = dnnl::convolution_forward;
    const fwd_t::desc fd = key.bias ? fwd_t::desc(train, alg, x_any, w_any, b_user, y_any, strides, dilates, pad_l, pad_r)
                                    : fwd_t::desc(train, alg, x_any, w_any, y_any, strides, dilates, pad_l, pad_r);
    const fwd_t::primitive_desc fpd(fd, attr, eng);
    using bd_t = dnnl::convolution_backward_data;
    const bd_t::primitive_desc bdpd(bd_t::desc(alg, x_any, w_any, y_any, strides, dilates, pad_l, pad_r), attr, eng, fpd);
    using bw_t = dnnl::convolution_backward_weights;
    const bw_t::primitive_desc bwpd(bw_t::desc(alg, x_any, w_any, y_any, strides, dilates, pad_l, pad_r), attr, eng,
                                    fpd);

    auto p = std::make_unique<Plan>();
    p->key = key;
    p->fwd = fwd_t(fpd);
    p->bwd_data = bd_t(bdpd);
    p->bwd_weights = bw_t(bwpd);
    p->x = Staged(x_user, fpd.src_desc(), eng, true, attr);
    p->w = Staged(w_user, fpd.weights_desc(), eng, true, attr);
    p->b = memory(b_user, eng, DNNL_MEMORY_NONE);
    p->y = Staged(y_user, fpd.dst_desc(), eng, false, attr);
    p->gy_d = Staged(y_user, bdpd.diff_dst_desc(), eng, true, attr);
    p->w_d = Staged(w_user, bdpd.weights_desc(), eng, true, attr);
    p->dx = Staged(x_user, bdpd.diff_src_desc(), eng, false, attr);
    p->x_w = Staged(x_user, bwpd.src_desc(), eng, true, attr);
    p->gy_w = Staged(y_user, bwpd.diff_dst_desc(), eng, true, attr);
    p->dw = Staged(w_user, bwpd.diff_weights_desc(), eng, false, attr);
    std::size_t bytes = std::max({fpd.scratchpad_desc().get_size(), bdpd.scratchpad_desc().get_size(),
                                  bwpd.scratchpad_desc().get_size()});
    for (const Staged* t : {&p->x, &p->w, &p->y, &p->gy_d, &p->w_d, &p->dx, &p->x_w, &p->gy_w, &p->dw})
        if (!t->same) bytes = std::max(bytes, t->copy_pd.scratchpad_desc().get_size());
    p->scratch = memory({{memory::dim(std::max<std::size_t>(bytes, 1))}, memory::data_type::u8, tag::x}, eng);
    return p;
}

// The thread's plan for g, made on first use; null when oneDNN does not take the geometry.
Plan* plan(const ConvGeometry& g, bool bias)
{
    if (g.N == 0 || g.C == 0 || g.F == 0 || g.Ho == 0 || g.Wo == 0) return nullptr;
    if (right_pad(g.H, g.Ho, g.kh, g.sh, g.ph, g.dh) < 0 || right_pad(g.W, g.Wo, g.kw, g.sw, g.pw, g.dw) < 0)
        return nullptr;  // a stride that skips the last rows or columns: oneDNN's padding cannot say so
    Context& c = context();
    const Key key = key_of(g, bias);
    for (std::size_t i = 0; i < c.plans.size(); ++i)
        if (c.plans[i]->key == key) {
            std::rotate(c.plans.begin(), c.plans.begin() + std::ptrdiff_t(i), c.plans.begin() + std::ptrdiff_t(i) + 1);
            return c.plans.front().get();
        }
    std::unique_ptr<Plan> p;
    try {
        p = make_plan(key, g, c.eng);
    } catch (const dnnl::error&) {
        return nullptr;  // no implementation for this geometry: the caller runs im2col
    }
    constexpr std::size_t keep = 32;  // geometries per thread; the least recently used goes first
    if (c.plans.size() == keep) c.plans.pop_back();
    c.plans.insert(c.plans.begin(), std::move(p));
    return c.plans.front().get();
}

// The bias-free plan serves the VJPs of a convolution with or without bias (the bias gradient is
// computed apart): look up either.
Plan* plan_for_vjp(const ConvGeometry& g)
{
    Context& c = context();
    for (bool bias : {false, true}) {
        const Key key = key_of(g, bias);
        for (const auto& p : c.plans)
            if (p->key == key) return p.get();
    }
    return plan(g, false);
}

}  // namespace

std::size_t plans_held() { return context().plans.size(); }

bool forward(const float* x, const float* w, const float* b, const ConvGeometry& g, float* y)
{
    Plan* p = plan(g, b != nullptr);
    if (!p) return false;
    dnnl::stream& s = context().stream;
    stage_in(p->x, x, s, p->scratch);
    stage_in(p->w, w, s, p->scratch);
    p->y.user.set_data_handle(y);
    if (b) {
        p->b.set_data_handle(const_cast<float*>(b));
        run(p->fwd, s,
            {{DNNL_ARG_SRC, p->x.operand().get()}, {DNNL_ARG_WEIGHTS, p->w.operand().get()},
             {DNNL_ARG_BIAS, p->b.get()}, {DNNL_ARG_DST, p->y.operand().get()},
             {DNNL_ARG_SCRATCHPAD, p->scratch.get()}});
    } else
        run(p->fwd, s,
            {{DNNL_ARG_SRC, p->x.operand().get()}, {DNNL_ARG_WEIGHTS, p->w.operand().get()},
             {DNNL_ARG_DST, p->y.operand().get()}, {DNNL_ARG_SCRATCHPAD, p->scratch.get()}});
    stage_out(p->y, y, g.out_size(), false, p->sum, s, p->scratch);
    s.wait();
    return true;
}

namespace {

// One operand of a primitive: its oneDNN argument, where it is staged and the engine's buffer.
struct Operand {
    int arg;
    Staged& staged;
    const float* data;
};

// A backward primitive of plan p run on two inputs, its output `out` (argument out_arg, n
// floats) written to or added into dst.
void run_backward(Plan& p, const dnnl::primitive& prim, Operand a, Operand b, int out_arg, Staged& out, float* dst,
                  std::size_t n, bool accumulate)
{
    dnnl::stream& s = context().stream;
    stage_in(a.staged, a.data, s, p.scratch);
    stage_in(b.staged, b.data, s, p.scratch);
    if (out.same) {  // the primitive writes the engine's layout: into dst, or into sum to add
        if (accumulate && p.sum.size() != n) p.sum.resize(n);
        out.user.set_data_handle(accumulate ? p.sum.data() : dst);
    }
    run(prim, s,
        {{a.arg, a.staged.operand().get()}, {b.arg, b.staged.operand().get()}, {out_arg, out.operand().get()},
         {DNNL_ARG_SCRATCHPAD, p.scratch.get()}});
    stage_out(out, dst, n, accumulate, p.sum, s, p.scratch);
    s.wait();
}

}  // namespace

bool input_grad(const float* gy, const float* w, const ConvGeometry& g, float* dx, bool accumulate)
{
    Plan* p = plan_for_vjp(g);
    if (!p) return false;
    run_backward(*p, p->bwd_data, {DNNL_ARG_DIFF_DST, p->gy_d, gy}, {DNNL_ARG_WEIGHTS, p->w_d, w}, DNNL_ARG_DIFF_SRC,
                 p->dx, dx, g.in_size(), accumulate);
    return true;
}

bool weight_grad(const float* x, const float* gy, const ConvGeometry& g, float* dw, bool accumulate)
{
    Plan* p = plan_for_vjp(g);
    if (!p) return false;
    run_backward(*p, p->bwd_weights, {DNNL_ARG_SRC, p->x_w, x}, {DNNL_ARG_DIFF_DST, p->gy_w, gy},
                 DNNL_ARG_DIFF_WEIGHTS, p->dw, dw, g.weight_size(), accumulate);
    return true;
}

#endif

}  // namespace ad::kernels::dnnl_conv
