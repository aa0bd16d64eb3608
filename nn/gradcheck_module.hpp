// gradcheck for a whole model: the gradient of a loss with respect to a module's named
// parameters, from one backward pass, against central differences of the loss, each
// parameter element perturbed in place. The report names the parameter ("blocks.1.norm.weight")
// and the element. The loss must be deterministic (fix dropout masks, use eval mode or a
// reseeded generator); parameter values are restored afterwards and their .grad is left zeroed.
// Every evaluation is recorded on a tape cleared before it, so the loss may itself take
// gradients (a gradient penalty, with ad::create_graph).
#pragma once

#include "autodiff/gradcheck.hpp"
#include "nn/module.hpp"

#include <functional>

namespace ad::nn {

template <class T>
using ModuleLoss = std::function<Var<T>(Module<T>& model, Tape<T>& tape)>;

// T must be double (see ad::gradcheck). Frozen parameters (requires_grad_(false)) are left out.
template <class T>
GradcheckResult gradcheck_module(Module<T>& model, const ModuleLoss<T>& loss, GradcheckOptions options = {});

extern template GradcheckResult gradcheck_module(Module<float>&, const ModuleLoss<float>&, GradcheckOptions);
extern template GradcheckResult gradcheck_module(Module<double>&, const ModuleLoss<double>&, GradcheckOptions);

}  // namespace ad::nn
