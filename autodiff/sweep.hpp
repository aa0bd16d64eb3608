// One reverse sweep's state, apart from the tape it sweeps (as PyTorch's GraphTask is apart from
// its graph): which records the sweep has reached, their adjoint buffers, the scratch space of
// broadcasting reductions, and, for backward(), the parameters whose .grad it writes. The VJPs
// it calls see it as Vjp::sweep. A sweep started inside another on the same tape (a grad-ready
// hook or a VJP calling ad::grad) has an object of its own, so neither disturbs the other.
//
// Adjoint buffers: a sweep gives each record it reaches a buffer (take_adjoint), and once the
// record's own VJP has run hands it back (release_adjoint) unless the record is kept (a leaf, or
// an input the caller asked for): a sweep holds the adjoints still to be read, not one per
// record. Buffers are matched by size and kept by the tape between sweeps (the first sweep on a
// tape borrows them, a nested one makes its own), so a loop that sweeps the same graph every
// step reuses them without allocating; a buffer no sweep has used in the last Tape::pool_keep
// sweeps is freed, so a loop whose shapes change keeps a bounded pool.
#pragma once

#include "autodiff/tape.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace ad {

namespace detail {

// The buffers a sweep works in, lent by its tape from one sweep to the next.
template <class T>
struct SweepBuffers {
    struct Pooled {
        std::unique_ptr<Tensor<T>> tensor;
        std::uint64_t last_sweep;  // the sweep that last took it
    };
    std::vector<Pooled> pool;
    std::uint64_t sweeps = 0;                // sweeps that used these buffers
    std::size_t used = 0;                    // buffers the latest sweep took
    // The positions in pool not in use, by element count (a few distinct counts per model), each
    // list most recently freed last. The lists and their capacity outlive the sweeps.
    struct FreeList {
        std::size_t size;
        std::vector<std::uint32_t> at;
    };
    std::vector<FreeList> free;
    std::vector<std::uint32_t>& free_list(std::size_t n)
    {
        for (auto& l : free)
            if (l.size == n) return l.at;
        free.push_back({n, {}});
        return free.back().at;
    }
    std::vector<std::uint32_t> adjoint_at;   // record -> position in pool
    std::vector<char> reached;               // record -> has an adjoint in this sweep
    Tensor<T> scratch, scratch2;             // reused by broadcasting reductions
    // What a VJP reads one-element values into (Tape::read): its inputs' and its output's. A
    // deque: growing it keeps the references handed out.
    std::deque<Tensor<T>> reads;
    Tensor<T> output_read;
    // backward(): the parameters whose .grad the sweep wrote and was not zero, with what to put
    // back if it throws
    struct Touched {
        Parameter<T>* param;
        std::int32_t backup;  // position in pool of a copy of .grad
    };
    std::vector<Touched> touched;
};

// The lock table of parameters written by sweeps: a parameter's stripe is param_stripe(&p).
// Spin locks: one exchange to take when no other thread holds it, which is the single-threaded
// case, where a mutex would cost a measurable share of a small step.
struct alignas(64) ParamStripe {
    std::atomic<bool> held{false};
};
extern ParamStripe param_stripes[64];
inline thread_local std::uint64_t held_param_stripes = 0;  // by this thread's sweeps
inline std::atomic<std::uint64_t> sweep_ids{1};

// Takes the stripes in `mask` not already held by this thread, in stripe order, and returns
// those it took. Sweeps that add into one parameter's .grad from several threads take turns.
std::uint64_t lock_param_stripes_slow(std::uint64_t mask);
inline std::uint64_t lock_param_stripes(std::uint64_t mask)
{
    if (held_param_stripes) return lock_param_stripes_slow(mask);
    for (std::uint64_t m = mask; m; m &= m - 1)
        if (param_stripes[__builtin_ctzll(m)].held.exchange(true, std::memory_order_acquire)) {
            // busy: let go of those taken so far and wait in order
            for (std::uint64_t t = mask & ~m; t; t &= t - 1)
                param_stripes[__builtin_ctzll(t)].held.store(false, std::memory_order_release);
            return lock_param_stripes_slow(mask);
        }
    held_param_stripes = mask;
    return mask;
}
inline void unlock_param_stripes(std::uint64_t taken)
{
    held_param_stripes &= ~taken;
    for (std::uint64_t m = taken; m; m &= m - 1)
        param_stripes[__builtin_ctzll(m)].held.store(false, std::memory_order_release);
}
inline std::uint64_t param_stripe(const void* p)
{
    return std::uint64_t(1) << ((reinterpret_cast<std::uintptr_t>(p) >> 4) * 0x9E3779B97F4A7C15ull >> 58);
}

}  // namespace detail

template <class T>
class Sweep {
public:
    // A sweep over records [0, output]. With `into_params` (backward()) a parameter leaf's
    // adjoint is the parameter's own .grad, locked against sweeps on other threads.
    Sweep(Tape<T>& tape, std::size_t output, bool into_params);
    ~Sweep()
    {
        if (locked_) detail::unlock_param_stripes(locked_);
        tape.return_sweep_buffers(b_);
    }
    Sweep(const Sweep&) = delete;
    Sweep& operator=(const Sweep&) = delete;

    Tape<T>& tape;
    const bool into_params;
    std::size_t output() const { return out_; }

    // Whether record i has an adjoint in this sweep (records after the output never do).
    bool reached(std::size_t i) const { return i <= out_ && b_->reached[i]; }
    char& reach_flag(std::size_t i) { return b_->reached[i]; }
    // Record i's buffer: valid while i is reached and not released.
    Tensor<T>& adjoint(std::size_t i) { return *b_->pool[b_->adjoint_at[i]].tensor; }
    template <class S>
    Tensor<T>& take_adjoint(std::size_t i, const S& shape)
    {
        const std::uint32_t at = take_shaped(shape);
        b_->adjoint_at[i] = at;
        return *b_->pool[at].tensor;
    }
    void release_adjoint(std::size_t i)
    {
        const std::uint32_t at = b_->adjoint_at[i];
        b_->free_list(b_->pool[at].tensor->size()).push_back(at);
    }

    // The .grad of parameter leaf i, marked reached, and whether this is the parameter's first
    // contribution (then it must be overwritten: the parameter had no gradient). The first time
    // the sweep writes a parameter it remembers how to put its .grad back should the sweep throw.
    Tensor<T>& param_grad(std::size_t i, bool& first)
    {
        Parameter<T>& p = *tape.record(i).param;
        char& flag = b_->reached[i];
        first = false;
        if (!flag) {
            flag = 1;
            if (p.written_by != id_) {  // else another leaf of p was reached first
                p.written_by = id_;
                if (!p.has_grad()) {  // putting it back is emptying it
                    p.take_grad_buffer();
                    p.zeroed_before = id_;
                    p.found_empty = first = true;
                } else if (p.grad_zeroed) {  // nothing to copy: putting it back is zeroing it
                    p.grad_zeroed = false;
                    p.zeroed_before = id_;
                    p.found_empty = false;
                } else {
                    back_up(p);
                }
            }
        }
        return p.grad;
    }
    // Puts back the .grad of every parameter this sweep wrote (a VJP threw).
    void restore_params();

    // A VJP's own buffer of a given shape, from the adjoints' pool and back to it when the
    // Temporary goes: a size the pool has seen before costs no allocation, where one scratch
    // tensor resized between sizes would reallocate every time.
    class Temporary {
    public:
        template <class S>
        Temporary(Sweep& s, const S& shape) : s_(s), at_(s.take_shaped(shape))
        {
        }
        ~Temporary() { s_.b_->free_list(tensor().size()).push_back(at_); }
        Temporary(const Temporary&) = delete;
        Temporary& operator=(const Temporary&) = delete;
        Tensor<T>& tensor() { return *s_.b_->pool[at_].tensor; }

    private:
        Sweep& s_;
        std::uint32_t at_;
    };

    Tensor<T>& scratch() { return b_->scratch; }
    Tensor<T>& read_scratch(std::size_t k)
    {
        while (b_->reads.size() <= k) b_->reads.emplace_back();
        return b_->reads[k];
    }
    Tensor<T>& output_read() { return b_->output_read; }
    Tensor<T>& scratch2() { return b_->scratch2; }

private:
    // A free buffer of n elements, the most recently freed, else a new one.
    std::uint32_t take(std::size_t n)
    {
        auto& b = *b_;
        auto& list = b.free_list(n);
        if (list.empty()) return grow();
        const std::uint32_t at = list.back();
        list.pop_back();
        auto& last = b.pool[at].last_sweep;
        b.used += last != b.sweeps;
        last = b.sweeps;
        return at;
    }
    // take() for a buffer shaped `shape`.
    template <class S>
    std::uint32_t take_shaped(const S& shape)
    {
        std::size_t n = 1;
        for (const auto d : shape) n *= d;
        const std::uint32_t at = take(n);
        Tensor<T>& a = *b_->pool[at].tensor;
        if (!equal_shapes(shape, a.shape())) a.resize(shape);
        return at;
    }
    std::uint32_t grow();
    void start();
    void back_up(Parameter<T>& p);

    detail::SweepBuffers<T>* b_;  // the tape's, given back at the end
    std::size_t out_;
    std::uint64_t locked_ = 0;  // stripes this sweep locked
    std::uint64_t id_ = 0;      // backward(): unique among sweeps, marks the parameters it wrote
};

template <class T>
Sweep<T>::Sweep(Tape<T>& t, std::size_t output, bool params)
    : tape(t), into_params(params), b_(t.lend_sweep_buffers()), out_(output)
{
    try {
        start();
    } catch (...) {
        t.return_sweep_buffers(b_);
        throw;
    }
    if (into_params) {
        const auto& leaves = t.param_leaves();
        std::uint64_t mask = t.param_mask();
        if (!leaves.empty() && leaves.back() > out_) {  // an output before some parameter leaf
            mask = 0;
            for (const auto i : leaves) {
                if (i > out_) break;
                mask |= detail::param_stripe(t.record(i).param);
            }
        }
        locked_ = detail::lock_param_stripes(mask);
        id_ = detail::sweep_ids.fetch_add(1, std::memory_order_relaxed);
    }
}

template <class T>
void Sweep<T>::start()
{
    auto& b = *b_;
    if (b.reached.size() < out_ + 1) {
        b.reached.resize(out_ + 1);
        b.adjoint_at.resize(out_ + 1);
    }
    std::fill(b.reached.begin(), b.reached.begin() + static_cast<std::ptrdiff_t>(out_ + 1), 0);
    ++b.sweeps;
    b.touched.clear();
    // Every pooled buffer is free again, and those unused for pool_keep sweeps are dropped:
    // none is when the last sweep took every one.
    if (b.used != b.pool.size())
        b.pool.erase(std::remove_if(b.pool.begin(), b.pool.end(),
                                    [&](const auto& p) { return b.sweeps - p.last_sweep > Tape<T>::pool_keep; }),
                     b.pool.end());
    b.used = 0;
    for (auto& l : b.free) l.at.clear();
    for (std::size_t k = b.pool.size(); k-- > 0;)
        b.free_list(b.pool[k].tensor->size()).push_back(static_cast<std::uint32_t>(k));
    // Sizes no pooled buffer has any more (a loop whose shapes change) leave the table.
    b.free.erase(std::remove_if(b.free.begin(), b.free.end(), [](const auto& l) { return l.at.empty(); }),
                 b.free.end());
}

template <class T>
std::uint32_t Sweep<T>::grow()
{
    auto& b = *b_;
    const auto at = static_cast<std::uint32_t>(b.pool.size());
    b.pool.push_back({std::make_unique<Tensor<T>>(), b.sweeps});
    ++b.used;
    return at;
}

template <class T>
void Sweep<T>::back_up(Parameter<T>& p)
{
    const std::uint32_t at = take(p.grad.size());
    Tensor<T>& copy = *b_->pool[at].tensor;
    if (copy.shape() != p.grad.shape()) copy.resize(p.grad.shape());
    std::copy(p.grad.begin(), p.grad.end(), copy.begin());
    b_->touched.push_back({&p, static_cast<std::int32_t>(at)});
}

template <class T>
void Sweep<T>::restore_params()
{
    // Last first: a parameter written again after a nested sweep wrote it has two entries.
    for (auto it = b_->touched.rbegin(); it != b_->touched.rend(); ++it) {
        const Tensor<T>& copy = *b_->pool[static_cast<std::size_t>(it->backup)].tensor;
        std::copy(copy.begin(), copy.end(), it->param->grad.begin());
    }
    b_->touched.clear();
    // Those that were zero or empty before this sweep first wrote them: that is the earliest
    // state, so it goes back last.
    for (const auto i : tape.param_leaves()) {
        if (i > out_) break;
        Parameter<T>& p = *tape.record(i).param;
        if (p.zeroed_before != id_ || !id_) continue;
        if (p.found_empty) p.zero_grad();
        else p.zero_grad(fill_zeros);
    }
}

}  // namespace ad
