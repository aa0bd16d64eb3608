// Shape ops: each moves values without arithmetic, so each VJP moves g back the same way.
#include "autodiff/ops.hpp"

#include "autodiff/detail/op.hpp"

#include <xtensor/xmanipulation.hpp>
#include <xtensor/xstrided_view.hpp>

#include <algorithm>

namespace ad {

namespace {

std::size_t product(const Shape& s)
{
    std::size_t n = 1;
    for (auto d : s) n *= d;
    return n;
}

// The slice [start, stop) along `axis` of a tensor of rank `rank`, as an xtensor slice vector.
xt::xstrided_slice_vector along(std::size_t rank, std::size_t axis, std::size_t start, std::size_t stop)
{
    xt::xstrided_slice_vector sv(rank, xt::all());
    sv[axis] = xt::range(start, stop);
    return sv;
}

}  // namespace

// d reshape(x) = g reshaped to x's shape
template <class T>
Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape)
{
    check_handles("reshape", {x});
    Shape s(shape.size());
    std::ptrdiff_t infer = -1;
    std::size_t known = 1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1 && infer < 0) { infer = std::ptrdiff_t(i); continue; }
        if (shape[i] < 0)
            throw Error("reshape: bad target shape (each entry must be >= 0, with at most one -1), "
                        "got " + shape_str(shape) + " for input shape " + shape_str(x.shape()));
        s[i] = std::size_t(shape[i]);
        known *= s[i];
    }
    if (infer >= 0) {
        if (known == 0 || x.size() % known != 0)
            throw Error("reshape: cannot infer the -1 in " + shape_str(shape) + " for " +
                        std::to_string(x.size()) + " elements (input shape " + shape_str(x.shape()) + ")");
        s[std::size_t(infer)] = x.size() / known;
    }
    if (product(s) != x.size())
        throw Error("reshape: cannot reshape " + shape_str(x.shape()) + " (" + std::to_string(x.size()) +
                    " elements) into " + shape_str(shape) + " (" + std::to_string(product(s)) + " elements)");
    Op<T> op("reshape", {x}, [](Vjp<T>& v) { v.acc(0, xt::reshape_view(v.g, v.x(0).shape())); });
    xt::noalias(op.out()) = x.value();
    op.out().reshape(s);
    return op.done();
}

// d slice(x) = g placed at [start, stop) along the axis, zeros elsewhere.
// r.ints = {axis, start, stop}
template <class T>
Var<T> slice(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t start, std::ptrdiff_t stop)
{
    const std::size_t ax = normalize_axis("slice", axis, x);
    const auto n = std::ptrdiff_t(x.shape()[ax]);
    const std::ptrdiff_t b = start < 0 ? start + n : start, e = stop < 0 ? stop + n : stop;
    if (b < 0 || e > n || b > e)
        throw Error("slice: range [" + std::to_string(start) + ", " + std::to_string(stop) +
                    ") does not fit axis " + std::to_string(ax) + " of size " + std::to_string(n) +
                    " (shape " + shape_str(x.shape()) + "); expected 0 <= start <= stop <= size");
    Op<T> op("slice", {x}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        bool first;
        auto& dx = v.slot(0, first);
        if (first) dx.fill(T(0));
        const auto& ri = v.r.ints;
        auto part = xt::strided_view(dx, along(dx.dimension(), std::size_t(ri[0]), std::size_t(ri[1]), std::size_t(ri[2])));
        part += v.g;
    });
    op.record().ints = {std::ptrdiff_t(ax), b, e};
    xt::noalias(op.out()) = xt::strided_view(x.value(), along(x.dimension(), ax, std::size_t(b), std::size_t(e)));
    return op.done();
}

// d concat(xs) = the matching pieces of g. r.ints = {axis, offset_0, offset_1, ..., offset_n}
template <class T>
Var<T> concat(const std::vector<Var<T>>& xs, std::ptrdiff_t axis)
{
    if (xs.empty()) throw Error("concat: needs at least one tensor");
    for (const auto& x : xs) check_handles("concat", {xs[0], x});
    const auto& s0 = xs[0].shape();
    const std::size_t ax = normalize_axis("concat", axis, xs[0]);
    Shape out(s0.begin(), s0.end());
    out[ax] = 0;
    std::vector<std::ptrdiff_t> ints{std::ptrdiff_t(ax), 0};
    for (const auto& x : xs) {
        const auto& s = x.shape();
        bool fits = s.size() == s0.size();
        for (std::size_t i = 0; fits && i < s.size(); ++i) fits = i == ax || s[i] == s0[i];
        if (!fits)
            throw Error("concat: shapes " + shape_str(s0) + " and " + shape_str(s) +
                        " must agree in every dimension except axis " + std::to_string(ax));
        out[ax] += s[ax];
        ints.push_back(std::ptrdiff_t(out[ax]));
    }
    Op<T> op("concat", xs, [](Vjp<T>& v) {
        const auto& ri = v.r.ints;
        for (std::size_t k = 0; k < v.r.n_inputs; ++k)
            v.acc(k, xt::strided_view(v.g, along(v.g.dimension(), std::size_t(ri[0]),
                                                 std::size_t(ri[1 + k]), std::size_t(ri[2 + k]))));
    });
    op.record().ints = ints;
    op.out().resize(out);
    for (std::size_t k = 0; k < xs.size(); ++k)
        xt::strided_view(op.out(), along(out.size(), ax, std::size_t(ints[1 + k]), std::size_t(ints[2 + k]))) =
            xs[k].value();
    return op.done();
}

// d broadcast_to(x) = g summed back to x's shape
template <class T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape)
{
    check_handles("broadcast_to", {x});
    const auto b = broadcast_shape("broadcast_to", x.shape(), shape);
    if (!std::equal(b.begin(), b.end(), shape.begin(), shape.end()))
        throw Error("broadcast_to: cannot broadcast shape " + shape_str(x.shape()) + " to " +
                    shape_str(shape) + " (aligned from the right, each dimension of the input "
                    "must equal the target's or be 1)");
    Op<T> op("broadcast_to", {x}, [](Vjp<T>& v) { v.acc(0, v.g); });
    xt::noalias(op.out()) = xt::broadcast(x.value(), shape);
    return op.done();
}

// d gather_rows(x) = g's rows added into the rows they came from. r.ints = idx
template <class T>
Var<T> gather_rows(const Var<T>& x, const std::vector<std::size_t>& idx)
{
    check_handles("gather_rows", {x});
    if (x.dimension() == 0) throw Error("gather_rows: needs a tensor of rank >= 1, got a scalar");
    const std::size_t rows = x.shape()[0], width = rows ? x.size() / rows : 0;
    for (std::size_t i = 0; i < idx.size(); ++i)
        if (idx[i] >= rows)
            throw Error("gather_rows: index " + std::to_string(idx[i]) + " (position " + std::to_string(i) +
                        ") is out of range for " + std::to_string(rows) + " rows (shape " +
                        shape_str(x.shape()) + ")");
    Op<T> op("gather_rows", {x}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        bool first;
        auto& dx = v.slot(0, first);
        if (first) dx.fill(T(0));
        const std::size_t w = v.x(0).shape()[0] ? v.x(0).size() / v.x(0).shape()[0] : 0;
        for (std::size_t i = 0; i < v.r.ints.size(); ++i) {
            const T* src = v.g.data() + i * w;
            T* dst = dx.data() + std::size_t(v.r.ints[i]) * w;
            for (std::size_t j = 0; j < w; ++j) dst[j] += src[j];
        }
    });
    op.record().ints.assign(idx.begin(), idx.end());
    Shape out(x.shape().begin(), x.shape().end());
    out[0] = idx.size();
    op.out().resize(out);
    for (std::size_t i = 0; i < idx.size(); ++i)
        std::copy_n(x.value().data() + idx[i] * width, width, op.out().data() + i * width);
    return op.done();
}

#define AD_INSTANTIATE(T)                                                                   \
    template Var<T> reshape(const Var<T>&, const std::vector<std::ptrdiff_t>&);             \
    template Var<T> slice(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t);   \
    template Var<T> concat(const std::vector<Var<T>>&, std::ptrdiff_t);                     \
    template Var<T> broadcast_to(const Var<T>&, const Shape&);                              \
    template Var<T> gather_rows(const Var<T>&, const std::vector<std::size_t>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
