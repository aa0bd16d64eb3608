// checkpoint: a block recorded as one op whose VJP runs the block again (autodiff/checkpoint.hpp).
#include "autodiff/checkpoint.hpp"

#include "autodiff/op.hpp"

#include <cstring>
#include <memory>

namespace ad {

namespace {

// The scratch tapes blocks run on, one per nesting depth on each thread. A block's values live
// on one between its start and its end, in the forward pass and again in its VJP; the tape keeps
// its buffers, so the next block of the same shape allocates nothing for them.
template <class T>
struct Scratch {
    std::vector<std::unique_ptr<Tape<T>>> tapes;
    std::size_t depth = 0;
};

template <class T>
class ScratchTape {
public:
    ScratchTape() : s_(state())
    {
        if (s_.tapes.size() == s_.depth) s_.tapes.push_back(std::make_unique<Tape<T>>());
        tape_ = s_.tapes[s_.depth++].get();
        tape_->clear();
    }
    ~ScratchTape()
    {
        tape_->clear();
        --s_.depth;
    }
    ScratchTape(const ScratchTape&) = delete;
    ScratchTape& operator=(const ScratchTape&) = delete;
    Tape<T>* operator->() { return tape_; }
    Tape<T>& operator*() { return *tape_; }

private:
    static Scratch<T>& state()
    {
        thread_local Scratch<T> s;
        return s;
    }
    Scratch<T>& s_;
    Tape<T>* tape_;
};

// Makes `states` the innermost block's for preserve_rng_state while the forward pass runs.
class RecordRngStates {
public:
    explicit RecordRngStates(detail::RngStates& states) : states_(states)
    {
        states_.outer = detail::recording_rng_states;
        detail::recording_rng_states = &states_;
    }
    ~RecordRngStates() { detail::recording_rng_states = states_.outer; }
    RecordRngStates(const RecordRngStates&) = delete;
    RecordRngStates& operator=(const RecordRngStates&) = delete;

private:
    detail::RngStates& states_;
};

using SavedRngs = std::vector<std::unique_ptr<detail::SavedRng>>;

// While the VJP reruns a block: each generator the block drew from (that still exists) is as it
// was before the forward pass drew, and afterwards as it was before the rerun. Blocks nested in the rerun keep
// states of their own, so none is recorded for an enclosing block meanwhile.
class ReplayRngStates {
public:
    explicit ReplayRngStates(const SavedRngs* saved) : outer_(detail::recording_rng_states)
    {
        if (saved) {
            now_.reserve(saved->size());
            for (const auto& s : *saved)
                if (auto current = s->save_current()) now_.push_back(std::move(current));
            for (const auto& s : *saved) s->restore();
        }
        detail::recording_rng_states = nullptr;
    }
    ~ReplayRngStates()
    {
        for (const auto& s : now_) s->restore();
        detail::recording_rng_states = outer_;
    }
    ReplayRngStates(const ReplayRngStates&) = delete;
    ReplayRngStates& operator=(const ReplayRngStates&) = delete;

private:
    SavedRngs now_;
    detail::RngStates* outer_;
};

template <class T>
using Block = std::function<Var<T>(const std::vector<Var<T>>&)>;

// Runs the block on the scratch tape with copies of the inputs as its leaves: variables where
// `wants(k)`, constants elsewhere.
template <class T, class Value, class Wants>
Var<T> run(const Block<T>& f, Tape<T>& scratch, std::size_t n, Value value, Wants wants, const char* when)
{
    std::vector<Var<T>> xs;
    xs.reserve(n);
    for (std::size_t k = 0; k < n; ++k) xs.push_back(wants(k) ? scratch.variable(value(k)) : scratch.constant(value(k)));
    const Var<T> y = f(xs);
    if (!y.anchor() || &tape_of(y, "checkpoint") != &scratch)
        throw Error(std::string("checkpoint: the block returned a value not computed on the tape of the inputs it "
                                "was given (") + when + "); it must compute its output from them");
    return y;
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

template <class T>
Var<T> checkpoint(const BlockFn<T>& f, const std::vector<Var<T>>& inputs)
{
    if (!f) throw Error("checkpoint: the block is an empty function");
    auto block = std::make_shared<const Block<T>>(f);
    Op<T> op("checkpoint", inputs);
    Tape<T>& tape = op.tape();
    bool needs_grad;
    detail::RngStates rng_states;
    {
        const RecordRngStates record(rng_states);
        ScratchTape<T> scratch;
        const Var<T> y = run<T>(
            *block, *scratch, inputs.size(), [&](std::size_t k) -> const Tensor<T>& { return inputs[k].value(); },
            [&](std::size_t k) { return inputs[k].requires_grad(); }, "forward pass");
        op.out() = y.value();
        // Parameters read inside make the block need a gradient even when no input does.
        needs_grad = y.requires_grad();
    }
    tape.record(op.index()).needs_grad = needs_grad && grad_enabled();
    std::shared_ptr<const SavedRngs> rngs;
    if (!rng_states.saved.empty()) rngs = std::make_shared<const SavedRngs>(std::move(rng_states.saved));
    return op.done([block, rngs](Vjp<T>& v) {
        const EnableGrad on;  // recording on while the block reruns, even in a backward() under NoGrad
        const ReplayRngStates replay(rngs.get());
        ScratchTape<T> scratch;
        const Var<T> y = run<T>(
            *block, *scratch, v.inputs(), [&](std::size_t k) -> const Tensor<T>& { return v.x(k); },
            [&](std::size_t k) { return v.wants(k); }, "backward pass");
        if (!same_bits(y.value(), v.y))
            throw Error("checkpoint (tape position " + std::to_string(v.index) +
                        "): the block computed a different output when it ran again in the backward pass; "
                        "a checkpointed block must be deterministic (code that draws random numbers in it "
                        "must call ad::preserve_rng_state on its generator first, so that the rerun draws "
                        "the same ones)");
        if (!y.requires_grad()) return;
        // The block's leaves are the first records of the scratch tape, in input order.
        std::vector<Var<T>> xs;
        for (std::size_t k = 0; k < v.inputs(); ++k) xs.push_back(scratch->handle(k));
        // backward() adds into the .grad of the parameters the block reads
        const auto gs = v.sweep.into_params ? detail::backward_and_grad(y, v.g, xs) : vjp(y, v.g, xs, allow_unused);
        for (std::size_t k = 0; k < v.inputs(); ++k) v.acc(k, gs[k]);
    });
}
template Var<float> checkpoint(const BlockFn<float>&, const std::vector<Var<float>>&);
template Var<double> checkpoint(const BlockFn<double>&, const std::vector<Var<double>>&);

}  // namespace ad
