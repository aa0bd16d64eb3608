// Saving a model to disk and loading it back: its parameters and buffers, and optionally an
// optimiser's state, in one .npz file that numpy.load reads (nn/npz.hpp).
//
// Keys are the model's own names: "0.weight", "blocks.3.norm.weight" (named_parameters()) and
// "bn.running_mean" (named_buffers()). With an optimiser: "optim.step" (the step count) and
// "optim.lr" (the learning rate), both float64 scalars, and "optim.<state>.<parameter name>"
// for each state tensor (named_state(): "optim.exp_avg.0.weight", "optim.momentum_buffer.0.weight").
// Tensors are stored as '<f4' for a float model and '<f8' for a double one; either loads into
// either, and so does '<i8'. The keys and shapes are PyTorch's state-dict keys, so a PyTorch state
// dict saved with numpy.savez loads into the twin model as it is, and load_state_dict(strict=True)
// takes what save() writes (tests/test_state_dict.cpp).
//
// Saving writes a temporary file in the target's directory and renames it over the target: if
// anything fails midway, the previous file is still there, whole.
// Loading reads and checks the whole file first: a corrupt file, a missing tensor, a tensor the
// model does not have, or a tensor of the wrong shape raises ad::Error listing every problem,
// and the model and optimiser are left exactly as they were. Only then are values replaced
// (parameters through set_value(), which counts the change). Loading into a model without an
// optimiser ignores the "optim." entries, so a model saved during training also
// loads for evaluation.
#pragma once

#include "nn/module.hpp"
#include "nn/optim.hpp"

#include <string>

namespace ad::nn {

template <class T>
void save(Module<T>& model, const std::string& path);
template <class T>
void save(Module<T>& model, Optimizer<T>& optimizer, const std::string& path);
template <class T>
void load(Module<T>& model, const std::string& path);
template <class T>
void load(Module<T>& model, Optimizer<T>& optimizer, const std::string& path);

// Parameters without a module (the names are the keys).
template <class T>
void save(const NamedParameters<T>& params, const std::string& path);
template <class T>
void load(const NamedParameters<T>& params, const std::string& path);

}  // namespace ad::nn
