#include "nn/schedule.hpp"

#include <cmath>
#include <cstdio>
#include <string>

namespace ad::nn {

namespace {
std::string num(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}
}  // namespace

double step_lr(double base, std::uint64_t epoch, std::uint64_t step_size, double gamma)
{
    if (step_size == 0) throw Error("step_lr: step_size must be at least 1");
    return base * std::pow(gamma, double(epoch / step_size));
}

double cosine_lr(double base, std::uint64_t epoch, std::uint64_t t_max, double eta_min)
{
    if (t_max == 0) throw Error("cosine_lr: t_max must be at least 1");
    const double pi = 3.14159265358979323846;
    return eta_min + (base - eta_min) * (1 + std::cos(double(epoch) * pi / double(t_max))) / 2;
}

double warmup_cosine_lr(double base, std::uint64_t step, std::uint64_t warmup, std::uint64_t total, double eta_min)
{
    if (warmup >= total)
        throw Error("warmup_cosine_lr: the warm-up (" + std::to_string(warmup) + " steps) must be shorter than the " +
                    std::to_string(total) + " steps in all");
    if (step < warmup) return base * double(step + 1) / double(warmup);
    if (step > total) return eta_min;
    return cosine_lr(base, step - warmup, total - warmup, eta_min);
}

template <class T>
void LRScheduler<T>::set_epoch(std::uint64_t epoch)
{
    const double lr = lr_at(epoch);
    opt_.set_lr(lr);  // validates before the epoch moves
    epoch_ = epoch;
}

template <class T>
StepLR<T>::StepLR(Optimizer<T>& optimizer, std::uint64_t step_size, double gamma)
    : LRScheduler<T>(optimizer), step_size_(step_size), gamma_(gamma)
{
    if (step_size == 0) throw Error("StepLR: step_size must be at least 1");
    if (!std::isfinite(gamma) || gamma < 0) throw Error("StepLR: gamma must be finite and >= 0, got " + num(gamma));
}

template <class T>
CosineLR<T>::CosineLR(Optimizer<T>& optimizer, std::uint64_t t_max, double eta_min)
    : LRScheduler<T>(optimizer), t_max_(t_max), eta_min_(eta_min)
{
    if (t_max == 0) throw Error("CosineLR: t_max must be at least 1");
    if (!std::isfinite(eta_min) || eta_min < 0)
        throw Error("CosineLR: eta_min must be finite and >= 0, got " + num(eta_min));
}

template <class T>
WarmupCosineLR<T>::WarmupCosineLR(Optimizer<T>& optimizer, std::uint64_t warmup, std::uint64_t total, double eta_min)
    : LRScheduler<T>(optimizer), warmup_(warmup), total_(total), eta_min_(eta_min)
{
    if (warmup >= total)
        throw Error("WarmupCosineLR: the warm-up (" + std::to_string(warmup) + " steps) must be shorter than the " +
                    std::to_string(total) + " steps in all");
    if (!std::isfinite(eta_min) || eta_min < 0)
        throw Error("WarmupCosineLR: eta_min must be finite and >= 0, got " + num(eta_min));
    this->set_epoch(0);
}

template class LRScheduler<float>;
template class LRScheduler<double>;
template class StepLR<float>;
template class StepLR<double>;
template class CosineLR<float>;
template class CosineLR<double>;
template class WarmupCosineLR<float>;
template class WarmupCosineLR<double>;

}  // namespace ad::nn
