// Optimisers: SGD (momentum, dampening, Nesterov), Adam (optionally AMSGrad) and AdamW.
//
// Each update rule is PyTorch's (torch.optim, single-tensor path), operation for operation, so
// the same gradients give the same parameters to rounding; tests/fixtures/make_optim_fixtures.py
// records PyTorch's trajectories and tests/test_optim.cpp replays them.
//
//   SGD:   d = g + wd p;  buf = d (first step) or momentum buf + (1 - dampening) d;
//          d = d + momentum buf (Nesterov) or buf;  p -= lr d
//   Adam:  g = g + wd p;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//          (AMSGrad: vmax = max(vmax, v), used for v below)
//          p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//   AdamW: p *= 1 - lr wd, then Adam without the wd term (decoupled weight decay).
//
// Weight decay applies only to the parameters a selector picks. The default, is_weight_matrix,
// follows seed 001 ("add squared Frobenius norms of the weight matrices excluding the biases");
// it is the rule the weight constraints of nn/clip.hpp use too.
// For SGD and Adam the decay is the L2 term (wd/2) ||W||_F^2 added to the loss, i.e. wd W added to
// the gradient; AdamW shrinks the weights directly. Pass decay_all<T> (or any predicate) to choose.
//
// A parameter's value must keep its shape for the optimiser's lifetime: step() checks every
// parameter's gradient and state shapes against its value before updating any, and a resized
// parameter raises ad::Error naming the optimiser, the parameter and both shapes.
//
// A frozen parameter (requires_grad_(false)) is skipped by step(): its value, .grad and state stay
// as they are, and its step count (Adam's t) is the optimiser's, as in PyTorch.
//
// step() reads each parameter's .grad and updates its value in place through mutable_value(),
// which counts the change, so a tape recorded before the step refuses to run backward through
// the old values.
#pragma once

#include "nn/module.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ad::nn {

template <class T>
using NamedParameters = std::vector<std::pair<std::string, Parameter<T>*>>;

// Chooses the parameters that weight decay applies to.
template <class T>
using DecaySelector = std::function<bool(const std::string& name, const Parameter<T>& p)>;

// The one rule for "a weight matrix" (weight decay's default, the constraints of nn/clip.hpp): a
// parameter of rank >= 2 whose last name component is not "bias". A convolution kernel
// [out, in, kh, kw] is one: it acts as the matrix [out, in kh kw] on the unfolded input, and is
// decayed and constrained as that matrix (as spectral normalisation does for convolutions). The
// rank rule exempts the LayerNorm/BatchNorm scales ("weight", rank 1), which scale features
// rather than mix them.
template <class T>
bool is_weight_matrix(const std::string& name, const Parameter<T>& p);
template <class T>
bool decay_all(const std::string&, const Parameter<T>&) { return true; }

template <class T>
class Optimizer {
public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update of every parameter from its current .grad, written through mutable_value().
    // A parameter without a gradient (has_grad() false: no backward() reached it since
    // zero_grad()) is skipped, state and weight decay included, as PyTorch skips a None .grad;
    // each parameter counts its own updates (Adam's t), as PyTorch's per-parameter 'step' does.
    void step();
    // Empties every gradient (PyTorch's set_to_none=True); ad::fill_zeros makes them zeros.
    void zero_grad();
    void zero_grad(FillZeros);

    double lr() const { return lr_; }
    void set_lr(double lr);  // NaN, infinite or negative: ad::Error
    // Number of step() calls so far; setting it sets every parameter's update count too.
    std::uint64_t step_count() const { return steps_; }
    void set_step_count(std::uint64_t steps)
    {
        steps_ = steps;
        std::fill(updates_.begin(), updates_.end(), steps);
    }

    const NamedParameters<T>& parameters() const { return params_; }
    bool decays(std::size_t i) const { return decay_[i] != 0; }
    const char* name() const { return name_; }

    // Per-parameter state tensors, named "<state>.<parameter name>" ("exp_avg.0.weight"), each
    // shaped like its parameter. nn::save and nn::load store and restore them.
    virtual std::vector<std::pair<std::string, Tensor<T>*>> named_state() { return {}; }

protected:
    Optimizer(const char* name, NamedParameters<T> params, double lr, const DecaySelector<T>& decay);
    // Update parameter i; `decay` tells whether weight decay applies to it. updates(i) already
    // counts this update.
    virtual void update(std::size_t i, Parameter<T>& p, bool decay) = 0;
    // Zero-filled state, one tensor per parameter, shaped like it.
    std::vector<Tensor<T>> zeros_like_parameters() const;
    void check_hyper(const char* what, double v, double lo, double hi, bool hi_inclusive) const;
    // Throws unless parameter i's state tensors still have its value's shape: a parameter
    // resized after the optimiser was built would otherwise be stepped past (or short of) its
    // state. Called by step() for every parameter before any is updated; compares shapes only.
    virtual void check_state(std::size_t i) const { (void)i; }
    void check_state_shape(std::size_t i, const char* state, const Tensor<T>& t) const;

    const char* name_;
    NamedParameters<T> params_;
    std::vector<char> decay_;
    double lr_;
    std::uint64_t steps_ = 0;
    std::uint64_t updates(std::size_t i) const { return updates_[i]; }

private:
    std::vector<std::uint64_t> updates_;  // per parameter: the steps that updated it
};

struct SGDOptions {
    double lr = 1e-2;
    double momentum = 0;
    double dampening = 0;
    bool nesterov = false;  // needs momentum > 0 and dampening 0
    double weight_decay = 0;
};

template <class T>
class SGD : public Optimizer<T> {
public:
    SGD(NamedParameters<T> params, SGDOptions options, DecaySelector<T> decay = is_weight_matrix<T>);
    SGD(Module<T>& model, SGDOptions options, DecaySelector<T> decay = is_weight_matrix<T>)
        : SGD(model.named_parameters(), options, std::move(decay)) {}

    const SGDOptions& options() const { return o_; }
    // "momentum_buffer.<name>" when momentum > 0.
    std::vector<std::pair<std::string, Tensor<T>*>> named_state() override;

private:
    void update(std::size_t i, Parameter<T>& p, bool decay) override;
    void check_state(std::size_t i) const override;
    SGDOptions o_;
    std::vector<Tensor<T>> buf_;
};

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;
    bool amsgrad = false;
};

// The same fields; PyTorch's AdamW defaults to weight_decay 0.01.
struct AdamWOptions : AdamOptions {
    AdamWOptions() { weight_decay = 1e-2; }
};

template <class T>
class Adam : public Optimizer<T> {
public:
    Adam(NamedParameters<T> params, AdamOptions options, DecaySelector<T> decay = is_weight_matrix<T>);
    Adam(Module<T>& model, AdamOptions options, DecaySelector<T> decay = is_weight_matrix<T>)
        : Adam(model.named_parameters(), options, std::move(decay)) {}

    const AdamOptions& options() const { return o_; }
    // "exp_avg.<name>", "exp_avg_sq.<name>" and, with AMSGrad, "max_exp_avg_sq.<name>".
    std::vector<std::pair<std::string, Tensor<T>*>> named_state() override;

protected:
    Adam(const char* name, NamedParameters<T> params, AdamOptions options, const DecaySelector<T>& decay,
         bool decoupled);

private:
    void update(std::size_t i, Parameter<T>& p, bool decay) override;
    void check_state(std::size_t i) const override;
    AdamOptions o_;
    bool decoupled_;
    std::vector<Tensor<T>> m_, v_, vmax_;
};

template <class T>
class AdamW : public Adam<T> {
public:
    AdamW(NamedParameters<T> params, AdamWOptions options = {}, DecaySelector<T> decay = is_weight_matrix<T>)
        : Adam<T>("AdamW", std::move(params), options, decay, true) {}
    AdamW(Module<T>& model, AdamWOptions options = {}, DecaySelector<T> decay = is_weight_matrix<T>)
        : AdamW(model.named_parameters(), options, std::move(decay)) {}
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;
extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;
extern template class AdamW<float>;
extern template class AdamW<double>;

}  // namespace ad::nn
