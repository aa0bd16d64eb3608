#include "nn/dropout.hpp"

#include "autodiff/checkpoint.hpp"

namespace ad::nn {

template <class T>
Tensor<T> bernoulli_mask(const Shape& shape, double keep, Rng& rng)
{
    Tensor<T> m(shape);
    std::bernoulli_distribution kept(keep);
    for (auto& v : m) v = kept(rng) ? T(1) : T(0);
    return m;
}

template <class T>
Dropout<T>::Dropout(T p, std::uint64_t seed) : p_(p), rng_(std::make_shared<Rng>(seed))
{
    if (!(p >= T(0) && p < T(1)))
        throw Error("Dropout: probability p = " + std::to_string(p) + " is outside [0, 1)");
}

template <class T>
Var<T> Dropout<T>::forward(const Var<T>& x)
{
    if (!this->training() || p_ == T(0)) return x;
    preserve_rng_state(rng_);  // a checkpoint around this pass reruns it with the same mask
    mask_ = bernoulli_mask<T>(x.shape(), 1.0 - double(p_), *rng_);
    return dropout(x, mask_, p_);
}

template class Dropout<float>;
template class Dropout<double>;
template Tensor<float> bernoulli_mask(const Shape&, double, Rng&);
template Tensor<double> bernoulli_mask(const Shape&, double, Rng&);

}  // namespace ad::nn
