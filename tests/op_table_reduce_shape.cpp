// Op table entries: reductions and shape ops. Axes, keepdims flags, target shapes, slice bounds
// and row indices travel in Sample::ints. References walk row-major indices by hand: a
// reduction collects each slice along its axis into a vector and reduces that, a shape op
// computes where each output element comes from.
#include "op_table.hpp"

#include <algorithm>

namespace optable {

namespace {

// f(slice) for every slice of x along ints[0], the axis kept (size 1) when ints[1] != 0.
template <class F>
Tensor<double> reduce_reference(const Tensor<double>& x, std::ptrdiff_t axis_arg, bool keep, F f)
{
    const Shape xs = shape_of(x);
    const std::size_t axis = axis_of(axis_arg, xs.size());
    Shape ys = xs;
    if (keep) ys[axis] = 1;
    else ys.erase(ys.begin() + std::ptrdiff_t(axis));
    Tensor<double> y = empty(ys);
    const Around a(xs, axis);
    std::vector<double> slice(a.n);
    for (std::size_t o = 0; o < a.outer; ++o)
        for (std::size_t i = 0; i < a.inner; ++i) {
            for (std::size_t j = 0; j < a.n; ++j) slice[j] = x.data()[a.at(o, j, i)];
            y.data()[o * a.inner + i] = f(slice);
        }
    return y;
}

double sum_of(const std::vector<double>& v)
{
    double s = 0;
    for (const double x : v) s += x;
    return s;
}

// A reshape target from a sample's integers: -1 stands for ad::infer, any other negative entry
// wraps to a size near 2^64.
Shape reshape_target(const Sample& s)
{
    Shape out;
    for (const auto d : s.ints) out.push_back(d == -1 ? ad::infer : std::size_t(d));
    return out;
}

Shape shape_from(const Sample& s, std::size_t first = 0)
{
    return Shape(s.ints.begin() + std::ptrdiff_t(first), s.ints.end());
}

std::vector<std::size_t> rows_from(const Sample& s, std::size_t first)
{
    return std::vector<std::size_t>(s.ints.begin() + std::ptrdiff_t(first), s.ints.end());
}

// Samples of a reduction along an axis ({axis, keepdims} in ints) over values from `make`.
template <class Make>
std::vector<Sample> along_axis_samples(Make make)
{
    return {
        {"[2, 3] along axis 0", {make(Shape{2, 3}, 1)}, {0, 0}},
        {"[2, 3] along axis 1, kept", {make(Shape{2, 3}, 2)}, {1, 1}},
        {"[2, 1, 3] along axis -1", {make(Shape{2, 1, 3}, 3)}, {-1, 0}},
        {"[2, 1, 3] along axis 1 (of size 1), kept", {make(Shape{2, 1, 3}, 4)}, {1, 1}},
        {"[3, 4, 2] along axis -2, kept", {make(Shape{3, 4, 2}, 5)}, {-2, 1}},
        {"[1, 5] along axis 1 (batch 1)", {make(Shape{1, 5}, 6)}, {1, 0}},
        {"[5] along axis 0, to a scalar", {make(Shape{5}, 7)}, {0, 0}},
        {"[5] along axis -1, kept", {make(Shape{5}, 8)}, {-1, 1}},
    };
}

// An axis out of range, each way, is refused naming the shape.
std::vector<Sample> bad_axes()
{
    return {{"[2, 3] along axis 2", {adtest::randn({2, 3}, 1)}, {2, 0}},
            {"[2, 3] along axis -3", {adtest::randn({2, 3}, 2)}, {-3, 1}}};
}

// y with y's axis d being x's axis axes[d] (negative axes count from the end), written out:
// y's element at index j is x's at the index whose axis axes[d] is j[d].
Tensor<double> permuted(const Tensor<double>& x, const std::vector<std::ptrdiff_t>& axes)
{
    const Shape xs = shape_of(x);
    Shape ys(xs.size());
    for (std::size_t d = 0; d < xs.size(); ++d) ys[d] = xs[axis_of(axes[d], xs.size())];
    Tensor<double> y = empty(ys);
    for_each_index(ys, [&](std::size_t k, const std::vector<std::size_t>& j) {
        std::vector<std::size_t> i(xs.size());
        for (std::size_t d = 0; d < xs.size(); ++d) i[axis_of(axes[d], xs.size())] = j[d];
        std::size_t at = 0;
        for (std::size_t d = 0; d < xs.size(); ++d) at = at * xs[d] + i[d];
        y.data()[k] = x.data()[at];
    });
    return y;
}

}  // namespace

void add_reduce_shape_ops(std::vector<Entry>& table)
{
    // --- reductions ---
    {
        auto e = make("sum", Kind::other, [](const auto& x, const Sample&) { return ad::sum(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const std::vector<double> v(in[0].data(), in[0].data() + in[0].size());
            return Tensor<double>(sum_of(v));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"scalar", {adtest::randn({}, 1)}},
                {"[5]", {adtest::randn({5}, 2)}},
                {"[2, 3]", {adtest::randn({2, 3}, 3)}},
                {"[2, 1, 3]", {adtest::randn({2, 1, 3}, 4)}},
                {"[37], more than a SIMD block", {adtest::randn({37}, 5)}},
                {"empty [0, 3]: zero", {empty({0, 3})}},
                {"overflow to inf", {Tensor<double>{1e308, 1e308, -1.0}}, {}, {}, false},
                {"inf and -inf: NaN", {Tensor<double>{inf, -inf, 1.0}}, {}, {}, false},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("sum along an axis", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::sum(x[0], s.ints[0], ad::KeepDims{s.ints[1] != 0}); });
        e.error_name = "sum";
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return reduce_reference(in[0], s.ints[0], s.ints[1] != 0, sum_of);
        };
        e.samples = [] {
            auto out = along_axis_samples([](const Shape& s, std::uint64_t seed) { return adtest::randn(s, seed); });
            out.push_back({"[0, 3] along the empty axis 0: zeros", {empty({0, 3})}, {0, 0}});
            out.push_back({"[2, 0] along the empty axis 1, kept: zeros", {empty({2, 0})}, {1, 1}});
            out.push_back({"[0, 3] along axis 1: empty", {empty({0, 3})}, {1, 0}});
            return out;
        };
        e.refused = bad_axes;
        table.push_back(e);
    }
    {
        auto e = make("mean", Kind::other, [](const auto& x, const Sample&) { return ad::mean(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const std::vector<double> v(in[0].data(), in[0].data() + in[0].size());
            return Tensor<double>(sum_of(v) / double(v.size()));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"scalar", {adtest::randn({}, 11)}},
                {"[5]", {adtest::randn({5}, 12)}},
                {"[2, 3]", {adtest::randn({2, 3}, 13)}},
                {"[2, 1, 3]", {adtest::randn({2, 1, 3}, 14)}},
                {"large magnitudes", {Tensor<double>{1e300, 3e300, -1e300}}, {}, {}, false},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("mean along an axis", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::mean(x[0], s.ints[0], ad::KeepDims{s.ints[1] != 0}); });
        e.error_name = "mean";
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return reduce_reference(in[0], s.ints[0], s.ints[1] != 0,
                                    [](const std::vector<double>& v) { return sum_of(v) / double(v.size()); });
        };
        e.samples = [] {
            auto out = along_axis_samples([](const Shape& s, std::uint64_t seed) { return adtest::randn(s, seed + 20); });
            out.push_back({"[0, 3] along axis 1: empty", {empty({0, 3})}, {1, 0}});
            return out;
        };
        e.refused = bad_axes;
        table.push_back(e);
    }
    {
        auto e = make("max", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::max(x[0], s.ints[0], ad::KeepDims{s.ints[1] != 0}); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return reduce_reference(in[0], s.ints[0], s.ints[1] != 0, max_of);
        };
        e.samples = [] {
            // distinct entries, 0.1 apart: no ties
            auto out = along_axis_samples([](const Shape& s, std::uint64_t seed) { return adtest::distinct(s, seed); });
            out.push_back({"[0, 3] along axis 1: empty", {empty({0, 3})}, {1, 0}});
            out.push_back({"ties and infinities along axis 1",
                           {tensor({3, 3}, {1.0, 1.0, 0.5, -inf, -inf, -inf, 2.0, inf, inf})}, {1, 0}, {}, false});
            out.push_back({"NaN along axis 0", {tensor({3, 2}, {1.0, nan, nan, 2.0, inf, 3.0})}, {0, 1}, {}, false});
            return out;
        };
        e.refused = [] {
            auto out = bad_axes();
            out.push_back({"[2, 0] along the empty axis 1", {empty({2, 0})}, {1, 0}});  // as PyTorch
            return out;
        };
        table.push_back(e);
    }
    {
        auto e = make("logsumexp", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::logsumexp(x[0], s.ints[0], ad::KeepDims{s.ints[1] != 0}); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return reduce_reference(in[0], s.ints[0], s.ints[1] != 0, logsumexp_of);
        };
        e.samples = [] {
            auto out = along_axis_samples([](const Shape& s, std::uint64_t seed) { return adtest::randn(s, seed + 40, 2.0); });
            out.push_back({"[0, 3] along axis 1: empty", {empty({0, 3})}, {1, 0}});
            out.push_back({"large magnitudes along axis 1",
                           {tensor({3, 3}, {1e3, -1e3, 999.0, -1e3, -1001.0, -1e3, 1e300, 0.0, -1e300})}, {1, 0}, {}, false});
            out.push_back({"infinities along axis 1",
                           {tensor({3, 2}, {-inf, 0.0, -inf, -inf, inf, 1.0})}, {1, 0}, {}, false});
            out.push_back({"NaN beside infinities along axis 1",
                           {tensor({3, 2}, {inf, nan, nan, -inf, -inf, nan})}, {1, 0}, {}, false});
            return out;
        };
        e.refused = bad_axes;
        table.push_back(e);
    }
    {
        auto e = make("norm", Kind::other, [](const auto& x, const Sample&) { return ad::norm(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            double s = 0;
            for (std::size_t i = 0; i < in[0].size(); ++i) s += in[0].data()[i] * in[0].data()[i];
            return Tensor<double>(std::sqrt(s));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"scalar", {Tensor<double>(-1.25)}},
                {"[5]", {adtest::randn({5}, 31)}},
                {"[2, 3]", {adtest::randn({2, 3}, 32)}},
                {"[2, 1, 3]", {adtest::randn({2, 1, 3}, 33)}},
                {"empty [0, 3]: zero", {empty({0, 3})}},
                {"zeros: zero, at the kink", {Tensor<double>{0.0, 0.0, -0.0}}, {}, {}, false},
                {"3, 4: 5", {Tensor<double>{3.0, -4.0}}, {}, {}, false},
            };
        };
        table.push_back(e);
    }

    // --- shape ops ---
    {
        auto e = make("reshape", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::reshape(x[0], reshape_target(s)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            Shape out;
            std::size_t known = 1;
            for (const auto d : s.ints)
                if (d >= 0) known *= std::size_t(d);
            for (const auto d : s.ints) out.push_back(d >= 0 ? std::size_t(d) : in[0].size() / known);
            return tensor(out, std::vector<double>(in[0].data(), in[0].data() + in[0].size()));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[2, 3] to [3, 2]", {adtest::randn({2, 3}, 41)}, {3, 2}},
                {"[2, 3] to [infer]", {adtest::randn({2, 3}, 42)}, {-1}},
                {"[2, 1, 3] to [3, infer]", {adtest::randn({2, 1, 3}, 43)}, {3, -1}},
                {"[6] to [1, infer, 1]", {adtest::randn({6}, 44)}, {1, -1, 1}},
                {"scalar to [1, 1]", {adtest::randn({}, 45)}, {1, 1}},
                {"[1] to a scalar", {adtest::randn({1}, 46)}, {}},
                {"empty [0, 3] to [infer, 3]", {empty({0, 3})}, {-1, 3}},
                {"empty [0, 3] to [3, 0, 2]", {empty({0, 3})}, {3, 0, 2}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[2, 3] to [4, 2]", {adtest::randn({2, 3}, 1)}, {4, 2}},
                {"[2, 3] to [infer, 4]", {adtest::randn({2, 3}, 2)}, {-1, 4}},
                {"[2, 3] to [infer, infer]", {adtest::randn({2, 3}, 3)}, {-1, -1}},
                {"[2, 3] to [2^64 - 2, 2^64 - 3]: too many elements", {adtest::randn({2, 3}, 4)}, {-2, -3}},
                {"[6] to a scalar", {adtest::randn({6}, 5)}, {}},
                {"empty [0, 3] to [0, infer]: the inferred size could be anything", {empty({0, 3})}, {0, -1}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("slice", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::slice(x[0], s.ints[0], s.ints[1], s.ints[2]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape xs = shape_of(in[0]);
            const std::size_t axis = axis_of(s.ints[0], xs.size());
            const auto n = std::ptrdiff_t(xs[axis]);
            const std::size_t start = std::size_t(s.ints[1] < 0 ? s.ints[1] + n : s.ints[1]);
            const std::size_t stop = std::size_t(s.ints[2] < 0 ? s.ints[2] + n : s.ints[2]);
            Shape ys = xs;
            ys[axis] = stop - start;
            Tensor<double> y = empty(ys);
            const Around a(xs, axis), b(ys, axis);
            for (std::size_t o = 0; o < a.outer; ++o)
                for (std::size_t j = 0; j < b.n; ++j)
                    for (std::size_t i = 0; i < a.inner; ++i) y.data()[b.at(o, j, i)] = in[0].data()[a.at(o, start + j, i)];
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                // The NaN test wants a NaN at the first, middle and last element to reach the
                // output, which a slice that cuts anything off cannot give: slices that cut are
                // value-only samples, and the gradient checks see whole-axis slices.
                {"[5] from -5 to 5, whole", {adtest::randn({5}, 51)}, {0, -5, 5}},
                {"[4, 3] along axis 0, whole", {adtest::randn({4, 3}, 52)}, {0, 0, 4}},
                {"[2, 3, 4] along axis -2 from -3 to 3, whole", {adtest::randn({2, 3, 4}, 55)}, {-2, -3, 3}},
                {"[5] from 1 to 4", {adtest::randn({5}, 51)}, {0, 1, 4}, {}, false},
                {"[4, 3] along axis 0 from 1 to 3", {adtest::randn({4, 3}, 52)}, {0, 1, 3}, {}, false},
                {"[4, 3] along axis 1 from -2 to 3", {adtest::randn({4, 3}, 53)}, {1, -2, 3}, {}, false},
                {"[4, 3] along axis -1 from 0 to -1", {adtest::randn({4, 3}, 54)}, {-1, 0, -1}, {}, false},
                {"[2, 3, 4] along axis 1 from 1 to 2", {adtest::randn({2, 3, 4}, 55)}, {1, 1, 2}, {}, false},
                {"[4, 3] along axis 0 from 2 to 2: empty", {adtest::randn({4, 3}, 57)}, {0, 2, 2}, {}, false},
                {"empty [0, 3] along axis 1 from 1 to 3", {empty({0, 3})}, {1, 1, 3}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[4, 3] along axis 0 from 1 to 5", {adtest::randn({4, 3}, 1)}, {0, 1, 5}},
                {"[4, 3] along axis 0 from 3 to 1", {adtest::randn({4, 3}, 2)}, {0, 3, 1}},
                {"[4, 3] along axis 1 from -5 to 2", {adtest::randn({4, 3}, 3)}, {1, -5, 2}},
                {"[4, 3] along axis 2", {adtest::randn({4, 3}, 4)}, {2, 0, 1}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("concat", Kind::other, [](const auto& x, const Sample& s) { return ad::concat(x, s.ints[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            Shape ys = shape_of(in[0]);
            const std::size_t axis = axis_of(s.ints[0], ys.size());
            ys[axis] = 0;
            for (const auto& t : in) ys[axis] += t.shape()[axis];
            Tensor<double> y = empty(ys);
            const Around b(ys, axis);
            std::size_t at = 0;  // where the current input starts along the axis
            for (const auto& t : in) {
                const Around a(shape_of(t), axis);
                for (std::size_t o = 0; o < a.outer; ++o)
                    for (std::size_t j = 0; j < a.n; ++j)
                        for (std::size_t i = 0; i < a.inner; ++i) y.data()[b.at(o, at + j, i)] = t.data()[a.at(o, j, i)];
                at += a.n;
            }
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[2, 3] and [1, 3] along axis 0", {randn({2, 3}, 61), randn({1, 3}, 62)}, {0}},
                {"[2, 3], [2, 2] and [2, 1] along axis 1", {randn({2, 3}, 63), randn({2, 2}, 64), randn({2, 1}, 65)}, {1}},
                {"[2, 1, 3] and [2, 2, 3] along axis -2", {randn({2, 1, 3}, 66), randn({2, 2, 3}, 67)}, {-2}},
                {"[2, 3, 1] and [2, 3, 2] along axis -1", {randn({2, 3, 1}, 68), randn({2, 3, 2}, 69)}, {-1}},
                {"[3], [2] and [1] along axis 0", {randn({3}, 70), randn({2}, 71), randn({1}, 72)}, {0}},
                {"empty [0, 3] and [2, 3] along axis 0", {empty({0, 3}), randn({2, 3}, 73)}, {0}},
                {"[2, 0] and [2, 0] along axis 1", {empty({2, 0}), empty({2, 0})}, {1}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[2, 3] and [2, 2] along axis 0", {randn({2, 3}, 1), randn({2, 2}, 2)}, {0}},
                {"[2, 3] and [3] along axis 0", {randn({2, 3}, 3), randn({3}, 4)}, {0}},
                {"[2, 3] and [2, 3] along axis 2", {randn({2, 3}, 5), randn({2, 3}, 6)}, {2}},
                {"two scalars", {randn({}, 7), randn({}, 8)}, {0}},  // as PyTorch: no axis to join on
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("broadcast_to", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::broadcast_to(x[0], shape_from(s)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape ys = shape_from(s), xs = shape_of(in[0]);
            Tensor<double> y = empty(ys);
            for_each_index(ys, [&](std::size_t k, const std::vector<std::size_t>& index) {
                y.data()[k] = in[0].data()[broadcast_offset(index, xs)];
            });
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[3, 1] to [3, 4]", {randn({3, 1}, 81)}, {3, 4}},
                {"[3] to [2, 3]", {randn({3}, 82)}, {2, 3}},
                {"scalar to [2, 2]", {randn({}, 83)}, {2, 2}},
                {"[2, 1, 3] to [4, 2, 5, 3]", {randn({2, 1, 3}, 84)}, {4, 2, 5, 3}},
                {"[1, 3] to [1, 3], unchanged", {randn({1, 3}, 85)}, {1, 3}},
                {"[3, 1] to [3, 0]: empty", {randn({3, 1}, 86)}, {3, 0}, {}, false},
                {"empty [0, 3] to [2, 0, 3]", {empty({0, 3})}, {2, 0, 3}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[3] to [4]", {randn({3}, 1)}, {4}},
                {"[2, 3] to [3]", {randn({2, 3}, 2)}, {3}},
                {"[2, 3] to [2, 1]", {randn({2, 3}, 3)}, {2, 1}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("sum_to", Kind::other, [](const auto& x, const Sample& s) { return ad::sum_to(x[0], shape_from(s)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape ys = shape_from(s), xs = shape_of(in[0]);
            Tensor<double> y = empty(ys);
            std::fill(y.data(), y.data() + y.size(), 0.0);
            for_each_index(xs, [&](std::size_t k, const std::vector<std::size_t>& index) {
                y.data()[broadcast_offset(index, ys)] += in[0].data()[k];
            });
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[3, 4] to [3, 1]", {randn({3, 4}, 91)}, {3, 1}},
                {"[3, 4] to [4]", {randn({3, 4}, 92)}, {4}},
                {"[3, 4] to [1, 4]", {randn({3, 4}, 93)}, {1, 4}},
                {"[2, 3] to a scalar", {randn({2, 3}, 94)}, {}},
                {"[2, 4, 3] to [4, 1]", {randn({2, 4, 3}, 95)}, {4, 1}},
                {"[2, 3] to [2, 3], unchanged", {randn({2, 3}, 96)}, {2, 3}},
                {"[1, 5] to [5] (batch 1)", {randn({1, 5}, 97)}, {5}},
                {"empty [0, 3] to [3]: zeros", {empty({0, 3})}, {3}},
                {"empty [0, 3] to [1, 3]: zeros", {empty({0, 3})}, {1, 3}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[3, 4] to [2, 4]", {randn({3, 4}, 1)}, {2, 4}},
                {"[3, 4] to [5]", {randn({3, 4}, 2)}, {5}},
                {"[2, 3] to [1, 1, 3]: more axes than the input", {randn({2, 3}, 3)}, {1, 1, 3}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("gather_rows", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::gather_rows(x[0], rows_from(s, 0)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            Shape ys = shape_of(in[0]);
            const std::size_t width = ys[0] ? in[0].size() / ys[0] : 0;
            ys[0] = s.ints.size();
            Tensor<double> y = empty(ys);
            for (std::size_t r = 0; r < s.ints.size(); ++r)
                for (std::size_t j = 0; j < width; ++j) y.data()[r * width + j] = in[0].data()[std::size_t(s.ints[r]) * width + j];
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            // every row gathered at least once (a NaN anywhere reaches the output), some twice
            return std::vector<Sample>{
                {"[4, 3], rows 2, 0, 2, 3, 1", {randn({4, 3}, 101)}, {2, 0, 2, 3, 1}},
                {"[5], elements 4, 0, 1, 2, 3, 0", {randn({5}, 102)}, {4, 0, 1, 2, 3, 0}},
                {"[3, 2, 2], rows 1, 2, 0", {randn({3, 2, 2}, 103)}, {1, 2, 0}},
                {"[1, 3], row 0 three times", {randn({1, 3}, 104)}, {0, 0, 0}},
                {"[4, 3], no rows: empty", {randn({4, 3}, 105)}, {}, {}, false},
                {"empty [0, 3], no rows", {empty({0, 3})}, {}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[4, 3], row 4", {adtest::randn({4, 3}, 1)}, {0, 4}},
                {"a scalar", {adtest::randn({}, 2)}, {0}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the number of rows of the result, then one index per row of x
        auto e = make("scatter_add_rows", Kind::other, [](const auto& x, const Sample& s) {
            return ad::scatter_add_rows(x[0], rows_from(s, 1), std::size_t(s.ints[0]));
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            Shape ys = shape_of(in[0]);
            const std::size_t n = s.ints.size() - 1, width = n ? in[0].size() / n : 0;
            ys[0] = std::size_t(s.ints[0]);
            Tensor<double> y = empty(ys);
            std::fill(y.data(), y.data() + y.size(), 0.0);
            for (std::size_t r = 0; r < n; ++r)
                for (std::size_t j = 0; j < width; ++j) y.data()[std::size_t(s.ints[r + 1]) * width + j] += in[0].data()[r * width + j];
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[5, 3] into 4 rows: 2, 0, 2, 3, 1", {randn({5, 3}, 111)}, {4, 2, 0, 2, 3, 1}},
                {"[3] into 2: 1, 1, 0", {randn({3}, 112)}, {2, 1, 1, 0}},
                {"[3, 2, 2] into 4 rows, one left zero: 0, 3, 1", {randn({3, 2, 2}, 113)}, {4, 0, 3, 1}},
                {"[1, 3] into 1 row", {randn({1, 3}, 114)}, {1, 0}},
                {"empty [0, 3] into 3 rows: zeros", {empty({0, 3})}, {3}},
                {"empty [0, 3] into 0 rows", {empty({0, 3})}, {0}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[3, 2] with 2 indices", {randn({3, 2}, 1)}, {4, 0, 1}},
                {"[2, 2] into 3 rows, index 5", {randn({2, 2}, 2)}, {3, 0, 5}},
                {"a scalar", {randn({}, 3)}, {1, 0}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the axis, then the indices
        auto e = make("index_select", Kind::other, [](const auto& x, const Sample& s) {
            return ad::index_select(x[0], s.ints[0], rows_from(s, 1));
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape xs = shape_of(in[0]);
            const std::size_t axis = axis_of(s.ints[0], xs.size());
            Shape ys = xs;
            ys[axis] = s.ints.size() - 1;
            Tensor<double> y = empty(ys);
            const Around a(xs, axis), b(ys, axis);
            for (std::size_t o = 0; o < a.outer; ++o)
                for (std::size_t k = 0; k < b.n; ++k)
                    for (std::size_t i = 0; i < a.inner; ++i)
                        y.data()[b.at(o, k, i)] = in[0].data()[a.at(o, std::size_t(s.ints[k + 1]), i)];
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[4, 3] along axis 0: 3, 0, 3, 1 (first, last, repeated)", {randn({4, 3}, 121)}, {0, 3, 0, 3, 1}},
                {"[4, 3] along axis 1: 2, 2, 0", {randn({4, 3}, 122)}, {1, 2, 2, 0}},
                {"[2, 3, 4] along axis -1: 3, 0, 1, 2, 0", {randn({2, 3, 4}, 123)}, {-1, 3, 0, 1, 2, 0}},
                {"[2, 3, 4] along axis 1: 1", {randn({2, 3, 4}, 124)}, {1, 1}},
                {"[5] along axis 0: 4, 4, 4", {randn({5}, 125)}, {0, 4, 4, 4}},
                {"[1, 3] along axis 0: 0, 0", {randn({1, 3}, 126)}, {0, 0, 0}},
                {"[4, 3] along axis 1, no indices: empty", {randn({4, 3}, 127)}, {1}, {}, false},
                {"empty [0, 3] along axis 1: 2, 0", {empty({0, 3})}, {1, 2, 0}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[4, 3] along axis 0: index 4", {randn({4, 3}, 1)}, {0, 1, 4}},
                {"[4, 3] along axis 1: index 3", {randn({4, 3}, 2)}, {1, 3}},
                {"[4, 3] along axis 2", {randn({4, 3}, 3)}, {2, 0}},
                {"[4, 3] along axis -3", {randn({4, 3}, 4)}, {-3, 0}},
                {"a scalar", {randn({}, 5)}, {0, 0}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the axis, the size along it, then one index per slice of x
        auto e = make("index_add", Kind::other, [](const auto& x, const Sample& s) {
            return ad::index_add(x[0], s.ints[0], rows_from(s, 2), std::size_t(s.ints[1]));
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape xs = shape_of(in[0]);
            const std::size_t axis = axis_of(s.ints[0], xs.size());
            Shape ys = xs;
            ys[axis] = std::size_t(s.ints[1]);
            Tensor<double> y = empty(ys);
            std::fill(y.data(), y.data() + y.size(), 0.0);
            const Around a(xs, axis), b(ys, axis);
            for (std::size_t o = 0; o < a.outer; ++o)
                for (std::size_t k = 0; k < a.n; ++k)
                    for (std::size_t i = 0; i < a.inner; ++i)
                        y.data()[b.at(o, std::size_t(s.ints[k + 2]), i)] += in[0].data()[a.at(o, k, i)];
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[4, 3] along axis 0 into 5: 4, 0, 4, 2", {randn({4, 3}, 131)}, {0, 5, 4, 0, 4, 2}},
                {"[2, 3] along axis 1 into 2: 1, 1, 0", {randn({2, 3}, 132)}, {1, 2, 1, 1, 0}},
                {"[2, 2, 3] along axis -2 into 4: 3, 0", {randn({2, 2, 3}, 133)}, {-2, 4, 3, 0}},
                {"[3] along axis 0 into 1: 0, 0, 0", {randn({3}, 134)}, {0, 1, 0, 0, 0}},
                {"empty [2, 0] along axis 1 into 3: zeros", {empty({2, 0})}, {1, 3}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[3, 2] along axis 0 with 2 indices", {randn({3, 2}, 1)}, {0, 4, 0, 1}},
                {"[2, 2] along axis 0 into 3, index 3", {randn({2, 2}, 2)}, {0, 3, 0, 3}},
                {"[2, 2] along axis 2", {randn({2, 2}, 3)}, {2, 3, 0, 1}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the axis, the index
        auto e = make("select", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::select(x[0], s.ints[0], s.ints[1]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape xs = shape_of(in[0]);
            const std::size_t axis = axis_of(s.ints[0], xs.size());
            const std::size_t i0 = std::size_t(s.ints[1] < 0 ? s.ints[1] + std::ptrdiff_t(xs[axis]) : s.ints[1]);
            Shape ys = xs;
            ys.erase(ys.begin() + std::ptrdiff_t(axis));
            Tensor<double> y = empty(ys);
            const Around a(xs, axis);
            for (std::size_t o = 0; o < a.outer; ++o)
                for (std::size_t i = 0; i < a.inner; ++i) y.data()[o * a.inner + i] = in[0].data()[a.at(o, i0, i)];
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[4, 3] row 0 (first)", {randn({4, 3}, 141)}, {0, 0}},
                {"[4, 3] row -1 (last)", {randn({4, 3}, 142)}, {0, -1}},
                {"[4, 3] column 1", {randn({4, 3}, 143)}, {1, 1}},
                {"[2, 3, 4] along axis -1 at 3", {randn({2, 3, 4}, 144)}, {-1, 3}},
                {"[5] element 2: a scalar", {randn({5}, 145)}, {0, 2}},
                {"empty [0, 3] column 2", {empty({0, 3})}, {1, 2}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[4, 3] row 4", {randn({4, 3}, 1)}, {0, 4}},
                {"[4, 3] row -5", {randn({4, 3}, 2)}, {0, -5}},
                {"[4, 3] along axis 2", {randn({4, 3}, 3)}, {2, 0}},
                {"a scalar", {randn({}, 4)}, {0, 0}},
                {"empty [0, 3] row 0", {empty({0, 3})}, {0, 0}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the axes; y's axis d is x's axis ints[d]
        auto e = make("permute", Kind::other, [](const auto& x, const Sample& s) { return ad::permute(x[0], s.ints); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) { return permuted(in[0], s.ints); };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[2, 3, 4] to 2, 0, 1", {randn({2, 3, 4}, 151)}, {2, 0, 1}},
                {"[2, 3, 4, 5] to 0, 2, 1, 3 (heads)", {randn({2, 3, 4, 5}, 152)}, {0, 2, 1, 3}},
                {"[2, 3, 4] to -1, -3, -2", {randn({2, 3, 4}, 153)}, {-1, -3, -2}},
                {"[2, 3] to 1, 0", {randn({2, 3}, 154)}, {1, 0}},
                {"[2, 3, 4] to 0, 1, 2 (the identity)", {randn({2, 3, 4}, 155)}, {0, 1, 2}},
                {"[5] to 0", {randn({5}, 156)}, {0}},
                {"scalar, no axes", {randn({}, 157)}, {}},
                {"empty [2, 0, 3] to 2, 1, 0", {empty({2, 0, 3})}, {2, 1, 0}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[2, 3, 4] to 0, 0, 1 (repeated)", {randn({2, 3, 4}, 1)}, {0, 0, 1}},
                {"[2, 3, 4] to 0, 1, 3 (out of range)", {randn({2, 3, 4}, 2)}, {0, 1, 3}},
                {"[2, 3, 4] to 0, -4, 1 (out of range)", {randn({2, 3, 4}, 3)}, {0, -4, 1}},
                {"[2, 3, 4] to 1, 0 (too few)", {randn({2, 3, 4}, 4)}, {1, 0}},
                {"[2, 3] to 2, 0, 1 (too many)", {randn({2, 3}, 5)}, {2, 0, 1}},
                {"[2, 3] to 1, -1 (the same axis twice)", {randn({2, 3}, 6)}, {1, -1}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the two axes to swap
        auto e = make("transpose of two axes", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::transpose(x[0], s.ints[0], s.ints[1]); });
        e.error_name = "transpose";
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            std::vector<std::ptrdiff_t> axes;
            const auto r = std::ptrdiff_t(in[0].dimension());
            for (std::ptrdiff_t d = 0; d < r; ++d) axes.push_back(d);
            std::swap(axes[axis_of(s.ints[0], std::size_t(r))], axes[axis_of(s.ints[1], std::size_t(r))]);
            return permuted(in[0], axes);
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[2, 3, 4] axes 1 and 2", {randn({2, 3, 4}, 161)}, {1, 2}},
                {"[2, 3, 4, 5] axes 1 and 2 (heads)", {randn({2, 3, 4, 5}, 162)}, {1, 2}},
                {"[2, 3, 4] axes -1 and -2", {randn({2, 3, 4}, 163)}, {-1, -2}},
                {"[2, 3, 4] axes 2 and 0", {randn({2, 3, 4}, 164)}, {2, 0}},
                {"[2, 3] axes 0 and 0 (the identity)", {randn({2, 3}, 165)}, {0, 0}},
                {"empty [0, 3, 2] axes 0 and 2", {empty({0, 3, 2})}, {0, 2}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"[2, 3, 4] axes 1 and 3", {randn({2, 3, 4}, 1)}, {1, 3}},
                {"[2, 3, 4] axes -4 and 0", {randn({2, 3, 4}, 2)}, {-4, 0}},
                {"a scalar, axes 0 and 0", {randn({}, 3)}, {0, 0}},
            };
        };
        table.push_back(e);
    }
}

}  // namespace optable
