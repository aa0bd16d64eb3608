#include "nn/optim.hpp"

#include "autodiff/kernels/parallel.hpp"

#include <xtensor/xbuilder.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

namespace ad::nn {

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
std::string num(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}
}  // namespace

template <class T>
bool is_weight_matrix(const std::string& name, const Parameter<T>& p)
{
    const auto dot = name.rfind('.');
    const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
    return last != "bias" && p.value().dimension() >= 2;
}

template <class T>
Optimizer<T>::Optimizer(const char* name, NamedParameters<T> params, double lr, const DecaySelector<T>& decay)
    : name_(name), params_(std::move(params)), lr_(0), updates_(params_.size(), 0)
{
    set_lr(lr);
    std::set<const Parameter<T>*> seen_params;
    std::set<std::string> seen_names;
    for (const auto& [pname, p] : params_) {
        if (!p) throw Error(std::string(name_) + ": parameter '" + pname + "' is null");
        if (!seen_params.insert(p).second)
            throw Error(std::string(name_) + ": parameter '" + pname + "' is listed twice");
        if (!seen_names.insert(pname).second)
            throw Error(std::string(name_) + ": two parameters are named '" + pname + "'");
        decay_.push_back(decay ? char(decay(pname, *p)) : char(0));
    }
}

template <class T>
void Optimizer<T>::set_lr(double lr)
{
    if (!std::isfinite(lr) || lr < 0)
        throw Error(std::string(name_) + ": learning rate must be finite and >= 0, got " + num(lr));
    lr_ = lr;
}

template <class T>
void Optimizer<T>::check_hyper(const char* what, double v, double lo, double hi, bool hi_inclusive) const
{
    const bool ok = std::isfinite(v) && v >= lo && (hi_inclusive ? v <= hi : v < hi);
    if (!ok)
        throw Error(std::string(name_) + ": " + what + " must be " +
                    (hi == inf ? "finite and >= " + num(lo)
                               : "in [" + num(lo) + ", " + num(hi) + (hi_inclusive ? "]" : ")")) +
                    ", got " + num(v));
}

template <class T>
std::vector<Tensor<T>> Optimizer<T>::zeros_like_parameters() const
{
    std::vector<Tensor<T>> out;
    out.reserve(params_.size());
    for (const auto& e : params_) out.push_back(xt::zeros<T>(e.second->value().shape()));
    return out;
}

template <class T>
void Optimizer<T>::step()
{
    // Check every gradient first, so a bad one leaves all parameters as they were.
    for (const auto& [pname, p] : params_)
        if (p->requires_grad() && p->grad.size() != 0 && !p->has_grad())
            throw Error(std::string(name_) + "::step: parameter '" + pname + "' has value of shape " +
                        shape_str(p->value().shape()) + " but gradient of shape " + shape_str(p->grad.shape()) +
                        "; expected equal shapes");
    const auto stepped = [](const Parameter<T>& p) { return p.requires_grad() && p.has_grad(); };
    for (std::size_t i = 0; i < params_.size(); ++i)
        if (stepped(*params_[i].second)) check_state(i);
    ++steps_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!stepped(*params_[i].second)) continue;
        ++updates_[i];
        update(i, *params_[i].second, decay_[i] != 0);
    }
}

template <class T>
void Optimizer<T>::check_state_shape(std::size_t i, const char* state, const Tensor<T>& t) const
{
    const Parameter<T>& p = *params_[i].second;
    if (!equal_shapes(t.shape(), p.value().shape()))
        throw Error(std::string(name_) + "::step: parameter " + std::to_string(i) + " ('" + params_[i].first +
                    "') has value of shape " + shape_str(p.value().shape()) + " but its " + state +
                    " state has shape " + shape_str(t.shape()) +
                    "; a parameter must keep its shape after the optimiser is built (build a new optimiser "
                    "after resizing it)");
}

template <class T>
void Optimizer<T>::zero_grad()
{
    for (auto& e : params_) e.second->zero_grad();
}

template <class T>
void Optimizer<T>::zero_grad(FillZeros)
{
    for (auto& e : params_) e.second->zero_grad(fill_zeros);
}

// --- SGD ---

template <class T>
SGD<T>::SGD(NamedParameters<T> params, SGDOptions options, DecaySelector<T> decay)
    : Optimizer<T>("SGD", std::move(params), options.lr, decay), o_(options)
{
    this->check_hyper("momentum", o_.momentum, 0, inf, true);
    this->check_hyper("dampening", o_.dampening, 0, 1, true);
    this->check_hyper("weight_decay", o_.weight_decay, 0, inf, true);
    if (o_.nesterov && (o_.momentum <= 0 || o_.dampening != 0))
        throw Error("SGD: Nesterov momentum needs momentum > 0 and dampening 0, got momentum " +
                    num(o_.momentum) + " and dampening " + num(o_.dampening));
    if (o_.momentum != 0) buf_ = this->zeros_like_parameters();
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> SGD<T>::named_state()
{
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    for (std::size_t i = 0; i < buf_.size(); ++i) out.emplace_back("momentum_buffer." + this->params_[i].first, &buf_[i]);
    return out;
}

template <class T>
void SGD<T>::check_state(std::size_t i) const
{
    if (!buf_.empty()) this->check_state_shape(i, "momentum_buffer", buf_[i]);
}

template <class T>
void SGD<T>::update(std::size_t i, Parameter<T>& p, bool decay)
{
    const T wd = decay ? T(o_.weight_decay) : T(0);
    const T momentum = T(o_.momentum), keep = T(1 - o_.dampening), neg_lr = T(-this->lr_);
    const bool first = this->updates(i) == 1;
    T* w = p.mutable_value().data();
    const T* g = p.grad.data();
    T* buf = buf_.empty() ? nullptr : buf_[i].data();
    const bool nesterov = o_.nesterov;
    const std::size_t n = p.value().size();
    // Two loops, not a test of buf inside one: a vectorised loop may if-convert it into masked
    // loads from the null buffer, each a microcode assist on some processors.
    if (!buf) {
        kernels::parallel_for(n, 1, [=](std::size_t k0, std::size_t k1) {
            if (wd == 0)
                for (std::size_t k = k0; k < k1; ++k) w[k] = w[k] + neg_lr * g[k];
            else
                for (std::size_t k = k0; k < k1; ++k) w[k] = w[k] + neg_lr * (g[k] + wd * w[k]);
        });
        return;
    }
    kernels::parallel_for(n, 1, [=](std::size_t k0, std::size_t k1) {
        for (std::size_t k = k0; k < k1; ++k) {
            const T d = wd == 0 ? g[k] : g[k] + wd * w[k];
            buf[k] = first ? d : buf[k] * momentum + keep * d;
            w[k] = w[k] + neg_lr * (nesterov ? d + momentum * buf[k] : buf[k]);
        }
    });
}

// --- Adam, AdamW ---

template <class T>
Adam<T>::Adam(NamedParameters<T> params, AdamOptions options, DecaySelector<T> decay)
    : Adam("Adam", std::move(params), options, decay, false)
{
}

template <class T>
Adam<T>::Adam(const char* name, NamedParameters<T> params, AdamOptions options, const DecaySelector<T>& decay,
              bool decoupled)
    : Optimizer<T>(name, std::move(params), options.lr, decay), o_(options), decoupled_(decoupled)
{
    this->check_hyper("beta1", o_.beta1, 0, 1, false);
    this->check_hyper("beta2", o_.beta2, 0, 1, false);
    this->check_hyper("eps", o_.eps, 0, inf, true);
    this->check_hyper("weight_decay", o_.weight_decay, 0, inf, true);
    m_ = this->zeros_like_parameters();
    v_ = this->zeros_like_parameters();
    if (o_.amsgrad) vmax_ = this->zeros_like_parameters();
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> Adam<T>::named_state()
{
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    for (std::size_t i = 0; i < m_.size(); ++i) out.emplace_back("exp_avg." + this->params_[i].first, &m_[i]);
    for (std::size_t i = 0; i < v_.size(); ++i) out.emplace_back("exp_avg_sq." + this->params_[i].first, &v_[i]);
    for (std::size_t i = 0; i < vmax_.size(); ++i)
        out.emplace_back("max_exp_avg_sq." + this->params_[i].first, &vmax_[i]);
    return out;
}

template <class T>
void Adam<T>::check_state(std::size_t i) const
{
    this->check_state_shape(i, "exp_avg", m_[i]);
    this->check_state_shape(i, "exp_avg_sq", v_[i]);
    if (!vmax_.empty()) this->check_state_shape(i, "max_exp_avg_sq", vmax_[i]);
}

template <class T>
void Adam<T>::update(std::size_t i, Parameter<T>& p, bool decay)
{
    const double lr = this->lr_, wd = decay ? o_.weight_decay : 0.0;
    const double t = double(this->updates(i));
    // Scalars in double, as PyTorch computes them in Python.
    const T step_size = T(lr / (1 - std::pow(o_.beta1, t)));
    const T bc2_sqrt = T(std::sqrt(1 - std::pow(o_.beta2, t)));
    const T beta1 = T(o_.beta1), beta2 = T(o_.beta2), one_minus_beta1 = T(1 - o_.beta1),
            one_minus_beta2 = T(1 - o_.beta2), eps = T(o_.eps);
    const T coupled_wd = decoupled_ ? T(0) : T(wd);
    const T shrink = T(1 - lr * wd);
    const bool decoupled_decay = decoupled_ && wd != 0;

    T* w = p.mutable_value().data();
    const T* grad = p.grad.data();
    T* m = m_[i].data();
    T* v = v_[i].data();
    T* vmax = vmax_.empty() ? nullptr : vmax_[i].data();
    // AMSGrad's buffer as a compile-time choice: a test of the null vmax inside the loop may be
    // if-converted into masked loads from it (see SGD::update).
    const std::size_t n = p.value().size();
    auto run = [=](auto amsgrad) {
        kernels::parallel_for(n, 4, [=](std::size_t k0, std::size_t k1) {
            for (std::size_t k = k0; k < k1; ++k) {
                T g = grad[k];
                if (coupled_wd != 0) g = g + coupled_wd * w[k];
                if (decoupled_decay) w[k] = w[k] * shrink;
                m[k] = m[k] * beta1 + one_minus_beta1 * g;
                v[k] = v[k] * beta2 + one_minus_beta2 * g * g;
                T second = v[k];
                if constexpr (decltype(amsgrad)::value) second = vmax[k] = std::max(vmax[k], v[k]);
                const T denom = std::sqrt(second) / bc2_sqrt + eps;
                w[k] = w[k] - step_size * (m[k] / denom);
            }
        });
    };
    if (vmax) run(std::true_type{});
    else run(std::false_type{});
}

template bool is_weight_matrix<float>(const std::string&, const Parameter<float>&);
template bool is_weight_matrix<double>(const std::string&, const Parameter<double>&);
template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template class AdamW<float>;
template class AdamW<double>;

}  // namespace ad::nn
