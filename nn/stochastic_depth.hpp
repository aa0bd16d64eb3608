// Stochastic depth (seed 002's "layer dropout"): in training, drop a whole residual branch with
// probability p, so that z + f(z) becomes z for that example, and scale a kept branch by
// 1 / (1 - p); then E[output] is the branch itself and evaluation uses the branch unchanged.
//
// The choice is made per example (one Bernoulli(1 - p) draw per row of the batch, the first
// axis; an input without a batch axis is one example): each example trains its own random
// depth, as dropout does for units. Implemented as ad::dropout with a mask that is constant
// along each row, so the gradient is the same composition of tape ops as the forward pass.
//
// Two forms: StochasticDepth(branch, p, seed) wraps a branch and returns its dropped output
// (child "branch"), for Residual(StochasticDepth(f, p, seed)) = z + drop(f(z));
// StochasticDepth(p, seed) drops its own input, for use as the last step of a branch.
#pragma once

#include "nn/module.hpp"

#include <memory>

namespace ad::nn {

template <class T>
class StochasticDepth : public Module<T> {
public:
    StochasticDepth(T p, std::uint64_t seed);
    StochasticDepth(std::shared_ptr<Module<T>> branch, T p, std::uint64_t seed);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "StochasticDepth(p=" + detail::number_str(double(p_)) + ")"; }

    T p() const { return p_; }
    void seed(std::uint64_t s) { rng_->seed(s); }  // restart the sequence of draws
    const Tensor<T>& last_mask() const { return mask_; }

private:
    Module<T>* branch_ = nullptr;
    T p_;
    std::shared_ptr<Rng> rng_;  // shared so that a checkpoint can hold it weakly (ad::preserve_rng_state)
    Tensor<T> mask_;
};

extern template class StochasticDepth<float>;
extern template class StochasticDepth<double>;

}  // namespace ad::nn
