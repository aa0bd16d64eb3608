// Learning-rate schedules: PyTorch's StepLR and CosineAnnealingLR, in closed form, and a linear
// warm-up followed by a cosine decay (the usual schedule for transformers).
//
//   step:    lr(e) = base * gamma^floor(e / step_size)
//   cosine:  lr(e) = eta_min + (base - eta_min) (1 + cos(pi e / t_max)) / 2
//   warm-up then cosine, over `total` steps of which the first `warmup` warm up:
//            lr(e) = base (e + 1) / warmup                                         e < warmup
//            lr(e) = eta_min + (base - eta_min) (1 + cos(pi (e - warmup) / (total - warmup))) / 2
//                                                                                  warmup <= e <= total
//            lr(e) = eta_min                                                       e > total
//            (the first step already has a rate, base / warmup; the rate is base at warmup - 1
//            and at warmup, and reaches eta_min after the last step)
//
// e counts scheduler steps (usually epochs). A scheduler takes the optimiser's learning rate when
// it is made as `base`, and each step() sets the optimiser's rate for the next epoch. PyTorch
// updates these rates recursively from the current one; the closed forms are the same numbers
// (to rounding) as long as nothing else changes the rate in between. Past t_max the cosine rises
// again, as PyTorch's does.
#pragma once

#include "nn/optim.hpp"

#include <cstdint>

namespace ad::nn {

double step_lr(double base, std::uint64_t epoch, std::uint64_t step_size, double gamma);
double cosine_lr(double base, std::uint64_t epoch, std::uint64_t t_max, double eta_min);
// Throws ad::Error unless warmup < total.
double warmup_cosine_lr(double base, std::uint64_t step, std::uint64_t warmup, std::uint64_t total, double eta_min);

template <class T>
class LRScheduler {
public:
    explicit LRScheduler(Optimizer<T>& optimizer) : opt_(optimizer), base_(optimizer.lr()) {}
    virtual ~LRScheduler() = default;

    virtual double lr_at(std::uint64_t epoch) const = 0;
    void step() { set_epoch(epoch_ + 1); }
    // Jump to an epoch (resuming a run) and set the optimiser's rate for it.
    void set_epoch(std::uint64_t epoch);
    std::uint64_t epoch() const { return epoch_; }
    double base_lr() const { return base_; }

protected:
    Optimizer<T>& opt_;
    double base_;
    std::uint64_t epoch_ = 0;
};

template <class T>
class StepLR : public LRScheduler<T> {
public:
    StepLR(Optimizer<T>& optimizer, std::uint64_t step_size, double gamma = 0.1);
    double lr_at(std::uint64_t epoch) const override { return step_lr(this->base_, epoch, step_size_, gamma_); }

private:
    std::uint64_t step_size_;
    double gamma_;
};

template <class T>
class CosineLR : public LRScheduler<T> {
public:
    CosineLR(Optimizer<T>& optimizer, std::uint64_t t_max, double eta_min = 0);
    double lr_at(std::uint64_t epoch) const override { return cosine_lr(this->base_, epoch, t_max_, eta_min_); }

private:
    std::uint64_t t_max_;
    double eta_min_;
};

// Sets the optimiser's rate for step 0 when made (base / warmup, unlike the two above, whose rate
// at epoch 0 is the base): step() after each optimiser step.
template <class T>
class WarmupCosineLR : public LRScheduler<T> {
public:
    WarmupCosineLR(Optimizer<T>& optimizer, std::uint64_t warmup, std::uint64_t total, double eta_min = 0);
    double lr_at(std::uint64_t step) const override
    {
        return warmup_cosine_lr(this->base_, step, warmup_, total_, eta_min_);
    }

private:
    std::uint64_t warmup_, total_;
    double eta_min_;
};

extern template class LRScheduler<float>;
extern template class LRScheduler<double>;
extern template class StepLR<float>;
extern template class StepLR<double>;
extern template class CosineLR<float>;
extern template class CosineLR<double>;
extern template class WarmupCosineLR<float>;
extern template class WarmupCosineLR<double>;

}  // namespace ad::nn
