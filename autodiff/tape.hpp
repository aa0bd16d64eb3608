// The tape: one record per op in execution order, and the handles (Var) that point into it.
//
// A record holds the op's output value, the records it read, and its vector-Jacobian product.
// The tape owns every record; a Var is an index plus the tape's generation, so a handle kept
// past clear() or past the tape's life is detected instead of reading reused memory. clear()
// keeps the records' buffers, so a training loop that records the same ops every step allocates
// nothing for values after the first step. The tape holds records, leaves and the generation;
// what one reverse sweep needs lives in a Sweep object (autodiff/sweep.hpp) of its own, the tape
// only lending it buffers kept from step to step.
//
// The contract:
// - One thread at a time. A tape belongs to the thread that records its first value after
//   construction or clear(); recording on it or sweeping it from another thread raises
//   ad::Error. Threads that train at once each use a tape of their own. Reading values takes
//   turns too: the first value() of a one-element value writes its record (see Record). A
//   Parameter may be shared by tapes on several threads: reading its value is safe, and
//   backward() on several threads adding into one parameter's .grad is safe too (sweeps that
//   write the same parameter take turns: each locks its parameters' stripes of a global lock
//   table, in one order, for the whole sweep, so a grad-ready hook runs holding them).
//   Updating a shared parameter while another thread reads it is the caller's to order.
// - A Var is valid from the op's done() until its tape is cleared or destroyed; using it later
//   raises ad::Error.
// - Clear the tape once per step: every op appends a record, so a loop that never clears grows
//   without bound. Under NoGrad (evaluation) a tape whose values recorded since its last
//   clear() pass no_grad_limit() bytes raises ad::Error saying so.
#pragma once

#include "autodiff/tensor.hpp"

#include <xtensor/xnoalias.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace ad {

template <class T>
class Tape;
template <class T>
struct Vjp;
template <class T>
struct GradVjp;
template <class T>
class Sweep;
namespace detail {
template <class T>
struct SweepBuffers;
}

// What zero_grad() leaves in .grad: nothing (the default, PyTorch's set_to_none=True), or zeros
// of the value's shape (ad::fill_zeros, PyTorch's set_to_none=False).
struct FillZeros {};
inline constexpr FillZeros fill_zeros{};

// A trainable tensor that lives outside any tape and persists across steps. Its gradient
// accumulates over backward() calls until zero_grad().
//
// The gradient, as in PyTorch since 2.0, starts empty: from construction and after zero_grad()
// .grad holds no elements and has_grad() is false, and the first contribution of the next
// backward() writes it instead of adding into zeros, so a step never spends a pass zeroing its
// gradients. Later contributions and later backward() calls add, so gradients accumulate over
// backward() calls exactly as before. Optimisers and clipping skip a parameter without a
// gradient (one that no backward() reached), as PyTorch skips a None .grad. zero_grad() is O(1):
// it keeps the buffer aside for the next backward(), which therefore allocates nothing.
//
// The value is reached through accessors so that every change is counted: version() counts the
// changes, and a backward pass through a parameter changed since the forward pass read it is
// refused rather than silently wrong (the sweep would mix old and new values, or read out of
// bounds if the shape changed).
// - value() reads it.
// - mutable_value() is write access: calling it counts as a modification, so writing through the
//   reference it returns after a forward pass makes a later backward through that pass throw.
//   Take the reference when you mean to write (an optimiser step), not to keep: writes through a
//   reference held since before the forward pass are not seen.
// - set_value(v) replaces it (any shape) and drops a gradient of the old shape.
// - mark_modified() counts a change made some other way (through a pointer into the data).
//
// Frozen parameters (PyTorch's p.requires_grad_(False)): requires_grad_(false) makes
// tape.param(p) record a constant that reads the value in place. No gradient flows to it,
// backward() never writes its .grad, optimisers and clipping skip it, and grad() with respect
// to it is an ad::Error (zeros with ad::allow_unused). A tape records the flag as it was when
// tape.param(p) ran; freezing a parameter between the forward pass and backward() is refused.
template <class T>
class Parameter {
public:
    Tensor<T> grad;

    Parameter() = default;
    explicit Parameter(Tensor<T> v);

    const Tensor<T>& value() const { return value_; }
    Tensor<T>& mutable_value()
    {
        ++version_;
        return value_;
    }
    void set_value(Tensor<T> v)
    {
        value_ = std::move(v);
        ++version_;
        if (grad.size() != 0 && !has_grad()) zero_grad();  // a gradient of the old shape
    }
    std::uint64_t version() const { return version_; }
    void mark_modified() { ++version_; }
    bool requires_grad() const { return trained_; }
    Parameter& requires_grad_(bool on = true)
    {
        trained_ = on;
        return *this;
    }
    // Whether .grad holds a gradient: it has the value's shape. An empty .grad is no gradient.
    bool has_grad() const { return equal_shapes(grad.shape(), value_.shape()); }
    // Empties .grad (O(1)), or with ad::fill_zeros makes it zeros of the value's shape.
    void zero_grad();
    void zero_grad(FillZeros);
    // .grad, made zeros of the value's shape first if it is empty (to add into by hand).
    Tensor<T>& grad_or_zeros();

    // For backward(), which leaves .grad as it was if a VJP throws: set by zero_grad(ad::fill_zeros)
    // (then nothing needs copying to put .grad back; write .grad directly only after a backward()
    // or zero_grad() and not between the two), the sweep that last wrote .grad, and the last
    // sweep that found it zeroed or empty.
    bool grad_zeroed = false;
    std::uint64_t written_by = 0;
    std::uint64_t zeroed_before = 0;  // the sweep that found .grad zeroed or empty when it first wrote it
    bool found_empty = false;         // ... and found it empty
    // The sweep's first write: .grad takes the buffer kept aside, shaped like the value and
    // holding whatever it held (the contribution overwrites it).
    Tensor<T>& take_grad_buffer();

private:
    Tensor<T> value_;
    // .grad's buffer while .grad is empty. Only the storage moves between the two: swapping
    // whole xarrays copies their inline shape vectors, which cost more than the tiny gradients.
    typename Tensor<T>::storage_type spare_;
    std::uint64_t version_ = 0;
    bool trained_ = true;
};

namespace detail {

// An op's VJPs, stored in its record: the closures an op hands to Op::done(), kept inline when
// they are small (the library's own always are), so recording allocates nothing. `first` is the
// VJP on tensors; `graph`, if the op states one, the same VJP written in tape ops.
template <class T>
class Backward {
public:
    static constexpr std::size_t inline_size = 48;

    Backward() = default;
    Backward(const Backward&) = delete;
    Backward& operator=(const Backward&) = delete;
    ~Backward() { reset(); }

    template <class F, class G>
    void set(F&& first, G&& graph);
    void reset()
    {
        if (!calls_) return;
        if (calls_->destroy) calls_->destroy(object());
        if (calls_->heap_align) ::operator delete(object(), std::align_val_t(calls_->heap_align));
        calls_ = nullptr;
    }
    explicit operator bool() const { return calls_ != nullptr; }
    bool differentiable() const { return calls_ && calls_->graph; }
    void operator()(Vjp<T>& v) const { calls_->first(object(), v); }
    void operator()(GradVjp<T>& v) const { calls_->graph(object(), v); }

private:
    // What one closure type needs, one table per type: the record keeps a single pointer to it.
    struct Calls {
        void (*first)(const void*, Vjp<T>&);
        void (*graph)(const void*, GradVjp<T>&);  // null: no differentiable VJP
        void (*destroy)(void*);                   // null: trivially destructible
        std::size_t heap_align;                   // nonzero: the buffer holds a pointer to the closure
    };
    template <class Pair>
    static const Calls calls_for;

    void* object() const
    {
        if (calls_->heap_align) return *reinterpret_cast<void* const*>(buffer_);
        return const_cast<unsigned char*>(buffer_);
    }

    alignas(16) unsigned char buffer_[inline_size];
    const Calls* calls_ = nullptr;
};

// What Op::done() was given when the op states no differentiable VJP.
struct NoGraphVjp {};

template <class F, class G>
struct VjpPair {
    F first;
    G graph;
};

template <class T>
template <class Pair>
const typename Backward<T>::Calls Backward<T>::calls_for = {
    [](const void* p, Vjp<T>& v) { static_cast<const Pair*>(p)->first(v); },
    std::is_same<decltype(Pair::graph), NoGraphVjp>::value
        ? nullptr
        : +[](const void* p, GradVjp<T>& v) {
              if constexpr (!std::is_same<decltype(Pair::graph), NoGraphVjp>::value)
                  static_cast<const Pair*>(p)->graph(v);
          },
    std::is_trivially_destructible<Pair>::value ? nullptr : +[](void* p) { static_cast<Pair*>(p)->~Pair(); },
    sizeof(Pair) > inline_size || alignof(Pair) > 16 ? alignof(Pair) : 0,
};

template <class T>
template <class F, class G>
void Backward<T>::set(F&& first, G&& graph)
{
    using Pair = VjpPair<std::decay_t<F>, std::decay_t<G>>;
#ifdef AD_REQUIRE_INLINE_VJP  // set for the library's own ops: recording them never allocates
    static_assert(sizeof(Pair) <= inline_size && alignof(Pair) <= 16, "an op's VJP captures too much to be stored inline");
#endif
    reset();
    if constexpr (sizeof(Pair) > inline_size || alignof(Pair) > 16) {
        void* at = ::operator new(sizeof(Pair), std::align_val_t(alignof(Pair)));
        try {
            new (at) Pair{std::forward<F>(first), std::forward<G>(graph)};
        } catch (...) {  // a capture's copy or move threw: the block is not the record's yet
            ::operator delete(at, std::align_val_t(alignof(Pair)));
            throw;
        }
        *reinterpret_cast<void**>(buffer_) = at;
    } else {
        new (buffer_) Pair{std::forward<F>(first), std::forward<G>(graph)};
    }
    calls_ = &calls_for<Pair>;
}

// One op or leaf. 128 bytes in double (the fields are ordered so that none pads): a scalar
// tape's memory is mostly its records.
template <class T>
struct Record {
    Backward<T> vjp;                // empty: a leaf, or an op none of whose inputs needs a gradient
    const char* op = "";            // the op's name, for errors, anomaly reports and graphs
    Parameter<T>* param = nullptr;  // a leaf that reads a parameter's value in place
    std::uint64_t param_version = 0;
    // The output (unused for parameter leaves). A one-element value of rank <= 4 is `scalar`
    // (its shape is all ones, `rank` of them), so a scalar tape holds no tensor per record;
    // other values are `*tensor`, made the first time the record holds one and kept from step to
    // step. A one-element value read as a tensor (Tape::value) is mirrored into `tensor` too.
    T scalar = T(0);
    mutable std::unique_ptr<Tensor<T>> tensor;
    std::uint32_t n_inputs = 0;
    // The inputs' positions: up to two here, more in tape.inputs_[in[0], in[0] + n_inputs).
    std::uint32_t in[2] = {0, 0};
    std::uint32_t saved = 0;  // 0, or 1 + the position of what the op saved in tape.saved_
    bool needs_grad = false;
    bool done = false;  // its handle is valid: a leaf, or an op that reached Op::done()
    bool in_line = true;
    std::uint8_t rank = 0;
};

// The shape of a one-element value of rank r <= 4: r ones.
inline const Shape ones_shapes[] = {Shape{}, Shape{1}, Shape{1, 1}, Shape{1, 1, 1}, Shape{1, 1, 1, 1}};
inline const Shape& ones_shape(std::size_t r) { return ones_shapes[r]; }
constexpr std::size_t max_in_line_rank = 4;

// t = the one-element value of r, without allocating once t holds one element. Out of line:
// the callers' tensor paths are the hot ones.
template <class T>
[[gnu::noinline]] const Tensor<T>& hold_scalar(Tensor<T>& t, const Record<T>& r)
{
    const Shape& s = ones_shape(r.rank);
    if (!equal_shapes(t.shape(), s)) t.resize(s);
    *t.data() = r.scalar;
    return t;
}

// Op outputs that are one element of rank <= 4 are held in line.
inline bool fits_in_line(std::size_t size, std::size_t rank) { return size == 1 && rank <= max_in_line_rank; }
template <class T>
bool fits_in_line(const Tensor<T>& t)
{
    return fits_in_line(t.size(), t.dimension());
}

// The scratch an op works in while it records (Op::out() for a record without a tensor of its
// own, Op::x(k) for one-element inputs), kept from step to step. An op holds one until done().
template <class T>
struct OpScratch {
    Tensor<T> out;
    std::deque<Tensor<T>> in;  // a deque: growing it keeps the references handed out
    bool busy = false;
};

// What an op keeps for its VJP besides its inputs and output, kept apart from the records
// because few ops save anything.
template <class T>
struct Saved {
    std::vector<Tensor<T>> tensors;       // a mask, probabilities: Op::save(k)
    std::vector<char> set;                // tensors[k] was saved by this record this step
    std::vector<std::ptrdiff_t> indices;  // argmax positions, labels: Op::save_indices()
};

// Each tape has an anchor that outlives it: a Var reaches its tape through the anchor, so a Var
// kept after its tape was destroyed finds the anchor's generation changed and is refused,
// instead of reading freed memory. Anchors are recycled, never freed.
template <class T>
struct Anchor {
    Tape<T>* tape = nullptr;
    std::atomic<std::uint64_t> generation{0};
    Anchor* next_free = nullptr;
};

}  // namespace detail

// A handle to a value recorded on a tape. Cheap to copy; valid until the tape is cleared or
// destroyed, which later uses detect.
template <class T>
class Var {
public:
    Var() = default;
    Var(detail::Anchor<T>* anchor, std::uint32_t index, std::uint64_t generation)
        : anchor_(anchor), index_(index), generation_(generation) {}

    const Tensor<T>& value() const;
    const Shape& shape() const;
    std::size_t size() const;
    std::size_t dimension() const { return shape().size(); }
    T item() const;  // the value of a one-element tensor
    bool requires_grad() const;
    Tape<T>& tape() const;
    std::uint32_t index() const { return index_; }
    std::uint64_t generation() const { return generation_; }
    const detail::Anchor<T>* anchor() const { return anchor_; }
    bool valid() const;  // recorded on a tape that has not been cleared or destroyed since

private:
    detail::Anchor<T>* anchor_ = nullptr;
    std::uint32_t index_ = 0;
    std::uint64_t generation_ = 0;
};

namespace detail {
template <class T>
[[noreturn]] void refuse_handle(const Var<T>& v, const char* op);
}

// The tape a Var was recorded on, or an ad::Error naming `op` when the handle is empty or its
// tape was cleared or destroyed since.
template <class T>
inline Tape<T>& tape_of(const Var<T>& v, const char* op)
{
    const auto* a = v.anchor();
    if (!a || a->generation.load(std::memory_order_acquire) != v.generation()) detail::refuse_handle(v, op);
    return *a->tape;
}

template <class T>
class Tape {
public:
    Tape();
    ~Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    // Leaves.
    Var<T> constant(const Tensor<T>& value);  // data, copied: no gradient, no adjoint work
    Var<T> variable(const Tensor<T>& value);  // an input whose gradient grad() can return
    Var<T> param(Parameter<T>& p);            // reads p.value() in place; backward() adds into p.grad
                                              // (a constant if p is frozen: requires_grad_(false))

    // Forget every record, keeping their memory for the next step. Every Var recorded so far
    // becomes invalid, and using one raises ad::Error. The next thread to record owns the tape.
    void clear();

    std::size_t size() const { return n_; }  // records, leaves included
    std::uint64_t generation() const { return generation_; }

    // Bytes of values recorded under NoGrad since the last clear() before the tape refuses
    // more (an evaluation loop that forgot to clear). Default 1 GiB.
    std::size_t no_grad_limit() const { return no_grad_limit_; }
    void set_no_grad_limit(std::size_t bytes) { no_grad_limit_ = bytes; }

    // --- for ops (autodiff/op.hpp) and the reverse sweep ---
    // A constant holding the tensor expression e, evaluated into the record's own buffer, which
    // the tape keeps from step to step: a graph VJP's mask or ones allocate nothing.
    template <class E>
    Var<T> constant_of(const E& e);
    detail::Record<T>& push(const char* op, std::initializer_list<Var<T>> inputs);
    detail::Record<T>& push(const char* op, const std::vector<Var<T>>& inputs);
    // Undoes record i, an op whose forward threw: removed if it is the last record; otherwise
    // (it recorded ops after itself, whose handles may have escaped) it stays, never done, so
    // no handle to it is valid and those after it keep theirs.
    void drop(std::size_t i);
    // The handle of record i, which must be done (a handle before Op::done() would alias
    // whatever took the record's place, should the op throw).
    Var<T> handle(std::size_t i) const
    {
        if (i >= n_ || !record(i).done) refuse_handle(i);
        return Var<T>(anchor_, static_cast<std::uint32_t>(i), generation_);
    }
    detail::Record<T>& record(std::size_t i) { return chunks_[i >> chunk_bits][i & chunk_mask]; }
    const detail::Record<T>& record(std::size_t i) const { return chunks_[i >> chunk_bits][i & chunk_mask]; }
    // Record i's value. A one-element value held in line is mirrored into a tensor of the
    // record's own on the first call (kept from step to step), so the reference stays valid
    // until clear() like any other.
    const Tensor<T>& value(std::size_t i) const
    {
        const auto& r = record(i);
        if (r.param) return r.param->value();
        if (!r.in_line) return *r.tensor;
        return mirror(r);
    }
    // The same for a read that ends before the scratch tensor scratch() returns is used again
    // (an op's forward, a VJP): a value held in line is copied there, and no tensor is made for it.
    template <class Scratch>
    const Tensor<T>& read(std::size_t i, Scratch&& scratch) const
    {
        const auto& r = record(i);
        if (r.param) return r.param->value();
        if (!r.in_line) return *r.tensor;
        return detail::hold_scalar(scratch(), r);
    }
    const Shape& shape(std::size_t i) const
    {
        const auto& r = record(i);
        if (r.param) return r.param->value().shape();
        return r.in_line ? detail::ones_shape(r.rank) : r.tensor->shape();
    }
    std::size_t value_size(std::size_t i) const
    {
        const auto& r = record(i);
        if (r.param) return r.param->value().size();
        return r.in_line ? 1 : r.tensor->size();
    }
    // Record i's one-element value.
    T item(std::size_t i) const
    {
        const auto& r = record(i);
        if (!r.param && r.in_line) return r.scalar;
        return *value(i).data();
    }
    // Sets r's value to e: in line if it is one element of rank <= 4, else evaluated into the
    // record's tensor (its buffer kept from step to step).
    template <class E>
    void set_value(detail::Record<T>& r, const E& e);
    // Op scratch: taken by an op that needs it, given back at done() or when the op is undone.
    detail::OpScratch<T>& take_op_scratch();
    std::uint32_t input(const detail::Record<T>& r, std::size_t k) const
    {
        return r.n_inputs <= 2 ? r.in[k] : inputs_[r.in[0] + k];
    }
    // The handle belongs to this tape's current generation, or ad::Error naming `op`.
    // (No handle to a record that is not done exists: handle() refuses one, and drop() undoes
    // only records whose op never reached done().)
    void check(const Var<T>& v, const char* op) const
    {
        if (v.anchor() != anchor_ || v.generation() != generation_ || v.index() >= n_) refuse(v, op);
    }
    // The calling thread owns the tape (or takes it), or ad::Error naming `op`.
    void check_thread(const char* op)
    {
        if (owner_.load(std::memory_order_relaxed) != std::this_thread::get_id()) take_or_refuse(op);
    }
    void count_no_grad(const char* op, std::size_t index);  // record index was made under NoGrad
    // What record r's op saved for its VJP: saved(r) makes the entry on first use (its buffers
    // kept from step to step), saved_of(r) is null if the op saved nothing.
    detail::Saved<T>& saved(detail::Record<T>& r);
    const detail::Saved<T>* saved_of(const detail::Record<T>& r) const
    {
        return r.saved ? &saved_[r.saved - 1] : nullptr;
    }
    // Positions of the parameter leaves recorded since the last clear(), in tape order.
    const std::vector<std::uint32_t>& param_leaves() const { return param_leaves_; }
    // The lock stripes (autodiff/sweep.hpp) of the parameters read since the last clear(): what
    // a sweep from an output after every parameter leaf locks.
    std::uint64_t param_mask() const { return param_mask_; }

    // The buffers of a sweep (autodiff/sweep.hpp), kept from one sweep to the next: the first
    // sweep borrows the tape's, a sweep started while they are lent (a nested one) gets a second
    // set, also kept. Every sweep gives back what it borrowed.
    detail::SweepBuffers<T>* lend_sweep_buffers()
    {
        if (sweep_buffers_lent_ || !sweep_buffers_) return lend_other_sweep_buffers();
        sweep_buffers_lent_ = true;
        return sweep_buffers_.get();
    }
    void return_sweep_buffers(detail::SweepBuffers<T>* b)
    {
        if (b == sweep_buffers_.get()) sweep_buffers_lent_ = false;
        else return_other_sweep_buffers(b);
    }
    std::size_t adjoint_buffers() const;  // the pool's size, for memory reports
    static constexpr std::uint64_t pool_keep = 16;  // sweeps a pooled buffer may go unused

private:
    template <class Inputs>
    detail::Record<T>& push_impl(const char* op, const Inputs& inputs);
    const Tensor<T>& mirror(const detail::Record<T>& r) const;  // value() of a value held in line
    detail::Record<T>& leaf(const char* op, bool needs_grad);
    [[noreturn]] void refuse(const Var<T>& v, const char* op) const;
    [[noreturn]] void refuse_handle(std::size_t i) const;
    void take_or_refuse(const char* op);
    detail::SweepBuffers<T>* lend_other_sweep_buffers();
    void return_other_sweep_buffers(detail::SweepBuffers<T>* b);

    // Records live in fixed-size chunks: references stay valid as the tape grows, and finding
    // record i is a shift and a mask. The first chunks are allocated one by one; a longer tape
    // takes the rest from 2 MiB slabs that the kernel may back with huge pages, so that a first
    // recording of a million ops takes dozens of page faults rather than tens of thousands.
    static constexpr std::size_t chunk_bits = 8, chunk_mask = (std::size_t(1) << chunk_bits) - 1;
    static constexpr std::size_t chunks_alone = 8;  // 2048 records before slabs
    static constexpr std::size_t slab_bytes = std::size_t(2) << 20;
    void add_chunk(const char* op);
    std::vector<detail::Record<T>*> chunks_;
    std::vector<void*> slabs_;
    std::size_t slab_left_ = 0;  // chunks still free in the last slab
    std::unique_ptr<detail::SweepBuffers<T>> sweep_buffers_;  // made by the first sweep
    bool sweep_buffers_lent_ = false;
    std::unique_ptr<detail::SweepBuffers<T>> nested_buffers_;  // kept for the next nested sweep
    std::size_t capacity_ = 0;  // records in the chunks
    std::size_t n_ = 0;
    std::vector<std::uint32_t> inputs_;  // of ops with more than two inputs
    // A deque: an op recorded inside a differentiable VJP may save while that VJP still reads
    // what its own op saved, so entries must not move as the list grows.
    std::deque<detail::Saved<T>> saved_;
    std::deque<detail::OpScratch<T>> op_scratch_;  // one per op recording at once (nested ones)
    std::size_t n_saved_ = 0;  // entries of saved_ in use since the last clear()
    std::vector<std::uint32_t> param_leaves_;
    std::uint64_t param_mask_ = 0;
    std::uint64_t generation_;
    detail::Anchor<T>* anchor_;
    std::atomic<std::thread::id> owner_{};
    std::size_t no_grad_bytes_ = 0;
    std::size_t no_grad_limit_ = std::size_t(1) << 30;
};

// Ops compute values and record nothing that needs a gradient while a NoGrad is alive on this
// thread (their outputs are constants on the tape).
class NoGrad {
public:
    NoGrad();
    ~NoGrad();
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;

private:
    bool previous_;
};
namespace detail {
inline thread_local bool grad_mode = true;
}
inline bool grad_enabled() { return detail::grad_mode; }

// The opposite: ops record what needs a gradient while an EnableGrad is alive on this thread,
// inside a NoGrad scope too.
class EnableGrad {
public:
    EnableGrad() : previous_(detail::grad_mode) { detail::grad_mode = true; }
    ~EnableGrad() { detail::grad_mode = previous_; }
    EnableGrad(const EnableGrad&) = delete;
    EnableGrad& operator=(const EnableGrad&) = delete;

private:
    bool previous_;
};

template <class T>
inline const Tensor<T>& Var<T>::value() const
{
    Tape<T>& t = tape_of(*this, "value");
    t.check(*this, "value");
    return t.value(index_);
}

template <class T>
inline const Shape& Var<T>::shape() const
{
    Tape<T>& t = tape_of(*this, "shape");
    t.check(*this, "shape");
    return t.shape(index_);
}

template <class T>
inline std::size_t Var<T>::size() const
{
    Tape<T>& t = tape_of(*this, "size");
    t.check(*this, "size");
    return t.value_size(index_);
}

template <class T>
template <class E>
void Tape<T>::set_value(detail::Record<T>& r, const E& e)
{
    const auto& s = e.shape();
    std::size_t n = 1;
    for (const auto d : s) n *= d;
    r.in_line = detail::fits_in_line(n, s.size());
    if (r.in_line) {
        r.rank = static_cast<std::uint8_t>(s.size());
        r.scalar = *e.begin();
        return;
    }
    if constexpr (std::is_same<E, Tensor<T>>::value) {  // a copy, cheaper than xtensor's assignment
        if (!r.tensor) r.tensor = std::make_unique<Tensor<T>>(e);
        else *r.tensor = e;
    } else {
        if (!r.tensor) r.tensor = std::make_unique<Tensor<T>>();
        xt::noalias(*r.tensor) = e;
    }
}

template <class T>
template <class E>
Var<T> Tape<T>::constant_of(const E& e)
{
    auto& r = leaf("constant", false);
    set_value(r, e);
    if (!detail::grad_mode) count_no_grad("constant", n_ - 1);
    return handle(n_ - 1);
}

extern template class Parameter<float>;
extern template class Parameter<double>;
extern template class Var<float>;
extern template class Var<double>;
extern template class Tape<float>;
extern template class Tape<double>;

}  // namespace ad
