// Gradient checkpointing (rematerialisation): trade compute for memory.
//
// checkpoint(f, inputs) runs the block f and records it on the inputs' tape as one op that keeps
// only its inputs and its output. What f computes inside lives on a scratch tape and is dropped
// after the forward pass; the op's VJP runs f again on the scratch tape and sweeps it. A chain of
// L blocks checkpointed every k blocks then holds L / k block outputs plus one stretch of k
// blocks, instead of every value of every block, for the price of a second forward pass.
//
//     for (std::size_t i = 0; i < blocks.size(); ++i)
//         h = ad::checkpoint([&, i](const std::vector<ad::Var<T>>& in) { return (*blocks[i])(in[0]); }, {h});
//
// The contract:
// - The op keeps a copy of f until the backward pass runs it again: what f captures by reference
//   (here `blocks`) must outlive the backward pass, so capture loop variables by value.
// - f computes its output from `inputs` (and parameters, which it may read with tape.param as
//   modules do) on the tape it is given. It must compute the same output each time it runs: the
//   VJP compares the recomputed output with the recorded one bit for bit and raises ad::Error if
//   they differ.
// - Random draws are replayed, as PyTorch's checkpoint does with preserve_rng_state: code that
//   keeps a generator across forward passes calls preserve_rng_state(rng) before drawing from it
//   (nn::Dropout and nn::StochasticDepth do). A checkpoint whose block does so keeps a copy of the
//   generator as it was before the block's first draw from it; the VJP sets the generator to that
//   copy, reruns the block, which so draws the same masks, and then sets the generator back to
//   where it was, so the stream of draws after the backward pass is the one without checkpoints.
//   The checkpoint holds the generator weakly: one destroyed before the backward pass (a module
//   made inside the block, which the rerun makes afresh) is left alone. A block that draws from a
//   kept generator without calling preserve_rng_state draws new values when it reruns: wrong
//   gradients, caught by the output comparison only when the output depends on the draws.
// - backward() adds into the .grad of every parameter f reads; grad() and vjp() return gradients
//   for the inputs. The gradients are bit for bit those of the same blocks without checkpoints
//   when each block's input is read only by the block. Parameters read inside a checkpoint are
//   not reported to backward()'s on_grad_ready hook (nn::DataParallel still averages them, after
//   the sweep instead of during it), and a create_graph sweep through a checkpoint is refused
//   (the op has no differentiable VJP).
// - A module that updates state in its forward pass (batch norm's running statistics in training
//   mode) updates it again when the block reruns.
// - f may itself use checkpoint (nested blocks).
#pragma once

#include "autodiff/backward.hpp"
#include "autodiff/tape.hpp"

#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

namespace ad {

namespace detail {

// A generator's state, kept so that it can be put back, while the generator exists.
class SavedRng {
public:
    explicit SavedRng(std::weak_ptr<void> generator) : generator_(std::move(generator)) {}
    virtual ~SavedRng() = default;
    bool is(const std::shared_ptr<void>& generator) const
    {
        return !generator_.owner_before(generator) && !generator.owner_before(generator_);
    }
    virtual std::unique_ptr<SavedRng> save_current() const = 0;  // the generator as it is now; null if gone
    virtual void restore() const = 0;                            // the generator as it was saved, if not gone

protected:
    std::weak_ptr<void> generator_;
};

template <class Engine>
class SavedRngOf final : public SavedRng {
public:
    explicit SavedRngOf(const std::shared_ptr<Engine>& e) : SavedRng(e), state_(*e) {}
    std::unique_ptr<SavedRng> save_current() const override
    {
        const auto e = std::static_pointer_cast<Engine>(generator_.lock());
        return e ? std::make_unique<SavedRngOf>(e) : nullptr;
    }
    void restore() const override
    {
        if (const auto e = generator_.lock()) *static_cast<Engine*>(e.get()) = state_;
    }

private:
    Engine state_;
};

// The generators a block drew from in its forward pass, each as it was before the first draw.
struct RngStates {
    std::vector<std::unique_ptr<SavedRng>> saved;
    RngStates* outer = nullptr;  // the enclosing block's, when a block runs inside another
};

// The innermost block running its forward pass on this thread, or null.
inline thread_local RngStates* recording_rng_states = nullptr;

}  // namespace detail

// Called before drawing from `rng` in a forward pass, so that a checkpoint around the caller
// replays the same draws when it reruns its block (see above). Outside a checkpoint's forward
// pass it does nothing.
template <class Engine>
void preserve_rng_state(const std::shared_ptr<Engine>& rng)
{
    if (!rng) throw Error("preserve_rng_state: the generator is null");
    // Every enclosing block reruns this draw too; once a block has the generator, the blocks
    // around it got it at the same time or earlier.
    for (detail::RngStates* s = detail::recording_rng_states; s; s = s->outer) {
        for (const auto& saved : s->saved)
            if (saved->is(rng)) return;
        s->saved.push_back(std::make_unique<detail::SavedRngOf<Engine>>(rng));
    }
}

template <class T>
using BlockFn = typename NonDeduced<std::function<Var<T>(const std::vector<Var<T>>&)>>::type;

template <class T>
Var<T> checkpoint(const BlockFn<T>& f, const std::vector<Var<T>>& inputs);
template <class T>
Var<T> checkpoint(const BlockFn<T>& f, std::initializer_list<Var<T>> inputs)
{
    return checkpoint(f, std::vector<Var<T>>(inputs));
}

}  // namespace ad
