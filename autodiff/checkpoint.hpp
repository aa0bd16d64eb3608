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
//   they differ (a random op such as dropout draws new values on each run).
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
#include <vector>

namespace ad {

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
