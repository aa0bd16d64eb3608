// What an op's definition needs: a recorder for the forward pass and the context its VJP
// receives in the reverse sweep. Internal: included by the ops' .cpp files, never by users.
//
// An op reads as
//
//     // d tanh(x) = (1 - y^2) dx
//     template <class T>
//     Var<T> tanh(const Var<T>& x)
//     {
//         Op<T> op("tanh", {x}, [](Vjp<T>& v) { v.acc(0, v.g * (T(1) - v.y * v.y)); });
//         xt::noalias(op.out()) = xt::tanh(x.value());
//         return op.done();
//     }
#pragma once

#include "autodiff/anomaly.hpp"
#include "autodiff/tape.hpp"

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xreducer.hpp>

namespace ad {

// dst[j] = sum_i src[i * inner + j] for a row-major [outer, inner] block. Independent partial
// sums keep the loop vectorisable and shorten float rounding chains.
template <class T>
void sum_rows(const T* src, std::size_t outer, std::size_t inner, T* dst)
{
    if (inner == 1) {
        constexpr std::size_t L = 16;
        T part[L] = {};
        std::size_t i = 0;
        for (; i + L <= outer; i += L)
            for (std::size_t l = 0; l < L; ++l) part[l] += src[i + l];
        T total = 0;
        for (; i < outer; ++i) total += src[i];
        for (std::size_t l = 0; l < L; ++l) total += part[l];
        *dst = total;
        return;
    }
    if (outer == 0) {
        std::fill_n(dst, inner, T(0));
        return;
    }
    std::copy_n(src, inner, dst);
    for (std::size_t i = 1; i < outer; ++i)
        for (std::size_t j = 0; j < inner; ++j) dst[j] += src[i * inner + j];
}

// dst[j] += sum_i src[i * inner + j], as sum_rows but adding into dst.
template <class T>
void add_rows(const T* src, std::size_t outer, std::size_t inner, T* dst)
{
    if (inner == 1) {
        T total;
        sum_rows(src, outer, 1, &total);
        *dst += total;
        return;
    }
    for (std::size_t i = 0; i < outer; ++i)
        for (std::size_t j = 0; j < inner; ++j) dst[j] += src[i * inner + j];
}

template <class T>
T sum_all(const T* src, std::size_t n)
{
    T total;
    sum_rows(src, n, 1, &total);
    return total;
}

template <class T>
struct Vjp {
    Tape<T>& tape;
    const detail::Record<T>& r;
    std::size_t index;  // this record's position on the tape
    const Tensor<T>& g;  // the cotangent of this op's output
    const Tensor<T>& y;  // this op's output

    std::uint32_t id(std::size_t k) const { return tape.input(r, k); }
    const Tensor<T>& x(std::size_t k) const { return tape.value(id(k)); }
    // Whether input k needs a gradient; ops skip the work for those that do not.
    bool wants(std::size_t k) const { return tape.record(id(k)).needs_grad; }

    // The adjoint buffer of input k, shaped like the input, and whether this is its first
    // contribution in this sweep (then it must be overwritten, not added to). For ops that
    // write straight into the adjoint, as BLAS does with beta = 0 or 1.
    Tensor<T>& slot(std::size_t k, bool& first)
    {
        const auto i = id(k);
        auto& rec = tape.record(i);
        if (rec.param && tape.into_params) {
            first = false;
            return rec.param->grad;
        }
        auto& flag = tape.has_adjoint()[i];
        first = !flag;
        flag = 1;
        auto& a = tape.adjoint(i);
        if (first && a.shape() != x(k).shape()) a.resize(x(k).shape());
        return a;
    }

    // adjoint(input k) += e, with e summed back to the input's shape where the forward
    // broadcast it. The expression is evaluated only if input k needs a gradient.
    template <class E>
    void acc(std::size_t k, const E& e)
    {
        if (!wants(k)) return;
        bool first;
        auto& a = slot(k, first);
        const auto& xs = x(k).shape();
        if (std::equal(e.shape().begin(), e.shape().end(), xs.begin(), xs.end())) {
            if (first) xt::noalias(a) = e;
            else xt::noalias(a) += e;
            return;
        }
        sum_to(e, xs, a, !first);
    }

    // out = e summed over the axes that broadcasting added or stretched to reach e's shape
    // from `shape` (broadcast's VJP: a sum in reverse); out += that sum when `accumulate` (out
    // then has `shape` already). The usual cases, a bias broadcast over leading axes and one
    // axis stretched from size 1 (a statistic per row), are direct loops written straight into
    // out; anything else goes through xt::sum.
    template <class E, class S>
    void sum_to(const E& e, const S& shape, Tensor<T>& out, bool accumulate)
    {
        const auto& es = e.shape();
        const std::size_t lead = es.size() - shape.size();
        auto contiguous = [&]() -> const T* {
            if constexpr (std::is_same<std::decay_t<E>, Tensor<T>>::value) {
                return e.data();
            } else {
                xt::noalias(tape.scratch2) = e;
                return tape.scratch2.data();
            }
        };
        std::size_t k = es.size();  // e's axes from k on are kept whole
        while (k > lead && shape[k - 1 - lead] == es[k - 1]) --k;
        bool leading_only = true;
        for (std::size_t i = lead; i < k; ++i) leading_only = leading_only && shape[i - lead] == 1;
        if (leading_only) {
            std::size_t outer = 1, inner = 1;
            for (std::size_t i = 0; i < es.size(); ++i) (i < k ? outer : inner) *= es[i];
            const T* src = contiguous();
            if (accumulate) {
                add_rows(src, outer, inner, out.data());
            } else {
                out.resize(shape);
                sum_rows(src, outer, inner, out.data());
            }
            return;
        }
        std::size_t stretched = 0, count = 0;  // with no leading axes added: which axis, how many
        for (std::size_t i = 0; lead == 0 && i < es.size(); ++i)
            if (shape[i] != es[i]) stretched = i, ++count;
        if (lead == 0 && count == 1) {
            std::size_t outer = 1, n = es[stretched], inner = 1;
            for (std::size_t i = 0; i < es.size(); ++i)
                if (i != stretched) (i < stretched ? outer : inner) *= es[i];
            const T* src = contiguous();
            if (!accumulate) out.resize(shape);
            T* dst = out.data();
            for (std::size_t o = 0; o < outer; ++o) {
                T* d = dst + o * inner;
                const T* s = src + o * n * inner;
                if (inner == 1) {
                    d[0] = (accumulate ? d[0] : T(0)) + sum_all(s, n);
                    continue;
                }
                if (!accumulate) std::fill_n(d, inner, T(0));
                for (std::size_t j = 0; j < n; ++j)
                    for (std::size_t i = 0; i < inner; ++i) d[i] += s[j * inner + i];
            }
            return;
        }
        std::vector<std::size_t> axes;
        for (std::size_t i = 0; i < es.size(); ++i)
            if (i < lead || (shape[i - lead] == 1 && es[i] != 1)) axes.push_back(i);
        auto& sum = tape.scratch;
        xt::noalias(sum) = xt::sum(e, axes, xt::keep_dims | xt::evaluation_strategy::lazy);
        sum.reshape(shape);
        if (accumulate) xt::noalias(out) += sum;
        else xt::noalias(out) = sum;
    }
};

// Records one op: the constructor appends the record (and validates the inputs), out() is the
// output buffer to fill, done() returns the handle. Fill it through xt::noalias: a plain xtensor
// assignment evaluates into a fresh temporary and swaps it in, which would allocate every step. If the forward throws before done(), the
// destructor takes the record off the tape again.
template <class T>
class Op {
public:
    Op(const char* name, std::initializer_list<Var<T>> inputs, detail::VjpFn<T> vjp)
        : tape_(inputs.begin()->tape()), r_(tape_.push(name, inputs, vjp)), index_(tape_.size() - 1)
    {
    }
    Op(const char* name, const std::vector<Var<T>>& inputs, detail::VjpFn<T> vjp)
        : tape_(inputs.front().tape()), r_(tape_.push(name, inputs, vjp)), index_(tape_.size() - 1)
    {
    }
    Op(const Op&) = delete;
    ~Op()
    {
        if (!done_) tape_.pop();
    }

    Tensor<T>& out() { return r_.value; }
    detail::Record<T>& record() { return r_; }
    Var<T> done()
    {
        if (anomaly_enabled()) check_forward_anomaly(tape_, index_);
        done_ = true;
        return Var<T>(&tape_, static_cast<std::uint32_t>(index_), tape_.generation());
    }

private:
    Tape<T>& tape_;
    detail::Record<T>& r_;
    std::size_t index_;
    bool done_ = false;
};

// Shape checks shared by the ops. Each throws ad::Error naming the op. (The result has inline
// storage, so checking a binary op allocates nothing.)
template <class S1, class S2>
xt::svector<std::size_t, 4> broadcast_shape(const char* op, const S1& a, const S2& b)
{
    const std::size_t n = std::max(a.size(), b.size());
    xt::svector<std::size_t, 4> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
        const std::size_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
        if (da != db && da != 1 && db != 1)
            throw Error(std::string(op) + ": cannot broadcast shapes " + shape_str(a) + " and " +
                        shape_str(b) +
                        " (aligned from the right, each pair of dimensions must be equal or 1)");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// A row-major tensor seen as outer x n x inner around one axis: element (o, j, i) is at
// (o * n + j) * inner + i. Loops over an axis use it instead of lazy reducers, which would
// re-reduce for every element they are broadcast to.
struct AxisLoop {
    std::size_t outer = 1, n = 1, inner = 1;
    template <class S>
    AxisLoop(const S& s, std::size_t axis)
    {
        for (std::size_t i = 0; i < s.size(); ++i) (i < axis ? outer : i == axis ? n : inner) *= s[i];
    }
    std::size_t at(std::size_t o, std::size_t j, std::size_t i) const { return (o * n + j) * inner + i; }
};

// Maps a possibly negative axis into [0, rank), or throws.
std::size_t normalize_axis(const char* op, std::ptrdiff_t axis, std::size_t rank);

// Checks the handles against the first one's tape before an op reads their shapes, so that a
// stale or foreign handle is reported under the op's name.
template <class T>
void check_handles(const char* op, std::initializer_list<Var<T>> xs)
{
    const Tape<T>& tape = xs.begin()->tape();
    for (const auto& x : xs) tape.check(x, op);
}

// normalize_axis for x, after checking its handle; the error names x's shape.
template <class T>
std::size_t normalize_axis(const char* op, std::ptrdiff_t axis, const Var<T>& x)
{
    check_handles(op, {x});
    const auto r = static_cast<std::ptrdiff_t>(x.dimension());
    if (axis < -r || axis >= r)
        throw Error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for shape " +
                    shape_str(x.shape()) + " (expected " + std::to_string(-r) + " <= axis < " +
                    std::to_string(r) + ")");
    return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

}  // namespace ad
