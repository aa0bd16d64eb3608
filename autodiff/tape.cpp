#include "autodiff/tape.hpp"

#include <xtensor/xbuilder.hpp>

#include <atomic>

namespace ad {

namespace {
thread_local bool grad_mode = true;

// Generations are unique across all tapes, so a handle from one tape never matches another.
std::uint64_t next_generation()
{
    static std::atomic<std::uint64_t> counter{1};
    return counter++;
}
}  // namespace

NoGrad::NoGrad() : previous_(grad_mode) { grad_mode = false; }
NoGrad::~NoGrad() { grad_mode = previous_; }
bool grad_enabled() { return grad_mode; }

template <class T>
Parameter<T>::Parameter(Tensor<T> v) : value(std::move(v)), grad(xt::zeros<T>(value.shape()))
{
}

template <class T>
void Parameter<T>::zero_grad()
{
    if (grad.shape() != value.shape()) grad.resize(value.shape());
    grad.fill(T(0));
}

template <class T>
Tape<T>& Var<T>::tape() const
{
    if (!tape_) throw Error("Var: empty handle (default-constructed, never recorded on a tape)");
    return *tape_;
}

template <class T>
bool Var<T>::valid() const
{
    return tape_ && tape_->generation() == generation_ && index_ < tape_->size();
}

template <class T>
const Tensor<T>& Var<T>::value() const
{
    tape().check(*this, "value");
    return tape_->value(index_);
}

template <class T>
T Var<T>::item() const
{
    const auto& v = value();
    if (v.size() != 1)
        throw Error("item: needs a one-element tensor, got shape " + shape_str(v.shape()));
    return *v.begin();
}

template <class T>
bool Var<T>::requires_grad() const
{
    tape().check(*this, "requires_grad");
    return tape_->record(index_).needs_grad;
}

template <class T>
Tape<T>::Tape() : generation_(next_generation())
{
}

template <class T>
void Tape<T>::check(const Var<T>& v, const char* op) const
{
    if (&v.tape() != this)
        throw Error(std::string(op) + ": a Var recorded on another tape was used here; "
                                      "values from different tapes cannot be combined");
    if (v.generation() != generation_ || v.index() >= n_)
        throw Error(std::string(op) + ": a Var recorded before tape.clear() was used after it; "
                                      "handles are valid only until the tape is cleared");
}

template <class T>
void Tape<T>::clear()
{
    n_ = 0;
    inputs_.clear();
    generation_ = next_generation();
}

template <class T>
template <class Inputs>
detail::Record<T>& Tape<T>::push_impl(const char* op, const Inputs& inputs, detail::VjpFn<T> vjp)
{
    bool needs = false;
    for (const auto& v : inputs) {
        check(v, op);
        needs = needs || records_[v.index()].needs_grad;
    }
    needs = needs && grad_mode;
    auto& r = leaf(op, needs);
    r.vjp = needs ? vjp : nullptr;
    r.first_input = static_cast<std::uint32_t>(inputs_.size());
    r.n_inputs = static_cast<std::uint32_t>(inputs.size());
    for (const auto& v : inputs) inputs_.push_back(v.index());
    return r;
}

template <class T>
detail::Record<T>& Tape<T>::push(const char* op, std::initializer_list<Var<T>> inputs,
                                 detail::VjpFn<T> vjp)
{
    return push_impl(op, inputs, vjp);
}

template <class T>
detail::Record<T>& Tape<T>::push(const char* op, const std::vector<Var<T>>& inputs,
                                 detail::VjpFn<T> vjp)
{
    return push_impl(op, inputs, vjp);
}

template <class T>
detail::Record<T>& Tape<T>::leaf(const char* op, bool needs_grad)
{
    if (n_ == records_.size()) {
        records_.emplace_back();
        adjoints_.emplace_back();
        has_adjoint_.push_back(0);
    }
    auto& r = records_[n_++];
    r.op = op;
    r.vjp = nullptr;
    r.first_input = static_cast<std::uint32_t>(inputs_.size());
    r.n_inputs = 0;
    r.needs_grad = needs_grad;
    r.param = nullptr;
    r.ints.clear();
    r.a = r.b = 0;
    return r;
}

template <class T>
void Tape<T>::pop()
{
    --n_;
    inputs_.resize(records_[n_].first_input);
}

template <class T>
Var<T> Tape<T>::constant(const Tensor<T>& value)
{
    auto& r = leaf("constant", false);
    r.value = value;
    return Var<T>(this, static_cast<std::uint32_t>(n_ - 1), generation_);
}

template <class T>
Var<T> Tape<T>::variable(const Tensor<T>& value)
{
    auto& r = leaf("variable", grad_mode);
    r.value = value;
    return Var<T>(this, static_cast<std::uint32_t>(n_ - 1), generation_);
}

template <class T>
Var<T> Tape<T>::param(Parameter<T>& p)
{
    if (p.grad.shape() != p.value.shape()) p.zero_grad();
    auto& r = leaf("param", grad_mode);
    r.param = &p;
    r.param_version = p.version;
    return Var<T>(this, static_cast<std::uint32_t>(n_ - 1), generation_);
}

template struct Parameter<float>;
template struct Parameter<double>;
template class Var<float>;
template class Var<double>;
template class Tape<float>;
template class Tape<double>;

}  // namespace ad
