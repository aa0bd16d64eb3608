#include "autodiff/tape.hpp"

#include "autodiff/sweep.hpp"

#include <xtensor/xbuilder.hpp>

#include <sys/mman.h>

#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <sstream>

namespace ad {

namespace {

// Generations are unique across all tapes, so a handle from one tape never matches another,
// nor a tape that later reuses the anchor of a destroyed one.
std::uint64_t next_generation()
{
    static std::atomic<std::uint64_t> counter{1};
    return counter++;
}

// The pool of anchors. An anchor is handed to each new tape and returned when it dies; none is
// ever freed, so a Var can always read its anchor's generation.
template <class T>
struct AnchorPool {
    std::mutex mutex;
    detail::Anchor<T>* free = nullptr;
    std::deque<detail::Anchor<T>> all;

    detail::Anchor<T>* take(Tape<T>* tape, std::uint64_t generation)
    {
        std::lock_guard<std::mutex> lock(mutex);
        detail::Anchor<T>* a = free;
        if (a) free = a->next_free;
        else a = &all.emplace_back();
        a->tape = tape;
        a->generation.store(generation, std::memory_order_release);
        return a;
    }
    void give_back(detail::Anchor<T>* a)
    {
        std::lock_guard<std::mutex> lock(mutex);
        a->generation.store(0, std::memory_order_release);
        a->tape = nullptr;
        a->next_free = free;
        free = a;
    }
};

template <class T>
AnchorPool<T>& anchors()
{
    static auto* pool = new AnchorPool<T>;  // never destroyed: Vars may outlive static destruction
    return *pool;
}

std::string thread_str(std::thread::id id)
{
    std::ostringstream out;
    out << id;
    return out.str();
}
}  // namespace

detail::ParamStripe detail::param_stripes[64];

namespace {
void lock_in_order(std::uint64_t mask)
{
    for (std::uint64_t m = mask; m; m &= m - 1) {
        auto& held = detail::param_stripes[__builtin_ctzll(m)].held;
        while (held.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    }
}
void unlock(std::uint64_t mask)
{
    for (std::uint64_t m = mask; m; m &= m - 1)
        detail::param_stripes[__builtin_ctzll(m)].held.store(false, std::memory_order_release);
}
}  // namespace

std::uint64_t detail::lock_param_stripes_slow(std::uint64_t mask)
{
    auto& held_stripes = held_param_stripes;
    const std::uint64_t taken = mask & ~held_stripes;
    if (!taken) return 0;
    if (held_stripes) {
        // A sweep inside a sweep (a checkpointed block's rerun): taking more stripes while holding
        // some could deadlock against a thread doing the reverse. Try them; if one is busy, let go
        // of everything and take the union in order. The outer sweep is paused inside a VJP
        // meanwhile, so it writes no .grad while it holds nothing.
        std::uint64_t got = 0;
        for (std::uint64_t m = taken; m; m &= m - 1) {
            const std::uint64_t bit = m & (~m + 1);
            if (param_stripes[__builtin_ctzll(m)].held.exchange(true, std::memory_order_acquire)) {
                unlock(got | held_stripes);
                lock_in_order(held_stripes | taken);
                break;
            }
            got |= bit;
        }
    } else {
        lock_in_order(taken);
    }
    held_stripes |= taken;
    return taken;
}

NoGrad::NoGrad() : previous_(detail::grad_mode) { detail::grad_mode = false; }
NoGrad::~NoGrad() { detail::grad_mode = previous_; }

template <class T>
Parameter<T>::Parameter(Tensor<T> v) : grad(Shape{0}), value_(std::move(v))
{
}

template <class T>
void Parameter<T>::zero_grad()
{
    grad_zeroed = false;
    if (grad.size() == 0) return;
    spare_.swap(grad.storage());  // the buffer waits in spare_ for the next backward()
    if (grad.storage().size() != 0) grad.storage() = {};  // a .grad assigned by hand had replaced it
    grad.resize(Shape{0});
}

template <class T>
void Parameter<T>::zero_grad(FillZeros)
{
    if (!has_grad()) take_grad_buffer();
    grad.fill(T(0));
    grad_zeroed = true;
}

template <class T>
Tensor<T>& Parameter<T>::grad_or_zeros()
{
    if (!has_grad()) zero_grad(fill_zeros);
    return grad;
}

template <class T>
Tensor<T>& Parameter<T>::take_grad_buffer()
{
    if (spare_.size() != value_.size()) spare_.resize(value_.size());
    spare_.swap(grad.storage());
    if (spare_.size() != 0) spare_ = {};  // a .grad of another shape, now stale
    grad.resize(value_.shape());          // the storage already has the size: no allocation
    grad_zeroed = false;
    return grad;
}

template <class T>
void detail::refuse_handle(const Var<T>& v, const char* op)
{
    if (!v.anchor())
        throw Error(std::string(op) + ": an empty handle (a default-constructed Var, never recorded on a tape) "
                                      "was used here");
    throw Error(std::string(op) + ": a Var recorded before tape.clear(), or on a tape since destroyed, "
                                  "was used after it; handles are valid only until their tape is cleared");
}

template <class T>
Tape<T>& Var<T>::tape() const
{
    return tape_of(*this, "Var");
}

template <class T>
bool Var<T>::valid() const
{
    return anchor_ && anchor_->generation.load(std::memory_order_acquire) == generation_ &&
           index_ < anchor_->tape->size();
}

template <class T>
T Var<T>::item() const
{
    Tape<T>& t = tape_of(*this, "item");
    t.check(*this, "item");
    if (t.value_size(index_) != 1)
        throw Error("item: needs a one-element tensor, got shape " + shape_str(t.shape(index_)));
    return t.item(index_);
}

template <class T>
bool Var<T>::requires_grad() const
{
    Tape<T>& t = tape_of(*this, "requires_grad");
    t.check(*this, "requires_grad");
    return t.record(index_).needs_grad;
}

template <class T>
Tape<T>::Tape() : generation_(next_generation()), anchor_(anchors<T>().take(this, generation_))
{
}

template <class T>
void Tape<T>::refuse(const Var<T>& v, const char* op) const
{
    if (!v.anchor())
        throw Error(std::string(op) + ": an empty handle (a default-constructed Var, never recorded on a tape) "
                                      "was used here");
    if (v.anchor() != anchor_ && v.anchor()->generation.load(std::memory_order_acquire) == v.generation())
        throw Error(std::string(op) + ": a Var recorded on another tape was used here; "
                                      "values from different tapes cannot be combined");
    throw Error(std::string(op) + ": a Var recorded before tape.clear(), or on a tape since destroyed, "
                                  "was used after it; handles are valid only until their tape is cleared");
}

template <class T>
void Tape<T>::refuse_handle(std::size_t i) const
{
    throw Error("handle: tape position " + std::to_string(i) +
                (i < n_ ? std::string(" holds op '") + record(i).op + "', which has not finished (Op::done())"
                        : " is past the tape's end (" + std::to_string(n_) + " records)") +
                "; a handle is valid only after its op's done()");
}

template <class T>
detail::SweepBuffers<T>* Tape<T>::lend_other_sweep_buffers()
{
    if (!sweep_buffers_) {
        sweep_buffers_ = std::make_unique<detail::SweepBuffers<T>>();
        sweep_buffers_lent_ = true;
        return sweep_buffers_.get();
    }
    if (nested_buffers_) return nested_buffers_.release();
    return new detail::SweepBuffers<T>;
}

template <class T>
void Tape<T>::return_other_sweep_buffers(detail::SweepBuffers<T>* b)
{
    std::unique_ptr<detail::SweepBuffers<T>> owned(b);  // a sweep inside a nested one: the larger set is kept
    if (!nested_buffers_ || owned->pool.size() > nested_buffers_->pool.size()) nested_buffers_ = std::move(owned);
}

template <class T>
Tape<T>::~Tape()
{
    for (std::size_t c = 0; c < chunks_.size(); ++c) {
        std::destroy_n(chunks_[c], chunk_mask + 1);
        if (c < chunks_alone) ::operator delete(chunks_[c], std::align_val_t(alignof(detail::Record<T>)));
    }
    for (void* s : slabs_) std::free(s);
    anchors<T>().give_back(anchor_);
}

template <class T>
void Tape<T>::add_chunk(const char* op)
{
    constexpr std::size_t chunk_bytes = (chunk_mask + 1) * sizeof(detail::Record<T>);
    static_assert(slab_bytes % chunk_bytes == 0 && alignof(detail::Record<T>) <= 4096, "chunks tile a slab");
    chunks_.reserve(chunks_.size() + 1);  // what can throw happens before the chunk is held
    slabs_.reserve(slabs_.size() + 1);
    void* at;
    if (chunks_.size() < chunks_alone) {
        at = ::operator new(chunk_bytes, std::align_val_t(alignof(detail::Record<T>)));
    } else {
        if (slab_left_ == 0) {
            void* slab = std::aligned_alloc(slab_bytes, slab_bytes);
            if (!slab)
                throw Error(std::string(op) + ": out of memory for the tape's records (" + std::to_string(n_) +
                            " recorded)");
            madvise(slab, slab_bytes, MADV_HUGEPAGE);  // a hint: without huge pages it is ordinary memory
            slabs_.push_back(slab);
            slab_left_ = slab_bytes / chunk_bytes;
        }
        at = static_cast<char*>(slabs_.back()) + (slab_bytes / chunk_bytes - slab_left_--) * chunk_bytes;
    }
    auto* chunk = static_cast<detail::Record<T>*>(at);
    static_assert(std::is_nothrow_default_constructible<detail::Record<T>>::value, "making a record allocates nothing");
    std::uninitialized_default_construct_n(chunk, chunk_mask + 1);
    chunks_.push_back(chunk);
    capacity_ += chunk_mask + 1;
}

template <class T>
std::size_t Tape<T>::adjoint_buffers() const
{
    return sweep_buffers_ ? sweep_buffers_->pool.size() : 0;
}

template <class T>
void Tape<T>::take_or_refuse(const char* op)
{
    const auto me = std::this_thread::get_id();
    auto owner = owner_.load(std::memory_order_relaxed);
    if (owner == me) return;
    if (owner == std::thread::id() && owner_.compare_exchange_strong(owner, me)) return;
    throw Error(std::string(op) + ": this tape is in use by thread " + thread_str(owner) +
                " and was used from thread " + thread_str(me) +
                "; a tape records on one thread at a time (give each thread its own tape, or "
                "clear() it on its thread before another takes it over)");
}

template <class T>
void Tape<T>::count_no_grad(const char* op, std::size_t index)
{
    no_grad_bytes_ += value_size(index) * sizeof(T);
    if (no_grad_bytes_ <= no_grad_limit_) return;
    throw Error(std::string(op) + ": the tape holds " + std::to_string(n_) + " records (" +
                std::to_string(no_grad_bytes_ >> 20) + " MiB of values) recorded under NoGrad "
                "since its last clear(), past its limit of " + std::to_string(no_grad_limit_ >> 20) +
                " MiB: an evaluation loop that never calls tape.clear()? Clear the tape after each "
                "batch (or raise the limit with set_no_grad_limit)");
}

template <class T>
void Tape<T>::clear()
{
    check_thread("clear");
    n_ = 0;
    inputs_.clear();
    n_saved_ = 0;
    param_leaves_.clear();
    param_mask_ = 0;
    no_grad_bytes_ = 0;
    generation_ = next_generation();
    anchor_->generation.store(generation_, std::memory_order_release);
    owner_.store(std::thread::id(), std::memory_order_relaxed);
}

template <class T>
template <class Inputs>
detail::Record<T>& Tape<T>::push_impl(const char* op, const Inputs& inputs)
{
    bool needs = false;
    for (const auto& v : inputs) {
        check(v, op);
        needs = needs || record(v.index()).needs_grad;
    }
    auto& r = leaf(op, needs && detail::grad_mode);
    r.done = false;
    r.n_inputs = static_cast<std::uint32_t>(inputs.size());
    if (r.n_inputs <= 2) {
        std::size_t k = 0;
        for (const auto& v : inputs) r.in[k++] = v.index();
    } else {
        r.in[0] = static_cast<std::uint32_t>(inputs_.size());
        for (const auto& v : inputs) inputs_.push_back(v.index());
    }
    return r;
}

template <class T>
detail::Record<T>& Tape<T>::push(const char* op, std::initializer_list<Var<T>> inputs)
{
    return push_impl(op, inputs);
}

template <class T>
detail::Record<T>& Tape<T>::push(const char* op, const std::vector<Var<T>>& inputs)
{
    return push_impl(op, inputs);
}

template <class T>
detail::Record<T>& Tape<T>::leaf(const char* op, bool needs_grad)
{
    check_thread(op);
    if (n_ == capacity_) {
        if (n_ > UINT32_MAX - 1)
            throw Error(std::string(op) + ": the tape is full (" + std::to_string(n_) +
                        " records); clear it between steps");
        add_chunk(op);
    }
    auto& r = record(n_++);
    r.op = op;
    r.vjp.reset();
    r.n_inputs = 0;
    r.saved = 0;
    r.needs_grad = needs_grad;
    r.done = true;  // leaves; push() clears it until Op::done()
    r.in_line = true;  // a zero of rank 0 until a value is set
    r.rank = 0;
    r.scalar = T(0);
    r.param = nullptr;
    return r;
}

template <class T>
const Tensor<T>& Tape<T>::mirror(const detail::Record<T>& r) const
{
    if (!r.tensor) r.tensor = std::make_unique<Tensor<T>>();
    return detail::hold_scalar(*r.tensor, r);
}

template <class T>
detail::OpScratch<T>& Tape<T>::take_op_scratch()
{
    for (auto& s : op_scratch_)
        if (!s.busy) {
            s.busy = true;
            return s;
        }
    op_scratch_.emplace_back();
    op_scratch_.back().busy = true;
    return op_scratch_.back();
}

template <class T>
void Tape<T>::drop(std::size_t i)
{
    auto& r = record(i);
    r.vjp.reset();
    r.done = false;
    r.needs_grad = false;
    if (i + 1 != n_) return;
    --n_;
    if (r.n_inputs > 2) inputs_.resize(r.in[0]);
    if (r.saved) n_saved_ = r.saved - 1;
    if (!param_leaves_.empty() && param_leaves_.back() == n_) param_leaves_.pop_back();
}

template <class T>
detail::Saved<T>& Tape<T>::saved(detail::Record<T>& r)
{
    if (!r.saved) {
        if (n_saved_ == saved_.size()) saved_.emplace_back();
        r.saved = static_cast<std::uint32_t>(++n_saved_);
        // An entry another record used in an earlier step: keep its buffers, not its contents.
        auto& s = saved_[r.saved - 1];
        s.set.clear();
        s.indices.clear();
    }
    return saved_[r.saved - 1];
}

template <class T>
Var<T> Tape<T>::constant(const Tensor<T>& value)
{
    auto& r = leaf("constant", false);
    set_value(r, value);
    if (!detail::grad_mode) count_no_grad("constant", n_ - 1);
    return handle(n_ - 1);
}

template <class T>
Var<T> Tape<T>::variable(const Tensor<T>& value)
{
    auto& r = leaf("variable", detail::grad_mode);
    set_value(r, value);
    if (!detail::grad_mode) count_no_grad("variable", n_ - 1);
    return handle(n_ - 1);
}

template <class T>
Var<T> Tape<T>::param(Parameter<T>& p)
{
    const bool trained = p.requires_grad();
    auto& r = leaf("param", detail::grad_mode && trained);
    r.param = &p;
    r.param_version = p.version();
    param_leaves_.push_back(static_cast<std::uint32_t>(n_ - 1));
    if (trained) param_mask_ |= detail::param_stripe(&p);
    return handle(n_ - 1);
}

template void detail::refuse_handle(const Var<float>&, const char*);
template void detail::refuse_handle(const Var<double>&, const char*);
template class Parameter<float>;
template class Parameter<double>;
template class Var<float>;
template class Var<double>;
template class Tape<float>;
template class Tape<double>;

}  // namespace ad
