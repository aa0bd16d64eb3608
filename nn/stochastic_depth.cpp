#include "nn/stochastic_depth.hpp"

#include "autodiff/checkpoint.hpp"

#include <xtensor/xview.hpp>

namespace ad::nn {

template <class T>
StochasticDepth<T>::StochasticDepth(T p, std::uint64_t seed) : p_(p), rng_(std::make_shared<Rng>(seed))
{
    if (!(p >= T(0) && p < T(1)))
        throw Error("StochasticDepth: probability p = " + std::to_string(p) + " is outside [0, 1)");
}

template <class T>
StochasticDepth<T>::StochasticDepth(std::shared_ptr<Module<T>> branch, T p, std::uint64_t seed)
    : StochasticDepth(p, seed)
{
    branch_ = &this->register_module("branch", std::move(branch));
}

template <class T>
Var<T> StochasticDepth<T>::forward(const Var<T>& x)
{
    const Var<T> y = branch_ ? branch_->forward(x) : x;
    if (!this->training() || p_ == T(0)) return y;
    std::bernoulli_distribution kept(1.0 - double(p_));
    mask_ = Tensor<T>(y.shape());
    preserve_rng_state(rng_);  // a checkpoint around this pass reruns it with the same draws
    if (y.dimension() < 2) {
        mask_.fill(kept(*rng_) ? T(1) : T(0));
    } else {
        for (std::size_t b = 0; b < y.shape()[0]; ++b)
            xt::view(mask_, b) = kept(*rng_) ? T(1) : T(0);
    }
    return dropout(y, mask_, p_);
}

template class StochasticDepth<float>;
template class StochasticDepth<double>;

}  // namespace ad::nn
