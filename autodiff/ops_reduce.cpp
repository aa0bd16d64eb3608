// Reductions. The VJP of a reduction over an axis spreads g back along that axis; its
// differentiable form is reshape (keeping the axis) and broadcast_to.
#include "autodiff/ops_reduce.hpp"

#include "autodiff/kernels/rows.hpp"
#include "autodiff/op.hpp"

#include <xtensor/xmanipulation.hpp>

#include <cmath>

namespace ad {

std::size_t normalize_axis(const char* op, std::ptrdiff_t axis, std::size_t rank)
{
    const auto r = static_cast<std::ptrdiff_t>(rank);
    if (axis < -r || axis >= r)
        throw Error(std::string(op) + ": axis " + std::to_string(axis) +
                    " is out of range for a tensor of rank " + std::to_string(rank) +
                    " (expected -" + std::to_string(rank) + " <= axis < " + std::to_string(rank) + ")");
    return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

namespace {

using kernels::sum_all;

// x's shape with dimension `axis` set to 1.
inline Shape kept_shape(const Shape& xs, std::size_t axis)
{
    Shape s = xs;
    s[axis] = 1;
    return s;
}

// t, the result of a reduction of x over `axis`, spread back to x's shape: the differentiable
// form of the loops below.
template <class T>
Var<T> spread(const Var<T>& t, const Var<T>& x, std::size_t axis)
{
    const auto& xs = x.shape();
    return broadcast_to(reshape(t, kept_shape(xs, axis)), xs);
}

// y resized to x's shape reduced over `axis`, the axis kept (size 1) or dropped.
template <class T>
void resize_reduced(const Tensor<T>& x, std::size_t axis, bool keepdims, Tensor<T>& y)
{
    Shape s(x.shape().begin(), x.shape().end());
    if (keepdims) s[axis] = 1;
    else s.erase(s.begin() + static_cast<std::ptrdiff_t>(axis));
    y.resize(s);
}

// y = (sum of x along `axis`) / divisor. A direct loop over the outer x n x inner view:
// xtensor's reducers allocate their shapes and step element by element.
template <class T>
void reduce_axis(const Tensor<T>& x, std::size_t axis, bool keepdims, T divisor, Tensor<T>& y)
{
    const AxisLoop d(x.shape(), axis);
    resize_reduced(x, axis, keepdims, y);
    const T* xp = x.data();
    T* yp = y.data();
    for (std::size_t o = 0; o < d.outer; ++o) {
        T* yo = yp + o * d.inner;
        if (d.inner == 1) {
            yo[0] = sum_all(xp + o * d.n, d.n) / divisor;
            continue;
        }
        std::fill_n(yo, d.inner, T(0));
        for (std::size_t j = 0; j < d.n; ++j)
            for (std::size_t i = 0; i < d.inner; ++i) yo[i] += xp[d.at(o, j, i)];
        for (std::size_t i = 0; i < d.inner; ++i) yo[i] /= divisor;
    }
}

// adjoint(x) += g / divisor spread along `axis`: the VJP of sum and mean over one axis. g is
// laid out as outer x inner whether or not the axis was kept.
template <class T>
void spread_axis(Vjp<T>& v, std::size_t axis, T divisor)
{
    const AxisLoop d(v.x(0).shape(), axis);
    const T* g = v.g.data();
    v.acc_each(0, [=](std::size_t k) {
        const std::size_t o = k / (d.n * d.inner), i = k % d.inner;
        return g[o * d.inner + i] / divisor;
    });
}

template <class T>
void check_not_empty(const char* op, const Var<T>& x, std::size_t axis)
{
    if (x.shape()[axis] == 0)
        fail(op, x, "cannot reduce an empty axis (shape " + shape_str(x.shape()) + ", axis " +
                        std::to_string(axis) + ")");
}

}  // namespace

// d sum(x) = g broadcast to x's shape
template <class T>
Var<T> sum(const Var<T>& x)
{
    Op<T> op("sum", {x});
    op.out().resize(Shape{});
    op.out()() = sum_all(x.value().data(), x.size());
    return op.done(
        [](Vjp<T>& v) {
            const T g = v.g();
            v.acc_each(0, [g](std::size_t) { return g; });
        },
        [](GradVjp<T>& v) {
            const auto& xs = v.x(0).shape();
            v.acc(0, broadcast_to(v.g, xs));
        });
}
AD_INSTANTIATE(sum, sig::Unary)

template <class T>
Var<T> sum(const Var<T>& x, std::ptrdiff_t axis, KeepDims k)
{
    const bool keep = k.keep;
    const std::size_t ax = normalize_axis("sum", axis, x);
    Op<T> op("sum_axis", {x});
    reduce_axis(x.value(), ax, keep, T(1), op.out());
    return op.done([ax](Vjp<T>& v) { spread_axis(v, ax, T(1)); },
                   [ax](GradVjp<T>& v) { v.acc(0, spread(v.g, v.x(0), ax)); });
}
AD_INSTANTIATE(sum, sig::AlongAxis)

// d mean(x) = g / n broadcast to x's shape
template <class T>
Var<T> mean(const Var<T>& x)
{
    check_handles("mean", {x});
    if (x.size() == 0) fail("mean", x, "the mean of an empty tensor (shape " + shape_str(x.shape()) + ") is undefined");
    Op<T> op("mean", {x});
    op.out().resize(Shape{});
    op.out()() = sum_all(x.value().data(), x.size()) / T(x.size());
    return op.done(
        [](Vjp<T>& v) {
            const T g = v.g() / T(v.x(0).size());
            v.acc_each(0, [g](std::size_t) { return g; });
        },
        [](GradVjp<T>& v) {
            const auto& xs = v.x(0).shape();
            v.acc(0, broadcast_to(v.g / T(v.x(0).size()), xs));
        });
}
AD_INSTANTIATE(mean, sig::Unary)

template <class T>
Var<T> mean(const Var<T>& x, std::ptrdiff_t axis, KeepDims k)
{
    const bool keep = k.keep;
    const std::size_t ax = normalize_axis("mean", axis, x);
    check_not_empty("mean", x, ax);
    Op<T> op("mean_axis", {x});
    const T n = T(x.shape()[ax]);
    reduce_axis(x.value(), ax, keep, n, op.out());
    return op.done([ax, n](Vjp<T>& v) { spread_axis(v, ax, n); },
                   [ax, n](GradVjp<T>& v) { v.acc(0, spread(v.g / n, v.x(0), ax)); });
}
AD_INSTANTIATE(mean, sig::AlongAxis)

// d max(x, axis) = g at the first maximal element along the axis, 0 elsewhere. A slice holding
// a NaN has maximum NaN, and its gradient goes to the first NaN.
template <class T>
Var<T> max(const Var<T>& x, std::ptrdiff_t axis, KeepDims k)
{
    const bool keep = k.keep;
    const std::size_t ax = normalize_axis("max", axis, x);
    check_not_empty("max", x, ax);
    Op<T> op("max", {x});
    auto& argmax = op.save_indices();  // along the axis, for each (outer, inner) pair
    const AxisLoop d(x.shape(), ax);
    resize_reduced(x.value(), ax, keep, op.out());
    T* y = op.out().data();
    const T* xp = x.value().data();
    for (std::size_t o = 0; o < d.outer; ++o)
        for (std::size_t i = 0; i < d.inner; ++i) {
            std::size_t best = 0;
            for (std::size_t j = 0; j < d.n && !std::isnan(xp[d.at(o, best, i)]); ++j)
                if (xp[d.at(o, j, i)] > xp[d.at(o, best, i)] || std::isnan(xp[d.at(o, j, i)])) best = j;
            argmax.push_back(static_cast<std::ptrdiff_t>(best));
            y[o * d.inner + i] = xp[d.at(o, best, i)];
        }
    return op.done(
        [ax](Vjp<T>& v) {
            const AxisLoop d(v.x(0).shape(), ax);
            bool first;
            auto& dx = v.slot(0, first);
            if (first) dx.fill(T(0));
            const auto& argmax = v.indices();
            for (std::size_t o = 0; o < d.outer; ++o)
                for (std::size_t i = 0; i < d.inner; ++i)
                    dx.data()[d.at(o, std::size_t(argmax[o * d.inner + i]), i)] += v.g.data()[o * d.inner + i];
        },
        [ax](GradVjp<T>& v) {  // g spread along the axis times the constant one-hot of the argmax
            const auto& xs = v.x(0).shape();
            const AxisLoop d(xs, ax);
            Tensor<T> onehot = xt::zeros<T>(xs);
            for (std::size_t k = 0; k < d.outer * d.inner; ++k)
                onehot.data()[d.at(k / d.inner, std::size_t(v.indices()[k]), k % d.inner)] = T(1);
            v.acc(0, spread(v.g, v.x(0), ax) * v.constant(onehot));
        });
}
AD_INSTANTIATE(max, sig::AlongAxis)

// logsumexp(x) = m + log sum exp(x - m), m the max along the axis (NaN if the slice holds a
// NaN, so that the NaN reaches y even where m is infinite); d = g softmax(x) = g exp(x - y)
template <class T>
Var<T> logsumexp(const Var<T>& x, std::ptrdiff_t axis, KeepDims k)
{
    const bool keep = k.keep;
    const std::size_t ax = normalize_axis("logsumexp", axis, x);
    check_not_empty("logsumexp", x, ax);
    Op<T> op("logsumexp", {x});
    const AxisLoop d(x.shape(), ax);
    resize_reduced(x.value(), ax, keep, op.out());
    T* y = op.out().data();
    kernels::for_each_slice(x.value().data(), d, [&](std::size_t o, std::size_t i, T m, T s) {
        y[o * d.inner + i] = std::isinf(m) ? m : m + std::log(s);
    });
    return op.done(
        [ax](Vjp<T>& v) {
            const AxisLoop d(v.x(0).shape(), ax);
            const T *x = v.x(0).data(), *y = v.y.data(), *g = v.g.data();
            v.acc_each(0, [=](std::size_t k) {
                const std::size_t r = k / (d.n * d.inner) * d.inner + k % d.inner;
                return g[r] * std::exp(x[k] - y[r]);
            });
        },
        [ax](GradVjp<T>& v) { v.acc(0, spread(v.g, v.x(0), ax) * ad::exp(v.x(0) - spread(v.y, v.x(0), ax))); });
}
AD_INSTANTIATE(logsumexp, sig::AlongAxis)

// d |x| = g x / |x|, taken as 0 at x = 0
template <class T>
Var<T> norm(const Var<T>& x)
{
    Op<T> op("norm", {x});
    op.out().resize(Shape{});
    const T* xp = x.value().data();
    T s = 0;
    for (std::size_t i = 0; i < x.size(); ++i) s += xp[i] * xp[i];
    op.out()() = std::sqrt(s);
    return op.done(
        [](Vjp<T>& v) {
            const T n = v.y();
            const T c = n == T(0) ? T(0) : v.g() / n;
            const T* x = v.x(0).data();
            v.acc_each(0, [=](std::size_t i) { return x[i] * c; });
        },
        [](GradVjp<T>& v) {
            if (v.y.item() == T(0))  // the gradient 0 chosen at the kink, as the first-order VJP adds it
                v.acc(0, v.constant(xt::zeros<T>(v.value(0).shape())));
            else
                v.acc(0, v.x(0) * (v.g / v.y));
        });
}
AD_INSTANTIATE(norm, sig::Unary)

}  // namespace ad
