// The tape: one record per op in execution order, and the handles (Var) that point into it.
//
// A record holds the op's output value, the records it read, and a pointer to its
// vector-Jacobian product. The tape owns every record; a Var is an index plus the tape's
// generation, so a handle kept past clear() is detected instead of reading reused memory.
// clear() keeps the records' buffers, so a training loop that records the same ops every step
// allocates nothing for values after the first step.
#pragma once

#include "autodiff/tensor.hpp"

#include <cstdint>
#include <deque>

namespace ad {

template <class T>
class Tape;
template <class T>
struct Vjp;

// A trainable tensor that lives outside any tape and persists across steps. Its gradient
// accumulates over backward() calls until zero_grad(). `version` counts in-place updates
// (optimisers bump it) so that a backward pass through a value changed since it was recorded
// is refused rather than silently wrong.
template <class T>
struct Parameter {
    Tensor<T> value;
    Tensor<T> grad;
    std::uint64_t version = 0;

    Parameter() = default;
    explicit Parameter(Tensor<T> v);
    void zero_grad();
    void mark_modified() { ++version; }
};

namespace detail {

template <class T>
using VjpFn = void (*)(Vjp<T>&);

template <class T>
struct Record {
    const char* op = "";          // the op's name, for errors, anomaly reports and graphs
    VjpFn<T> vjp = nullptr;       // nullptr: a leaf, or an op none of whose inputs needs a gradient
    std::uint32_t first_input = 0;  // inputs are tape.inputs_[first_input, first_input + n_inputs)
    std::uint32_t n_inputs = 0;
    bool needs_grad = false;
    Parameter<T>* param = nullptr;  // a leaf that reads a parameter's value in place
    std::uint64_t param_version = 0;
    Tensor<T> value;                // the output (unused for parameter leaves)
    Tensor<T> saved;                // anything else the VJP reads (a mask, softmax probabilities)
    std::vector<std::ptrdiff_t> ints;  // integer attributes: axes, indices, shapes
    double a = 0, b = 0;               // scalar attributes: exponents, slopes, bounds
};

}  // namespace detail

// A handle to a value recorded on a tape. Cheap to copy; valid until the tape is cleared.
template <class T>
class Var {
public:
    Var() = default;
    Var(Tape<T>* tape, std::uint32_t index, std::uint64_t generation)
        : tape_(tape), index_(index), generation_(generation) {}

    const Tensor<T>& value() const;
    const typename Tensor<T>::shape_type& shape() const { return value().shape(); }
    std::size_t size() const { return value().size(); }
    std::size_t dimension() const { return value().dimension(); }
    T item() const;  // the value of a one-element tensor
    bool requires_grad() const;
    Tape<T>& tape() const;
    std::uint32_t index() const { return index_; }
    std::uint64_t generation() const { return generation_; }
    bool valid() const;  // recorded on a tape that has not been cleared since

private:
    Tape<T>* tape_ = nullptr;
    std::uint32_t index_ = 0;
    std::uint64_t generation_ = 0;
};

template <class T>
class Tape {
public:
    Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    // Leaves.
    Var<T> constant(const Tensor<T>& value);  // data: no gradient, no adjoint work
    Var<T> variable(const Tensor<T>& value);  // an input whose gradient grad() can return
    Var<T> param(Parameter<T>& p);            // reads p.value in place; backward() adds into p.grad

    // Forget every record, keeping their memory for the next step. Every Var recorded so far
    // becomes invalid, and using one raises ad::Error.
    void clear();

    std::size_t size() const { return n_; }  // records, leaves included
    std::uint64_t generation() const { return generation_; }

    // --- for ops and the reverse sweep ---
    detail::Record<T>& push(const char* op, std::initializer_list<Var<T>> inputs,
                            detail::VjpFn<T> vjp);
    detail::Record<T>& push(const char* op, const std::vector<Var<T>>& inputs,
                            detail::VjpFn<T> vjp);
    void pop();  // undo the last push (an op whose forward threw)
    detail::Record<T>& record(std::size_t i) { return records_[i]; }
    const detail::Record<T>& record(std::size_t i) const { return records_[i]; }
    const Tensor<T>& value(std::size_t i) const
    {
        const auto& r = records_[i];
        return r.param ? r.param->value : r.value;
    }
    std::uint32_t input(const detail::Record<T>& r, std::size_t k) const
    {
        return inputs_[r.first_input + k];
    }
    void check(const Var<T>& v, const char* op) const;  // same tape, current generation

    // Adjoint storage, indexed like the records. When `into_params` is set (backward()),
    // a parameter leaf's adjoint is the parameter's own .grad, so no extra pass is needed.
    Tensor<T>& adjoint(std::size_t i) { return adjoints_[i]; }
    std::vector<char>& has_adjoint() { return has_adjoint_; }
    bool into_params = false;
    Tensor<T> scratch, scratch2;  // reused by broadcasting reductions in the sweep

private:
    template <class Inputs>
    detail::Record<T>& push_impl(const char* op, const Inputs& inputs, detail::VjpFn<T> vjp);
    detail::Record<T>& leaf(const char* op, bool needs_grad);

    std::deque<detail::Record<T>> records_;  // a deque: references stay valid as it grows
    std::size_t n_ = 0;
    std::vector<std::uint32_t> inputs_;
    std::vector<Tensor<T>> adjoints_;
    std::vector<char> has_adjoint_;
    std::uint64_t generation_;
};

// Ops compute values and record nothing that needs a gradient while a NoGrad is alive on this
// thread (their outputs are constants on the tape).
class NoGrad {
public:
    NoGrad();
    ~NoGrad();
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;

private:
    bool previous_;
};
bool grad_enabled();

extern template struct Parameter<float>;
extern template struct Parameter<double>;
extern template class Var<float>;
extern template class Var<double>;
extern template class Tape<float>;
extern template class Tape<double>;

}  // namespace ad
