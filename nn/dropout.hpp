// Dropout with drop probability p (inverted dropout).
//
// Training: each forward pass draws one mask m, m_i ~ Bernoulli(1 - p) (1 = kept), from the
// module's own seeded generator and returns x * m / (1 - p) through ad::dropout, so the
// gradient flows only through kept units, scaled the same way. Evaluation: the identity.
//
// Seed 002 instead keeps the training output x * m unscaled and multiplies by the keep
// probability at prediction ("use scaled rho sigma in prediction", its rho being the keep
// probability). The two agree in expectation: E[x m / (1 - p)] = x, which is what inverted
// dropout predicts with, and E[x m] = (1 - p) x, which is what seed 002 predicts with. Each
// network's prediction is the mean of its own training outputs; the two networks differ only
// by the constant factor 1 / (1 - p) on the dropped layer's output, which the next layer's
// weights absorb. Scaling in training leaves prediction untouched (eval needs no change).
#pragma once

#include "nn/module.hpp"

#include <memory>

namespace ad::nn {

template <class T>
class Dropout : public Module<T> {
public:
    Dropout(T p, std::uint64_t seed);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Dropout(p=" + detail::number_str(double(p_)) + ")"; }

    T p() const { return p_; }
    // Restart the mask sequence, so the next forward pass draws the same masks as after
    // construction with this seed (for a function that must be deterministic, as in gradcheck).
    void seed(std::uint64_t s) { rng_->seed(s); }
    const Tensor<T>& last_mask() const { return mask_; }  // the mask of the last training pass

private:
    T p_;
    std::shared_ptr<Rng> rng_;  // shared so that a checkpoint can hold it weakly (ad::preserve_rng_state)
    Tensor<T> mask_;
};

// A 0/1 mask of the given shape with P(1) = keep, from rng.
template <class T>
Tensor<T> bernoulli_mask(const Shape& shape, double keep, Rng& rng);

extern template class Dropout<float>;
extern template class Dropout<double>;
extern template Tensor<float> bernoulli_mask(const Shape&, double, Rng&);
extern template Tensor<double> bernoulli_mask(const Shape&, double, Rng&);

}  // namespace ad::nn
