// Reductions. The VJP of a reduction over an axis broadcasts g back along that axis; r.ints
// holds {axis, keepdims}.
#include "autodiff/ops.hpp"

#include "autodiff/detail/op.hpp"

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

// x's shape with dimension `axis` set to 1.
template <class S>
Shape kept_shape(const S& xs, std::size_t axis)
{
    Shape s(xs.begin(), xs.end());
    s[axis] = 1;
    return s;
}

// t, a reduction over r.ints[0], seen with that axis kept (size 1) and broadcast to x's shape.
template <class T>
auto spread(const Tensor<T>& t, const detail::Record<T>& r, const Tensor<T>& x)
{
    return xt::broadcast(xt::reshape_view(t, kept_shape(x.shape(), std::size_t(r.ints[0]))),
                         x.shape());
}

template <class T>
void drop_axis(Tensor<T>& y, const Shape& kept, std::size_t axis, bool keepdims)
{
    Shape s = kept;
    if (!keepdims) s.erase(s.begin() + static_cast<std::ptrdiff_t>(axis));
    y.reshape(s);
}

// y = (sum of x along `axis`) / divisor, the axis kept (size 1) or dropped. A direct loop over
// the outer x n x inner view: xtensor's reducers allocate their shapes and step element by element.
template <class T>
void reduce_axis(const Tensor<T>& x, std::size_t axis, bool keepdims, T divisor, Tensor<T>& y)
{
    const AxisLoop d(x.shape(), axis);
    typename Tensor<T>::shape_type s(x.shape().begin(), x.shape().end());
    if (keepdims) s[axis] = 1;
    else s.erase(s.begin() + static_cast<std::ptrdiff_t>(axis));
    y.resize(s);
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

// adjoint(x) += g / divisor spread along the reduced axis r.ints[0]: the VJP of sum and mean over
// one axis. g is laid out as outer x inner whether or not the axis was kept.
template <class T>
void spread_axis(Vjp<T>& v, T divisor)
{
    if (!v.wants(0)) return;
    const AxisLoop d(v.x(0).shape(), std::size_t(v.r.ints[0]));
    bool first;
    T* dx = v.slot(0, first).data();
    const T* g = v.g.data();
    if (d.inner == 1) {  // the last axis: one value per row
        for (std::size_t o = 0; o < d.outer; ++o) {
            const T value = g[o] / divisor;
            T* row = dx + o * d.n;
            if (first) std::fill_n(row, d.n, value);
            else
                for (std::size_t j = 0; j < d.n; ++j) row[j] += value;
        }
        return;
    }
    for (std::size_t o = 0; o < d.outer; ++o)
        for (std::size_t j = 0; j < d.n; ++j) {
            T* row = dx + d.at(o, j, 0);
            const T* go = g + o * d.inner;
            if (first)
                for (std::size_t i = 0; i < d.inner; ++i) row[i] = go[i] / divisor;
            else
                for (std::size_t i = 0; i < d.inner; ++i) row[i] += go[i] / divisor;
        }
}

// adjoint(x) += c at every element: the VJP of a full reduction.
template <class T>
void spread_scalar(Vjp<T>& v, T c)
{
    if (!v.wants(0)) return;
    bool first;
    auto& a = v.slot(0, first);
    if (first) a.fill(c);
    else xt::noalias(a) += c;
}

template <class T>
void check_not_empty(const char* op, const Var<T>& x, std::size_t axis)
{
    if (x.shape()[axis] == 0)
        throw Error(std::string(op) + ": cannot reduce an empty axis (shape " +
                    shape_str(x.shape()) + ", axis " + std::to_string(axis) + ")");
}

}  // namespace

// d sum(x) = g broadcast to x's shape
template <class T>
Var<T> sum(const Var<T>& x)
{
    Op<T> op("sum", {x}, [](Vjp<T>& v) { spread_scalar(v, v.g()); });
    op.out().resize(Shape{});
    op.out()() = sum_all(x.value().data(), x.size());
    return op.done();
}

template <class T>
Var<T> sum(const Var<T>& x, std::ptrdiff_t axis, bool keepdims)
{
    const std::size_t ax = normalize_axis("sum", axis, x);
    Op<T> op("sum_axis", {x}, [](Vjp<T>& v) { spread_axis(v, T(1)); });
    op.record().ints = {static_cast<std::ptrdiff_t>(ax), keepdims};
    reduce_axis(x.value(), ax, keepdims, T(1), op.out());
    return op.done();
}

// d mean(x) = g / n broadcast to x's shape
template <class T>
Var<T> mean(const Var<T>& x)
{
    check_handles("mean", {x});
    if (x.size() == 0) throw Error("mean: the mean of an empty tensor (shape " + shape_str(x.shape()) + ") is undefined");
    Op<T> op("mean", {x}, [](Vjp<T>& v) { spread_scalar(v, v.g() / T(v.x(0).size())); });
    op.out().resize(Shape{});
    op.out()() = sum_all(x.value().data(), x.size()) / T(x.size());
    return op.done();
}

template <class T>
Var<T> mean(const Var<T>& x, std::ptrdiff_t axis, bool keepdims)
{
    const std::size_t ax = normalize_axis("mean", axis, x);
    check_not_empty("mean", x, ax);
    Op<T> op("mean_axis", {x}, [](Vjp<T>& v) {
        spread_axis(v, T(v.x(0).shape()[std::size_t(v.r.ints[0])]));
    });
    op.record().ints = {static_cast<std::ptrdiff_t>(ax), keepdims};
    reduce_axis(x.value(), ax, keepdims, T(x.shape()[ax]), op.out());
    return op.done();
}

// d max(x, axis) = g at the first maximal element along the axis, 0 elsewhere.
// r.ints = {axis, keepdims, argmax for each (outer, inner) pair...}
template <class T>
Var<T> max(const Var<T>& x, std::ptrdiff_t axis, bool keepdims)
{
    const std::size_t ax = normalize_axis("max", axis, x);
    check_not_empty("max", x, ax);
    Op<T> op("max", {x}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        const AxisLoop d(v.x(0).shape(), std::size_t(v.r.ints[0]));
        bool first;
        auto& dx = v.slot(0, first);
        if (first) dx.fill(T(0));
        for (std::size_t o = 0; o < d.outer; ++o)
            for (std::size_t i = 0; i < d.inner; ++i) {
                const auto j = std::size_t(v.r.ints[2 + o * d.inner + i]);
                dx.data()[(o * d.n + j) * d.inner + i] += v.g.data()[o * d.inner + i];
            }
    });
    auto& r = op.record();
    r.ints = {static_cast<std::ptrdiff_t>(ax), keepdims};
    const AxisLoop d(x.shape(), ax);
    auto& y = op.out();
    y.resize(kept_shape(x.shape(), ax));
    const T* xp = x.value().data();
    for (std::size_t o = 0; o < d.outer; ++o)
        for (std::size_t i = 0; i < d.inner; ++i) {
            std::size_t best = 0;
            for (std::size_t j = 1; j < d.n; ++j)
                if (xp[(o * d.n + j) * d.inner + i] > xp[(o * d.n + best) * d.inner + i]) best = j;
            r.ints.push_back(static_cast<std::ptrdiff_t>(best));
            y.data()[o * d.inner + i] = xp[(o * d.n + best) * d.inner + i];
        }
    drop_axis(y, kept_shape(x.shape(), ax), ax, keepdims);
    return op.done();
}

// logsumexp(x) = m + log sum exp(x - m), m the max along the axis;
// d = g softmax(x) = g exp(x - y)
template <class T>
Var<T> logsumexp(const Var<T>& x, std::ptrdiff_t axis, bool keepdims)
{
    const std::size_t ax = normalize_axis("logsumexp", axis, x);
    check_not_empty("logsumexp", x, ax);
    Op<T> op("logsumexp", {x}, [](Vjp<T>& v) {
        v.acc(0, spread(v.g, v.r, v.x(0)) * xt::exp(v.x(0) - spread(v.y, v.r, v.x(0))));
    });
    op.record().ints = {static_cast<std::ptrdiff_t>(ax), keepdims};
    auto& y = op.out();
    auto& m = op.record().saved;
    xt::noalias(m) = xt::amax(x.value(), {ax}, xt::keep_dims);
    xt::noalias(y) = m + xt::log(xt::sum(xt::exp(x.value() - m), {ax}, xt::keep_dims));
    drop_axis(y, kept_shape(x.shape(), ax), ax, keepdims);
    return op.done();
}

// d |x| = g x / |x|, taken as 0 at x = 0
template <class T>
Var<T> norm(const Var<T>& x)
{
    Op<T> op("norm", {x}, [](Vjp<T>& v) {
        const T n = v.y();
        if (n == T(0)) {
            v.acc(0, xt::zeros<T>(v.x(0).shape()));
            return;
        }
        v.acc(0, v.x(0) * (v.g() / n));
    });
    xt::noalias(op.out()) = xt::sqrt(xt::sum(xt::square(x.value()), xt::evaluation_strategy::immediate));
    return op.done();
}

#define AD_INSTANTIATE(T)                                                \
    template Var<T> sum(const Var<T>&);                                  \
    template Var<T> sum(const Var<T>&, std::ptrdiff_t, bool);            \
    template Var<T> mean(const Var<T>&);                                 \
    template Var<T> mean(const Var<T>&, std::ptrdiff_t, bool);           \
    template Var<T> max(const Var<T>&, std::ptrdiff_t, bool);            \
    template Var<T> logsumexp(const Var<T>&, std::ptrdiff_t, bool);      \
    template Var<T> norm(const Var<T>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
