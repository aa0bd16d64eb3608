// Shape ops: each moves values without arithmetic, so each VJP moves g back the same way, and
// its differentiable form is the inverse move (reshape back, broadcast and sum_to, gather and
// scatter, slice and concat).
#include "autodiff/ops_shape.hpp"

#include "autodiff/op.hpp"

#include <xtensor/xmanipulation.hpp>
#include <xtensor/xstrided_view.hpp>

#include <algorithm>

namespace ad {

namespace {

// The element count of a shape, or an error naming the op when it does not fit in 64 bits.
template <class T, class S>
std::size_t checked_size(const char* op, const Var<T>& x, const S& shape)
{
    std::size_t n = 1;
    bool overflow = false;
    for (auto d : shape) overflow = overflow || __builtin_mul_overflow(n, std::size_t(d), &n);
    for (auto d : shape) overflow = overflow && d != 0;  // a zero dimension makes it empty
    if (overflow)
        fail(op, x, "the shape " + shape_str(shape) + " has more elements than fit in 64 bits");
    return n;
}

// outer x n x inner around `axis`, as the index, slice and concat ops walk a tensor.
struct AroundAxis {
    std::size_t outer = 1, n = 1, inner = 1;
    template <class S>
    AroundAxis(const S& shape, std::size_t axis)
    {
        for (std::size_t d = 0; d < axis; ++d) outer *= shape[d];
        n = shape[axis];
        for (std::size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
    }
};

// dst[o, dst_at + j, :] = (or +=) src[o, src_at + j, :] for j < len, for two tensors that agree
// but for the axis: plain loops over contiguous runs (a strided view would allocate its slice
// vector every step).
template <class T>
void copy_band(const AroundAxis& s, const T* src, std::size_t src_at, const AroundAxis& d, T* dst,
               std::size_t dst_at, std::size_t len, bool add)
{
    const std::size_t run = len * s.inner;
    for (std::size_t o = 0; o < s.outer; ++o) {
        const T* from = src + (o * s.n + src_at) * s.inner;
        T* to = dst + (o * d.n + dst_at) * d.inner;
        if (add)
            for (std::size_t i = 0; i < run; ++i) to[i] += from[i];
        else
            std::copy_n(from, run, to);
    }
}

// A reshape target as the caller wrote it: "[infer, 4]".
std::string target_str(const Shape& shape)
{
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        out += (i ? ", " : "") + (shape[i] == infer ? std::string("infer") : std::to_string(shape[i]));
    return out + "]";
}

}  // namespace

// d reshape(x) = g reshaped to x's shape
template <class T>
Var<T> reshape(const Var<T>& x, const Shape& shape)
{
    check_handles("reshape", {x});
    Shape s = shape;
    const auto inferred = std::find(s.begin(), s.end(), infer);
    if (inferred != s.end()) {
        if (std::find(inferred + 1, s.end(), infer) != s.end())
            fail("reshape", x, "at most one dimension can be ad::infer, got " + target_str(shape) +
                                   " for input shape " + shape_str(x.shape()));
        *inferred = 1;
    }
    const std::size_t known = checked_size("reshape", x, s);
    if (inferred != s.end()) {
        if (known == 0 || x.size() % known != 0)
            fail("reshape", x, "cannot infer the ad::infer dimension of " + target_str(shape) + " for " +
                                   std::to_string(x.size()) + " elements (input shape " + shape_str(x.shape()) +
                                   "; the other dimensions must divide the element count)");
        *inferred = x.size() / known;
    }
    if (checked_size("reshape", x, s) != x.size())
        fail("reshape", x, "cannot reshape " + shape_str(x.shape()) + " (" + std::to_string(x.size()) +
                               " elements) into " + target_str(shape) + " (" + std::to_string(checked_size("reshape", x, s)) +
                               " elements)");
    Op<T> op("reshape", {x});
    xt::noalias(op.out()) = x.value();
    op.out().reshape(s);
    // Both sides are row-major, so element i of g is element i of the input's gradient: a flat
    // copy (a reshape_view of rank > 4 allocates an index per element it visits).
    return op.done([](Vjp<T>& v) { v.acc_each(0, [g = v.g.data()](std::size_t i) { return g[i]; }); },
                   [](GradVjp<T>& v) { v.acc(0, reshape(v.g, v.value(0).shape())); });
}
AD_INSTANTIATE(reshape, sig::ToShape)

// d slice(x) = g placed at [start, stop) along the axis, zeros elsewhere
template <class T>
Var<T> slice(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t start, std::ptrdiff_t stop)
{
    const std::size_t ax = normalize_axis("slice", axis, x);
    const auto n = std::ptrdiff_t(x.shape()[ax]);
    const std::ptrdiff_t b = start < 0 ? start + n : start, e = stop < 0 ? stop + n : stop;
    if (b < 0 || e > n || b > e)
        fail("slice", x, "range [" + std::to_string(start) + ", " + std::to_string(stop) + ") does not fit axis " +
                             std::to_string(ax) + " of size " + std::to_string(n) + " (shape " +
                             shape_str(x.shape()) + "); expected 0 <= start <= stop <= size");
    Op<T> op("slice", {x});
    Shape out = x.shape();
    out[ax] = std::size_t(e - b);
    op.out().resize(out);
    const auto at = std::size_t(b), len = std::size_t(e - b);
    copy_band(AroundAxis(x.shape(), ax), x.value().data(), at, AroundAxis(out, ax), op.out().data(), 0, len, false);
    return op.done(
        [ax, at, len](Vjp<T>& v) {
            bool first;
            auto& dx = v.slot(0, first);
            if (first) dx.fill(T(0));
            copy_band(AroundAxis(v.g.shape(), ax), v.g.data(), 0, AroundAxis(dx.shape(), ax), dx.data(), at, len, true);
        },
        [ax, b, e](GradVjp<T>& v) {  // g between two blocks of zeros
            const auto& xs = v.x(0).shape();
            std::vector<Var<T>> parts;
            Shape before = xs, after = xs;
            before[ax] = std::size_t(b);
            after[ax] = xs[ax] - std::size_t(e);
            if (before[ax]) parts.push_back(v.constant(xt::zeros<T>(before)));
            parts.push_back(v.g);
            if (after[ax]) parts.push_back(v.constant(xt::zeros<T>(after)));
            v.acc(0, parts.size() == 1 ? v.g : concat(parts, std::ptrdiff_t(ax)));
        });
}
namespace sig {
template <class T> using Slice = Var<T>(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t);
}
AD_INSTANTIATE(slice, sig::Slice)

// d concat(xs) = the matching pieces of g
template <class T>
Var<T> concat(const std::vector<Var<T>>& xs, std::ptrdiff_t axis)
{
    if (xs.empty()) throw Error("concat: needs at least one tensor");
    for (const auto& x : xs) check_handles("concat", {xs[0], x});
    const auto& s0 = xs[0].shape();
    const std::size_t ax = normalize_axis("concat", axis, xs[0]);
    Shape out = s0;
    out[ax] = 0;
    for (const auto& x : xs) {
        const auto& s = x.shape();
        bool fits = s.size() == s0.size();
        for (std::size_t i = 0; fits && i < s.size(); ++i) fits = i == ax || s[i] == s0[i];
        if (!fits)
            fail("concat", x, "shapes " + shape_str(s0) + " and " + shape_str(s) +
                                  " must agree in every dimension except axis " + std::to_string(ax));
        out[ax] += s[ax];
    }
    Op<T> op("concat", xs);
    auto& offsets = op.save_indices();  // where each input starts along the axis, and the end
    offsets.push_back(0);
    for (const auto& x : xs) offsets.push_back(offsets.back() + std::ptrdiff_t(x.shape()[ax]));
    op.out().resize(out);
    const AroundAxis to(out, ax);
    for (std::size_t k = 0; k < xs.size(); ++k) {
        const AroundAxis from(xs[k].shape(), ax);
        copy_band(from, xs[k].value().data(), 0, to, op.out().data(), std::size_t(offsets[k]), from.n, false);
    }
    return op.done(
        [ax](Vjp<T>& v) {
            const auto& at = v.indices();
            const AroundAxis from(v.g.shape(), ax);
            for (std::size_t k = 0; k < v.inputs(); ++k) {
                if (!v.wants(k)) continue;
                bool first;
                auto& dk = v.slot(k, first);
                const AroundAxis to(dk.shape(), ax);
                copy_band(from, v.g.data(), std::size_t(at[k]), to, dk.data(), 0, to.n, !first);
            }
        },
        [ax](GradVjp<T>& v) {
            const auto& at = v.indices();
            for (std::size_t k = 0; k < v.inputs(); ++k)
                if (v.wants(k)) v.acc(k, slice(v.g, std::ptrdiff_t(ax), at[k], at[k + 1]));
        });
}
template Var<float> concat(const std::vector<Var<float>>&, std::ptrdiff_t);
template Var<double> concat(const std::vector<Var<double>>&, std::ptrdiff_t);

// d broadcast_to(x) = g summed back to x's shape
template <class T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape)
{
    check_handles("broadcast_to", {x});
    checked_size("broadcast_to", x, shape);
    Shape b;
    if (!broadcast_into(x.shape(), shape, b) || !std::equal(b.begin(), b.end(), shape.begin(), shape.end()))
        fail("broadcast_to", x, "cannot broadcast shape " + shape_str(x.shape()) + " to " + shape_str(shape) +
                                    " (aligned from the right, each dimension of the input must equal the "
                                    "target's or be 1)");
    Op<T> op("broadcast_to", {x});
    xt::noalias(op.out()) = xt::broadcast(x.value(), shape);
    auto vjp = [](auto& v) { v.acc(0, v.g); };  // acc sums g back to x's shape
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(broadcast_to, sig::ToShape)

namespace {
// True when a tensor of shape `g`, leading 1s aside, is a trailing block of shape `x`: broadcast
// to x it repeats whole, once per index of x's leading axes (a bias row over a batch).
template <class S1, class S2>
bool repeats_whole(const S1& g, const S2& x)
{
    std::size_t k = 0;
    while (k < g.size() && g[k] == 1) ++k;
    const std::size_t m = g.size() - k;
    return m <= x.size() && std::equal(g.begin() + std::ptrdiff_t(k), g.end(), x.end() - std::ptrdiff_t(m));
}
}  // namespace

// d sum_to(x) = g broadcast back to x's shape
template <class T>
Var<T> sum_to(const Var<T>& x, const Shape& shape)
{
    check_handles("sum_to", {x});
    Shape b;
    if (!broadcast_into(shape, x.shape(), b) || !std::equal(b.begin(), b.end(), x.shape().begin(), x.shape().end()))
        fail("sum_to", x, "cannot sum shape " + shape_str(x.shape()) + " to " + shape_str(shape) +
                              " (the target must broadcast to the input's shape)");
    Op<T> op("sum_to", {x});
    thread_local Tensor<T> scratch;  // kept: a graph VJP records sum_to every step
    kernels::sum_to(x.value(), shape, op.out(), false, scratch, scratch);
    return op.done(
        [](Vjp<T>& v) {
            const auto& xs = v.x(0).shape();
            const std::size_t block = v.g.size();
            if (!v.wants(0) || block == 0 || !repeats_whole(v.g.shape(), xs)) return v.acc(0, xt::broadcast(v.g, xs));
            bool first;  // copies of g, block after block, instead of xtensor's strided broadcast
            T* d = v.slot(0, first).data();
            const T* g = v.g.data();
            for (std::size_t at = 0, n = v.x(0).size(); at < n; at += block)
                for (std::size_t j = 0; j < block; ++j) d[at + j] = first ? g[j] : d[at + j] + g[j];
        },
        [](GradVjp<T>& v) { v.acc(0, broadcast_to(v.g, v.x(0).shape())); });
}
AD_INSTANTIATE(sum_to, sig::ToShape)

namespace {
// dst[idx[i]] += src[i] for rows of `width` elements.
template <class T>
void scatter_rows(const T* src, const std::vector<std::ptrdiff_t>& idx, std::size_t width, T* dst)
{
    for (std::size_t i = 0; i < idx.size(); ++i) {
        const T* from = src + i * width;
        T* to = dst + std::size_t(idx[i]) * width;
        for (std::size_t j = 0; j < width; ++j) to[j] += from[j];
    }
}

template <class T>
void check_rows(const char* op, const Var<T>& x, const std::vector<std::size_t>& idx, std::size_t rows)
{
    for (std::size_t i = 0; i < idx.size(); ++i)
        if (idx[i] >= rows)
            fail(op, x, "index " + std::to_string(idx[i]) + " (position " + std::to_string(i) +
                            ") is out of range for " + std::to_string(rows) + " rows (shape " +
                            shape_str(x.shape()) + ")");
}
}  // namespace

// d gather_rows(x) = g's rows added into the rows they came from
template <class T>
Var<T> gather_rows(const Var<T>& x, const std::vector<std::size_t>& idx)
{
    check_handles("gather_rows", {x});
    if (x.dimension() == 0) fail("gather_rows", x, "needs a tensor of rank >= 1, got a scalar (shape [])");
    const std::size_t rows = x.shape()[0], width = rows ? x.size() / rows : 0;
    check_rows("gather_rows", x, idx, rows);
    Op<T> op("gather_rows", {x});
    op.save_indices().assign(idx.begin(), idx.end());
    Shape out(x.shape().begin(), x.shape().end());
    out[0] = idx.size();
    op.out().resize(out);
    for (std::size_t i = 0; i < idx.size(); ++i)
        std::copy_n(x.value().data() + idx[i] * width, width, op.out().data() + i * width);
    return op.done(
        [](Vjp<T>& v) {
            bool first;
            auto& dx = v.slot(0, first);
            if (first) dx.fill(T(0));
            const std::size_t w = v.x(0).shape()[0] ? v.x(0).size() / v.x(0).shape()[0] : 0;
            scatter_rows(v.g.data(), v.indices(), w, dx.data());
        },
        [](GradVjp<T>& v) {
            const std::vector<std::size_t> idx(v.indices().begin(), v.indices().end());
            v.acc(0, scatter_add_rows(v.g, idx, v.x(0).shape()[0]));
        });
}
namespace sig {
template <class T> using Rows = Var<T>(const Var<T>&, const std::vector<std::size_t>&);
template <class T> using ScatterRows = Var<T>(const Var<T>&, const std::vector<std::size_t>&, std::size_t);
}
AD_INSTANTIATE(gather_rows, sig::Rows)

// d scatter_add_rows(x) = the rows of g that x's rows went to
template <class T>
Var<T> scatter_add_rows(const Var<T>& x, const std::vector<std::size_t>& idx, std::size_t rows)
{
    check_handles("scatter_add_rows", {x});
    if (x.dimension() == 0 || x.shape()[0] != idx.size())
        fail("scatter_add_rows", x, "needs one row of x per index: x has shape " + shape_str(x.shape()) + " and " +
                                        std::to_string(idx.size()) + " indices were given");
    check_rows("scatter_add_rows", x, idx, rows);
    Op<T> op("scatter_add_rows", {x});
    auto& at = op.save_indices();
    at.assign(idx.begin(), idx.end());
    Shape out(x.shape().begin(), x.shape().end());
    out[0] = rows;
    op.out().resize(out);
    op.out().fill(T(0));
    const std::size_t width = idx.empty() ? 0 : x.size() / idx.size();
    scatter_rows(x.value().data(), at, width, op.out().data());
    return op.done(
        [](Vjp<T>& v) {
            const auto& at = v.indices();
            const std::size_t w = at.empty() ? 0 : v.x(0).size() / at.size();
            const T* g = v.g.data();
            const std::ptrdiff_t* idx = at.data();
            v.acc_each(0, [=](std::size_t k) { return g[std::size_t(idx[k / w]) * w + k % w]; });
        },
        [](GradVjp<T>& v) {
            const std::vector<std::size_t> idx(v.indices().begin(), v.indices().end());
            v.acc(0, gather_rows(v.g, idx));
        });
}
AD_INSTANTIATE(scatter_add_rows, sig::ScatterRows)

namespace {
template <class T>
void check_indices(const char* op, const Var<T>& x, std::size_t axis, const std::vector<std::size_t>& idx,
                   std::size_t size)
{
    for (std::size_t k = 0; k < idx.size(); ++k)
        if (idx[k] >= size)
            fail(op, x, "index " + std::to_string(idx[k]) + " (position " + std::to_string(k) +
                            ") is out of range for axis " + std::to_string(axis) + " of size " + std::to_string(size) +
                            " (input shape " + shape_str(x.shape()) + ")");
}

// dst slice idx[k] (of dst_n along the axis) += src slice k (of idx.size()), or with `gather`
// the other way round: dst slice k = src slice idx[k].
template <class T, class I>
void move_slices(const T* src, T* dst, const I& idx, std::size_t outer, std::size_t n, std::size_t inner, bool gather)
{
    const std::size_t m = idx.size();
    for (std::size_t o = 0; o < outer; ++o)
        for (std::size_t k = 0; k < m; ++k) {
            const std::size_t j = std::size_t(idx[k]);
            if (gather) std::copy_n(src + (o * n + j) * inner, inner, dst + (o * m + k) * inner);
            else {
                const T* from = src + (o * m + k) * inner;
                T* to = dst + (o * n + j) * inner;
                for (std::size_t i = 0; i < inner; ++i) to[i] += from[i];
            }
        }
}
}  // namespace

// d index_select(x) = g's slices added into the slices they came from
template <class T>
Var<T> index_select(const Var<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& idx)
{
    const std::size_t ax = normalize_axis("index_select", axis, x);
    const AroundAxis a(x.shape(), ax);
    check_indices("index_select", x, ax, idx, a.n);
    Op<T> op("index_select", {x});
    op.save_indices().assign(idx.begin(), idx.end());
    Shape out = x.shape();
    out[ax] = idx.size();
    op.out().resize(out);
    move_slices(x.value().data(), op.out().data(), idx, a.outer, a.n, a.inner, true);
    return op.done(
        [ax](Vjp<T>& v) {
            if (!v.wants(0)) return;
            bool first;
            auto& dx = v.slot(0, first);
            if (first) dx.fill(T(0));
            const AroundAxis b(v.x(0).shape(), ax);
            move_slices(v.g.data(), dx.data(), v.indices(), b.outer, b.n, b.inner, false);
        },
        [ax](GradVjp<T>& v) {
            const std::vector<std::size_t> idx(v.indices().begin(), v.indices().end());
            v.acc(0, index_add(v.g, std::ptrdiff_t(ax), idx, v.x(0).shape()[ax]));
        });
}
namespace sig {
template <class T> using IndexSelect = Var<T>(const Var<T>&, std::ptrdiff_t, const std::vector<std::size_t>&);
template <class T> using IndexAdd = Var<T>(const Var<T>&, std::ptrdiff_t, const std::vector<std::size_t>&, std::size_t);
template <class T> using Select = Var<T>(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t);
}
AD_INSTANTIATE(index_select, sig::IndexSelect)

// d index_add(x) = the slices of g that x's slices went to
template <class T>
Var<T> index_add(const Var<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& idx, std::size_t size)
{
    const std::size_t ax = normalize_axis("index_add", axis, x);
    if (x.shape()[ax] != idx.size())
        fail("index_add", x, "needs one slice of x per index: x has shape " + shape_str(x.shape()) + ", " +
                                 std::to_string(x.shape()[ax]) + " along axis " + std::to_string(ax) + ", and " +
                                 std::to_string(idx.size()) + " indices were given");
    check_indices("index_add", x, ax, idx, size);
    Op<T> op("index_add", {x});
    op.save_indices().assign(idx.begin(), idx.end());
    Shape out = x.shape();
    out[ax] = size;
    op.out().resize(out);
    op.out().fill(T(0));
    const AroundAxis a(out, ax);
    move_slices(x.value().data(), op.out().data(), idx, a.outer, a.n, a.inner, false);
    return op.done(
        [ax](Vjp<T>& v) {
            const auto& at = v.indices();
            const AroundAxis b(v.g.shape(), ax);
            const std::size_t m = at.size(), inner = b.inner, n = b.n;
            const T* g = v.g.data();
            const std::ptrdiff_t* idx = at.data();
            v.acc_each(0, [=](std::size_t p) {
                const std::size_t i = p % inner, k = p / inner % m, o = p / inner / m;
                return g[(o * n + std::size_t(idx[k])) * inner + i];
            });
        },
        [ax](GradVjp<T>& v) {
            const std::vector<std::size_t> idx(v.indices().begin(), v.indices().end());
            v.acc(0, index_select(v.g, std::ptrdiff_t(ax), idx));
        });
}
AD_INSTANTIATE(index_add, sig::IndexAdd)

// index_select of one slice, the axis then dropped by a reshape: both ops differentiate to any order.
template <class T>
Var<T> select(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t i)
{
    const std::size_t ax = normalize_axis("select", axis, x);
    const auto n = std::ptrdiff_t(x.shape()[ax]);
    if (i < -n || i >= n)
        fail("select", x, "index " + std::to_string(i) + " is out of range for axis " + std::to_string(ax) +
                              " of size " + std::to_string(n) + " (input shape " + shape_str(x.shape()) +
                              "); expected " + std::to_string(-n) + " <= index < " + std::to_string(n));
    Shape out = x.shape();
    out.erase(out.begin() + std::ptrdiff_t(ax));
    return reshape(index_select(x, std::ptrdiff_t(ax), {std::size_t(i < 0 ? i + n : i)}), out);
}
AD_INSTANTIATE(select, sig::Select)

namespace {
// y = x with its axes reordered by perm (y's axis d is x's axis perm[d]), or y += that: an
// odometer over y's leading axes, each step a run along y's last axis (contiguous in x too when
// the last axis stays last). Several times faster than an xtensor transpose view's stepper.
template <class T, class S>
void permute_into(const T* x, const S& xs, const Shape& perm, T* y, bool add)
{
    const std::size_t r = xs.size();
    Shape ys(r), step(r);  // y's shape, and how far x moves per step along each axis of y
    std::size_t total = 1;
    for (std::size_t d = 0; d < r; ++d) {
        std::size_t stride = 1;
        for (std::size_t e = perm[d] + 1; e < r; ++e) stride *= xs[e];
        ys[d] = xs[perm[d]];
        step[d] = stride;
        total *= ys[d];
    }
    if (total == 0) return;
    const std::size_t run = r ? ys[r - 1] : 1, run_step = r ? step[r - 1] : 1;
    Shape at(r ? r - 1 : 0, 0);
    std::size_t from = 0;
    for (std::size_t row = 0; row < total / run; ++row) {
        const T* src = x + from;
        T* dst = y + row * run;
        if (run_step == 1 && !add) std::copy_n(src, run, dst);
        else if (add)
            for (std::size_t i = 0; i < run; ++i) dst[i] += src[i * run_step];
        else
            for (std::size_t i = 0; i < run; ++i) dst[i] = src[i * run_step];
        for (std::size_t d = at.size(); d-- > 0;) {  // the next row: carry like an odometer
            from += step[d];
            if (++at[d] < ys[d]) break;
            from -= step[d] * ys[d];
            at[d] = 0;
        }
    }
}

// y = x with its axes reordered by perm; the VJP moves g back by the inverse permutation, saved
// as indices (a capture of it would not fit the record).
template <class T>
Var<T> permuted(const char* name, const Var<T>& x, const Shape& perm)
{
    Op<T> op(name, {x});
    auto& inverse = op.save_indices();
    inverse.resize(perm.size());
    Shape out(perm.size());
    for (std::size_t d = 0; d < perm.size(); ++d) {
        inverse[perm[d]] = std::ptrdiff_t(d);
        out[d] = x.shape()[perm[d]];
    }
    op.out().resize(out);
    permute_into(x.value().data(), x.shape(), perm, op.out().data(), false);
    return op.done(
        [](Vjp<T>& v) {
            if (!v.wants(0)) return;
            const Shape back(v.indices().begin(), v.indices().end());
            bool first;
            auto& dx = v.slot(0, first);
            permute_into(v.g.data(), v.g.shape(), back, dx.data(), !first);
        },
        [](GradVjp<T>& v) { v.acc(0, permute(v.g, v.indices())); });
}
}  // namespace

template <class T>
Var<T> permute(const Var<T>& x, const std::vector<std::ptrdiff_t>& axes)
{
    check_handles("permute", {x});
    const auto r = std::ptrdiff_t(x.dimension());
    Shape perm(axes.size());
    Shape seen(std::size_t(r), 0);
    bool ok = axes.size() == std::size_t(r);
    for (std::size_t d = 0; ok && d < axes.size(); ++d) {
        ok = axes[d] >= -r && axes[d] < r;
        if (ok) perm[d] = std::size_t(axes[d] < 0 ? axes[d] + r : axes[d]);
        ok = ok && seen[perm[d]]++ == 0;
    }
    if (!ok) {
        std::string list = "[";
        for (std::size_t d = 0; d < axes.size(); ++d) list += (d ? ", " : "") + std::to_string(axes[d]);
        fail("permute", x, "axes " + list + "] are not a permutation of the " + std::to_string(r) + " axes of shape " +
                               shape_str(x.shape()) + " (expected each axis once, " + std::to_string(-r) +
                               " <= axis < " + std::to_string(r) + ")");
    }
    return permuted("permute", x, perm);
}
namespace sig {
template <class T> using Permute = Var<T>(const Var<T>&, const std::vector<std::ptrdiff_t>&);
template <class T> using SwapAxes = Var<T>(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t);
}
AD_INSTANTIATE(permute, sig::Permute)

template <class T>
Var<T> transpose(const Var<T>& x, std::ptrdiff_t a, std::ptrdiff_t b)
{
    check_handles("transpose", {x});
    const auto r = std::ptrdiff_t(x.dimension());
    for (const auto axis : {a, b})
        if (axis < -r || axis >= r)
            fail("transpose", x, "axes " + std::to_string(a) + " and " + std::to_string(b) + " to swap: axis " +
                                     std::to_string(axis) + " is out of range for shape " + shape_str(x.shape()) +
                                     " (expected " + std::to_string(-r) + " <= axis < " + std::to_string(r) + ")");
    Shape perm(x.dimension());
    for (std::size_t d = 0; d < perm.size(); ++d) perm[d] = d;
    std::swap(perm[std::size_t(a < 0 ? a + r : a)], perm[std::size_t(b < 0 ? b + r : b)]);
    return permuted("transpose", x, perm);
}
AD_INSTANTIATE(transpose, sig::SwapAxes)

}  // namespace ad
