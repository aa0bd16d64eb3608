// Residual connections (seed 002): z_{j+1} = z_j + f(z_j). With f(0) = 0 at zero weights the
// block is the identity, so extra depth can do no harm, and the gradient reaches z_j through
// the identity term whatever f's Jacobian is.
#pragma once

#include "nn/activation.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"

#include <memory>

namespace ad::nn {

// z + f(z) for any branch f whose output has its input's shape (child "branch").
template <class T>
class Residual : public Module<T> {
public:
    explicit Residual(std::shared_ptr<Module<T>> branch);
    Var<T> forward(const Var<T>& x) override;
    Module<T>& branch() { return *branch_; }

private:
    Module<T>* branch_;
};

// The MLP builder's block: z + drop_path(dropout(act(norm(linear(z))))), each step optional
// except the linear layer and the activation. Children, in order: "linear", "norm" (LayerNorm,
// if asked), "act", "dropout" (if p != 0), "drop_path" (StochasticDepth, if p != 0); so parameter
// names ("blocks.3.linear.weight", "blocks.3.norm.weight") do not depend on the options without
// parameters. The linear layer must map a width to itself.
template <class T>
class ResidualBlock : public Module<T> {
public:
    ResidualBlock(std::shared_ptr<Linear<T>> linear, std::shared_ptr<Module<T>> activation, bool layer_norm,
                  T dropout, T drop_path, Rng& rng);
    Var<T> forward(const Var<T>& x) override;

private:
    Module<T>* linear_;
    Module<T>* norm_ = nullptr;
    Module<T>* act_;
    Module<T>* dropout_ = nullptr;
    Module<T>* drop_path_ = nullptr;
};

extern template class Residual<float>;
extern template class Residual<double>;
extern template class ResidualBlock<float>;
extern template class ResidualBlock<double>;

}  // namespace ad::nn
