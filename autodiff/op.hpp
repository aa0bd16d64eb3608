// The op contract: how every op is written, the library's own and a user's alike.
//
// An op checks its inputs, records itself on their tape, computes its output, and hands the
// tape its vector-Jacobian product (VJP): given the cotangent g of the output, add
// g^T d(output)/d(input k) into the adjoint of each input k. The reverse sweep calls it; the
// sweep knows nothing else about the op.
//
//     // softplus(x) = log(1 + e^x);  d = sigmoid(x) g
//     template <class T>
//     ad::Var<T> softplus(const ad::Var<T>& x)
//     {
//         ad::Op<T> op("softplus", {x});
//         ad::assign(op.out(), xt::log1p(xt::exp(op.x(0))));
//         return op.done([](ad::Vjp<T>& v) { v.acc(0, v.g / (T(1) + xt::exp(-v.x(0)))); },
//                        [](ad::GradVjp<T>& v) { v.acc(0, v.g * ad::sigmoid(v.x(0))); });
//     }
//
// - Op(name, inputs) records the op on the inputs' tape. op.x(k) is input k's value, valid
//   until done(). out() is the output buffer, kept from step to step: fill it with
//   ad::assign(op.out(), ...), xt::noalias(op.out()) = ... or resize() and a loop (a plain
//   assignment would allocate a fresh buffer every step). A one-element output of rank <= 4 is
//   kept in the record itself, and op.x(k) reads such an input without making it a tensor
//   (x.value() works too, but makes one), so a tape of scalar ops holds no tensor per op.
// - Attributes (a slope, an axis, a flag) are captured by the lambdas: the closure is the op's
//   typed state. Captures of up to 48 bytes are stored in the record itself, so recording
//   allocates nothing; larger ones (a captured std::function, a big struct) go to the heap.
// - Tensors the VJP reads go in save(k) (v.saved(k) in the VJP), integers in save_indices()
//   (v.indices()): buffers kept from step to step.
// - done(vjp) states the VJP on tensors (Vjp<T>). done(vjp, graph_vjp) also states it in tape
//   ops (GradVjp<T>, whose g, y and x(k) are Vars): a sweep asked for a graph (ad::create_graph)
//   records graph_vjp, so the gradient is itself differentiable, to any order. An op without
//   graph_vjp works at first order and is refused by name at second order.
// - One formula, one lambda: where the VJP reads the same on tensors and on Vars, a generic
//   lambda serves as both, done(f, f). Both contexts speak the same vocabulary: g, y, x(k),
//   acc(k, e); math called unqualified (exp(v.x(0)), found by argument-dependent lookup in xt
//   on tensors and in ad on Vars); value(k), input k's value as a tensor; and constant(e), a
//   quantity the VJP must not differentiate through (a mask, a step derivative): on tensors
//   the lazy expression itself, on the graph path a constant on the tape.
//
//     auto vjp = [](auto& v) { v.acc(0, v.g * v.constant(xt::sign(v.value(0)))); };  // abs
//     return op.done(vjp, vjp);
//
//   Two lambdas are for a fused kernel on tensors that the tape-op form cannot match.
// - What a VJP may do, checked on both paths: acc(k, e) and slot(k) for k < inputs() only, and
//   e of the input's shape or broadcast from it (then summed back); saved(k) reads only what
//   this record saved this step. Anything else is an ad::Error naming the op, the input and the
//   shapes. The adjoints belong to the sweep (v.sweep, autodiff/sweep.hpp), not the tape, so a
//   VJP may itself call ad::grad on the same tape.
// - Errors: throw ad::Error naming the op and the shapes (fail() adds the tape position). If
//   the forward throws after Op was built, its record is undone: taken off the tape if it is
//   the last, else (it recorded ops after itself) left in place, never done, so the handles of
//   those later ops stay their own. A handle exists only from done() on.
//
// Heavy loops belong in named kernels (autodiff/kernels/), so that an op reads formula,
// forward, VJP.
#pragma once

#include "autodiff/anomaly.hpp"
#include "autodiff/kernels/parallel.hpp"
#include "autodiff/kernels/reduce.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/sweep.hpp"
#include "autodiff/tape.hpp"

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xoperation.hpp>

#include <algorithm>
#include <string>
#include <type_traits>
#include <utility>

namespace ad {

using kernels::AxisLoop;

namespace detail {

// Whether e can be read element by element in step with a buffer of the given strides: every
// operand has the buffer's shape (or is a scalar).
template <class E, class = void>
struct reads_linearly : std::false_type {};
template <class E>
struct reads_linearly<E, std::void_t<decltype(xt::linear_begin(std::declval<const E&>())),
                                     decltype(std::declval<const E&>().has_linear_assign(
                                         std::declval<const typename Tensor<double>::strides_type&>()))>>
    : std::true_type {};

// a = e (a += e when `add`) for a one-element tensor, read directly: xtensor's assignment,
// which works out the broadcast and picks a loop on every call, costs more than the arithmetic
// there, and a scalar chain does two or three per op. From a few elements on, xtensor's SIMD
// functions win, so this stops at one. False, having done nothing, where it does not apply.
template <class T, class E>
bool assign_scalar(Tensor<T>& a, const E& e, bool add)
{
    if constexpr (reads_linearly<E>::value) {
        if (a.size() != 1 || !e.has_linear_assign(a.strides())) return false;
        const T v = *xt::linear_begin(e);  // what xtensor's own linear assignment reads
        *a.data() = add ? *a.data() + v : v;
        return true;
    } else {
        return false;
    }
}

// a = e (a += e when `add`) for a large e read in step with a, split over the pool (the ops
// written as xtensor expressions: exp, tanh, GELU, products ...). Each thread takes whole
// blocks of SIMD width and computes them as xtensor's own linear assignment does (its SIMD
// functions on blocks, its scalar ones on the tail), in code compiled once for any number of
// threads (kernels::parallel_for), so the bits do not depend on it. False, having done nothing,
// for a small a or an e that broadcasts.
template <class T, class E>
bool assign_split(Tensor<T>& a, const E& e, bool add)
{
    if constexpr (reads_linearly<E>::value && xt::xassign_traits<Tensor<T>, E>::simd_linear_assign()) {
        using Batch = xt_simd::simd_type<T>;
        constexpr std::size_t w = Batch::size;
        constexpr std::size_t cost = 2;  // per element: a transcendental function takes a few ns
        const std::size_t n = a.size();
        if (n * cost < kernels::parallel_min_work || !e.has_linear_assign(a.strides())) return false;
        T* d = a.data();
        kernels::parallel_for(n / w, w * cost, [&e, d, add](std::size_t b0, std::size_t b1) {
            for (std::size_t i = b0 * w; i < b1 * w; i += w) {
                Batch v = e.template load_simd<xt_simd::unaligned_mode, T>(i);
                if (add) v = Batch::load_aligned(d + i) + v;
                v.store_aligned(d + i);
            }
        });
        for (std::size_t i = n / w * w; i < n; ++i) d[i] = add ? d[i] + e.data_element(i) : T(e.data_element(i));
        return true;
    } else {
        return false;
    }
}

}  // namespace detail

// out = e without allocating once out has e's shape (what xt::noalias(out) = e does), cheaper
// for a one-element tensor and split over the pool for a large one.
template <class T, class E>
void assign(Tensor<T>& out, const E& e)
{
    const auto& s = e.shape();
    if (!equal_shapes(s, out.shape())) out.resize(s);
    if (!detail::assign_scalar(out, e, false) && !detail::assign_split(out, e, false)) xt::noalias(out) = e;
}

namespace detail {
// Tensor k of what record r saved this step, or an ad::Error naming the op if it saved no such.
template <class T>
const Tensor<T>& saved_tensor(const Tape<T>& tape, const Record<T>& r, std::size_t k)
{
    const Saved<T>* s = tape.saved_of(r);
    if (!s || k >= s->set.size() || !s->set[k]) {
        const std::size_t n = s ? static_cast<std::size_t>(std::count(s->set.begin(), s->set.end(), 1)) : 0;
        throw Error(std::string(r.op) + ": its VJP reads saved tensor " + std::to_string(k) + ", but the op saved " +
                    std::to_string(n) + " tensors and not this one (Op::save(k) in the forward)");
    }
    return s->tensors[k];
}
// The integers an op saved (empty if none).
template <class T>
const std::vector<std::ptrdiff_t>& saved_indices(const Tape<T>& tape, const Record<T>& r)
{
    static const std::vector<std::ptrdiff_t> none;
    const Saved<T>* s = tape.saved_of(r);
    return s ? s->indices : none;
}

// Whether a contribution of shape `e` sums back to an input of shape `x`: equal, or e is x
// broadcast (x aligned with e's trailing axes, each of x's axes equal to e's or 1).
template <class S1, class S2>
bool sums_to(const S1& e, const S2& x)
{
    if (e.size() < x.size()) return false;
    const std::size_t lead = e.size() - x.size();
    for (std::size_t j = 0; j < x.size(); ++j)
        if (x[j] != e[j + lead] && x[j] != 1) return false;
    return true;
}

// The errors of a VJP that names an input its op does not have, or adds a gradient of a shape
// that is not its input's.
template <class T>
[[noreturn]] void refuse_input(const Tape<T>& tape, std::size_t index, std::size_t k)
{
    const auto& r = tape.record(index);
    throw Error(std::string(r.op) + " (tape position " + std::to_string(index) + "): its VJP refers to input " +
                std::to_string(k) + ", but the op has " + std::to_string(r.n_inputs) + " input" +
                (r.n_inputs == 1 ? "" : "s"));
}
template <class T, class S>
[[noreturn]] void refuse_contribution(const Tape<T>& tape, std::size_t index, std::size_t k, const S& shape)
{
    const auto& r = tape.record(index);
    const auto i = tape.input(r, k);
    throw Error(std::string(r.op) + " (tape position " + std::to_string(index) + "): its VJP adds a gradient of shape " +
                shape_str(shape) + " into input " + std::to_string(k) + " of shape " +
                shape_str(tape.shape(i)) + " (op '" + tape.record(i).op + "' at tape position " +
                std::to_string(i) + "); a gradient must have its input's shape, or broadcast to it (then it is "
                "summed back)");
}
}  // namespace detail

// The context a first-order VJP receives: the cotangent g of the op's output, the output y,
// the inputs' values, and the adjoints to add into, which belong to the sweep.
template <class T>
struct Vjp {
    Sweep<T>& sweep;
    Tape<T>& tape;
    const detail::Record<T>& record;
    std::size_t index;   // the op's position on the tape
    const Tensor<T>& g;  // the cotangent of the output
    const Tensor<T>& y;  // the output

    std::size_t inputs() const { return record.n_inputs; }
    // Input k's position on the tape; an op has inputs 0 .. inputs() - 1, others are refused.
    std::uint32_t id(std::size_t k) const
    {
        if (k >= record.n_inputs) detail::refuse_input(tape, index, k);
        return tape.input(record, k);
    }
    // Valid until the VJP returns (a one-element input is read into the sweep's scratch).
    const Tensor<T>& x(std::size_t k) const
    {
        return tape.read(id(k), [this, k]() -> Tensor<T>& { return sweep.read_scratch(k); });
    }
    // What this record saved this step.
    const Tensor<T>& saved(std::size_t k) const { return detail::saved_tensor(tape, record, k); }
    const std::vector<std::ptrdiff_t>& indices() const { return detail::saved_indices(tape, record); }
    // Whether input k needs a gradient: ops skip the work for those that do not.
    bool wants(std::size_t k) const { return tape.record(id(k)).needs_grad; }
    // Input k's value, and a quantity not differentiated through: here the expression itself,
    // kept lazy (GradVjp makes it a constant on the tape). A temporary lives to the end of the
    // statement, so use the result within it or store it in a tensor.
    const Tensor<T>& value(std::size_t k) const { return x(k); }
    template <class E>
    E&& constant(E&& e) const { return std::forward<E>(e); }

    // The adjoint buffer of input k, shaped like the input, and whether this is its first
    // contribution in this sweep (then it must be overwritten, not added to): for ops that
    // write straight into it, as BLAS does with beta = 0 or 1.
    Tensor<T>& slot(std::size_t k, bool& first) { return slot_at(id(k), first); }
    // The same for the input at tape position i.
    Tensor<T>& slot_at(std::size_t i, bool& first)
    {
        const auto& r = tape.record(i);
        if (r.param && sweep.into_params && r.needs_grad)  // a frozen parameter's .grad is never written
            return sweep.param_grad(i, first);
        auto& flag = sweep.reach_flag(i);
        first = !flag;
        flag = 1;
        return first ? sweep.take_adjoint(i, tape.shape(i)) : sweep.adjoint(i);
    }

    // adjoint(input k) += e, with e summed back to the input's shape where the forward
    // broadcast it; e of another shape is refused. e is evaluated only if input k needs a
    // gradient.
    template <class E>
    void acc(std::size_t k, const E& e)
    {
        const auto i = id(k);  // checked once here
        const auto& r = tape.record(i);
        if (!r.needs_grad) return;
        const auto& xs = tape.shape(i);
        const bool same = equal_shapes(e.shape(), xs);
        if (!same && !detail::sums_to(e.shape(), xs)) detail::refuse_contribution(tape, index, k, e.shape());
        bool first;
        auto& a = slot_at(i, first);
        if (same) {
            if (detail::assign_scalar(a, e, !first)) return;
            if constexpr (std::is_same<E, Tensor<T>>::value) {  // a cotangent passed on as it is
                const T* src = e.data();
                T* d = a.data();
                kernels::parallel_for(a.size(), 1, [src, d, first](std::size_t b, std::size_t end) {
                    if (first) std::copy(src + b, src + end, d + b);
                    else
                        for (std::size_t j = b; j < end; ++j) d[j] += src[j];
                });
                return;
            }
            if (detail::assign_split(a, e, !first)) return;
            if (first) xt::noalias(a) = e;
            else xt::noalias(a) += e;
            return;
        }
        kernels::sum_to(e, xs, a, !first, sweep.scratch(), sweep.scratch2());
    }

    // adjoint(input k)[i] += f(i) for every element i of the input, as a plain loop (split
    // over the pool when large: f must be safe to call from several threads at once).
    template <class F>
    void acc_each(std::size_t k, F f)
    {
        const auto i = id(k);
        const auto& r = tape.record(i);
        if (!r.needs_grad) return;
        bool first;
        T* d = slot_at(i, first).data();
        const std::size_t n = tape.value_size(i);
        kernels::parallel_for(n, 1, [d, first, f](std::size_t b, std::size_t end) {  // by value: vectorises
            if (first)
                for (std::size_t j = b; j < end; ++j) d[j] = f(j);
            else
                for (std::size_t j = b; j < end; ++j) d[j] += f(j);
        });
    }
};

// The context a differentiable VJP receives: the same quantities as Vars on the tape, so that
// the VJP it records can be differentiated again.
template <class T>
struct GradVjp {
    Tape<T>& tape;
    std::size_t index;
    Var<T> g;  // the cotangent of the output
    Var<T> y;  // the output
    std::vector<Var<T>>& adjoints;  // the sweep's, indexed like the records
    std::vector<char>& reached;

    const detail::Record<T>& record() const { return tape.record(index); }
    std::size_t inputs() const { return record().n_inputs; }
    std::uint32_t id(std::size_t k) const
    {
        if (k >= record().n_inputs) detail::refuse_input(tape, index, k);
        return tape.input(record(), k);
    }
    Var<T> x(std::size_t k) const { return tape.handle(id(k)); }
    // A saved tensor as a constant: what the forward computed from its inputs' values, which a
    // graph VJP must not differentiate through (build it from x(k) instead where it must).
    Var<T> saved(std::size_t k) const { return tape.constant(detail::saved_tensor(tape, record(), k)); }
    const std::vector<std::ptrdiff_t>& indices() const { return detail::saved_indices(tape, record()); }
    bool wants(std::size_t k) const { return tape.record(id(k)).needs_grad; }
    // Input k's value as a tensor, and a tensor expression (a mask) as a constant on the tape.
    const Tensor<T>& value(std::size_t k) const { return tape.value(id(k)); }
    Var<T> constant(const Tensor<T>& t) const { return tape.constant(t); }
    template <class E>
    Var<T> constant(const E& e) const { return tape.constant_of(e); }

    // adjoint(input k) += e, summed back to the input's shape where the forward broadcast it;
    // e of another shape is refused.
    void acc(std::size_t k, const Var<T>& e)
    {
        if (!wants(k)) return;
        const auto i = id(k);
        tape.check(e, record().op);
        const auto& xs = tape.shape(i);
        const bool same = equal_shapes(e.shape(), xs);
        if (!same && !detail::sums_to(e.shape(), xs)) detail::refuse_contribution(tape, index, k, e.shape());
        const Var<T> d = same ? e : sum_to(e, xs);
        adjoints[i] = reached[i] ? add(adjoints[i], d) : d;
        reached[i] = 1;
    }
};

// Records one op: the constructor appends the record, out() is the output buffer to fill,
// done() hands over the VJP and returns the output's handle.
template <class T>
class Op {
public:
    Op(const char* name, std::initializer_list<Var<T>> inputs)
        : tape_(first_tape(name, inputs)), r_(tape_.push(name, inputs)), index_(tape_.size() - 1)
    {
    }
    Op(const char* name, const std::vector<Var<T>>& inputs)
        : tape_(first_tape(name, inputs)), r_(tape_.push(name, inputs)), index_(tape_.size() - 1)
    {
    }
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;
    ~Op()
    {
        if (scratch_) scratch_->busy = false;
        if (!done_) tape_.drop(index_);
    }

    // The output buffer: the record's own tensor if it has one (kept from step to step), else
    // scratch whose value done() keeps in line if it is one element, or moves into a tensor of
    // the record's own.
    Tensor<T>& out()
    {
        if (!out_) out_ = r_.tensor ? r_.tensor.get() : &scratch().out;
        return *out_;
    }
    // Input k's value, valid until done(): a one-element input is read into this op's scratch,
    // where v.value() would make it a tensor of its own.
    const Tensor<T>& x(std::size_t k)
    {
        if (k >= r_.n_inputs) detail::refuse_input(tape_, index_, k);
        return tape_.read(tape_.input(r_, k), [this, k]() -> Tensor<T>& {
            auto& in = scratch().in;
            while (in.size() <= k) in.emplace_back();
            return in[k];
        });
    }
    Tensor<T>& save(std::size_t k)
    {
        auto& s = tape_.saved(r_);
        if (s.tensors.size() <= k) s.tensors.resize(k + 1);
        if (s.set.size() <= k) s.set.resize(k + 1, 0);
        s.set[k] = 1;
        return s.tensors[k];
    }
    std::vector<std::ptrdiff_t>& save_indices()
    {
        auto& indices = tape_.saved(r_).indices;
        indices.clear();
        return indices;
    }
    // Whether any input needs a gradient: when not, done() keeps no VJP, and an op may skip
    // saving what only its VJP reads.
    bool needs_grad() const { return r_.needs_grad; }
    std::size_t index() const { return index_; }
    Tape<T>& tape() { return tape_; }

    template <class F>
    Var<T> done(F&& vjp)
    {
        return done(std::forward<F>(vjp), detail::NoGraphVjp{});
    }
    template <class F, class G>
    Var<T> done(F&& vjp, G&& graph_vjp)
    {
        if (r_.needs_grad) r_.vjp.set(std::forward<F>(vjp), std::forward<G>(graph_vjp));
        keep_output();
        if (anomaly_enabled()) check_forward_anomaly(tape_, index_);
        if (!grad_enabled()) tape_.count_no_grad(r_.op, index_);
        r_.done = true;
        done_ = true;
        return tape_.handle(index_);
    }

private:
    template <class Inputs>
    static Tape<T>& first_tape(const char* name, const Inputs& inputs)
    {
        if (inputs.size() == 0) throw Error(std::string(name) + ": an op needs at least one input");
        return tape_of(*inputs.begin(), name);
    }

    detail::OpScratch<T>& scratch()
    {
        if (!scratch_) scratch_ = &tape_.take_op_scratch();
        return *scratch_;
    }
    void keep_output()
    {
        if (!out_) return;  // out() never called: a zero of rank 0
        if (out_ == r_.tensor.get()) {
            r_.in_line = false;
            if (scratch_) release_scratch();
        } else {
            keep_scratch_output();
        }
    }
    void release_scratch()
    {
        scratch_->busy = false;
        scratch_ = nullptr;
    }
    [[gnu::noinline]] void keep_scratch_output()
    {
        if (detail::fits_in_line(*out_)) {
            r_.in_line = true;
            r_.rank = static_cast<std::uint8_t>(out_->dimension());
            r_.scalar = *out_->data();
        } else {
            r_.tensor = std::make_unique<Tensor<T>>(std::move(*out_));  // the record's from now on
            *out_ = Tensor<T>();  // a moved-from xarray keeps its shape but not its buffer
            r_.in_line = false;
        }
        if (scratch_) release_scratch();
    }

    Tape<T>& tape_;
    detail::Record<T>& r_;
    std::size_t index_;
    Tensor<T>* out_ = nullptr;
    detail::OpScratch<T>* scratch_ = nullptr;
    bool done_ = false;
};

// The error an op raises on bad input: "op (tape position N): what". The position is where the
// op would have been recorded, so a user with several matmuls can tell which one failed.
template <class T>
[[noreturn]] void fail(const char* op, const Var<T>& any_input, const std::string& what)
{
    std::string where;
    if (any_input.valid()) where = " (tape position " + std::to_string(any_input.tape().size()) + ")";
    throw Error(std::string(op) + where + ": " + what);
}

// Checks the handles against the first one's tape before an op reads their shapes, so that a
// stale or foreign handle is reported under the op's name.
template <class T>
void check_handles(const char* op, std::initializer_list<Var<T>> xs)
{
    const Tape<T>& tape = tape_of(*xs.begin(), op);
    for (const auto& x : xs) tape.check(x, op);
}

// The shape both operands broadcast to (aligned from the right, each pair of dimensions equal
// or 1); false if they do not broadcast. The result has inline storage: nothing allocates.
template <class S1, class S2>
bool broadcast_into(const S1& a, const S2& b, Shape& out)
{
    const std::size_t n = std::max(a.size(), b.size());
    out.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
        const std::size_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
        if (da != db && da != 1 && db != 1) return false;
        out[i] = da == 1 ? db : da;
    }
    return true;
}

template <class S1, class S2>
std::string broadcast_error(const S1& a, const S2& b)
{
    return "cannot broadcast shapes " + shape_str(a) + " and " + shape_str(b) +
           " (aligned from the right, each pair of dimensions must be equal or 1)";
}

// broadcast_into, or an error naming the op.
template <class S1, class S2>
Shape broadcast_shape(const char* op, const S1& a, const S2& b)
{
    Shape out;
    if (!broadcast_into(a, b, out)) throw Error(std::string(op) + ": " + broadcast_error(a, b));
    return out;
}

// The same for two Vars, after checking their handles; the error gives the op's tape position.
template <class T>
Shape broadcast_shape(const char* op, const Var<T>& a, const Var<T>& b)
{
    check_handles(op, {a, b});
    Shape out;
    if (!broadcast_into(a.shape(), b.shape(), out)) fail(op, a, broadcast_error(a.shape(), b.shape()));
    return out;
}

// Maps a possibly negative axis into [0, rank), or throws.
std::size_t normalize_axis(const char* op, std::ptrdiff_t axis, std::size_t rank);

// normalize_axis for x, after checking its handle; the error names x's shape.
template <class T>
std::size_t normalize_axis(const char* op, std::ptrdiff_t axis, const Var<T>& x)
{
    check_handles(op, {x});
    const auto r = static_cast<std::ptrdiff_t>(x.dimension());
    if (axis < -r || axis >= r)
        fail(op, x, "axis " + std::to_string(axis) + " is out of range for shape " + shape_str(x.shape()) +
                        " (expected " + std::to_string(-r) + " <= axis < " + std::to_string(r) + ")");
    return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

// Explicit instantiation of an op for float and double, beside its definition: Signature is
// one of the alias templates below.
#define AD_INSTANTIATE(name, Signature) \
    template Signature<float> name<float>;    \
    template Signature<double> name<double>;

namespace sig {
template <class T> using Unary = Var<T>(const Var<T>&);
template <class T> using Binary = Var<T>(const Var<T>&, const Var<T>&);
template <class T> using Ternary = Var<T>(const Var<T>&, const Var<T>&, const Var<T>&);
template <class T> using WithScalar = Var<T>(const Var<T>&, Scalar<T>);
template <class T> using ScalarFirst = Var<T>(Scalar<T>, const Var<T>&);
template <class T> using WithTwoScalars = Var<T>(const Var<T>&, Scalar<T>, Scalar<T>);
template <class T> using AlongAxis = Var<T>(const Var<T>&, std::ptrdiff_t, KeepDims);
template <class T> using Axis = Var<T>(const Var<T>&, std::ptrdiff_t);
template <class T> using ToShape = Var<T>(const Var<T>&, const Shape&);
}  // namespace sig

}  // namespace ad
