// Reductions over all elements or one axis (every axis, counted from either end, keepdims both
// ways): values against the formulas applied to each slice, gradients against their closed forms
// and central differences, and the documented choices at ties and at 0.
#include "gradcheck_helpers.hpp"

#include <xtensor/xmath.hpp>

#include <cmath>
#include <limits>
#include <numeric>

using namespace adtest;
using ad::Tape;

namespace {

using Slice = std::function<double(const std::vector<double>&)>;

// f applied to every slice of x along `axis`: the reference for a reduction.
Tensor<double> reduce_slices(const Tensor<double>& x, std::size_t axis, bool keepdims, const Slice& f)
{
    std::size_t outer = 1, n = x.shape()[axis], inner = 1;
    for (std::size_t i = 0; i < x.dimension(); ++i) {
        if (i < axis) outer *= x.shape()[i];
        if (i > axis) inner *= x.shape()[i];
    }
    Shape shape(x.shape().begin(), x.shape().end());
    if (keepdims) shape[axis] = 1;
    else shape.erase(shape.begin() + std::ptrdiff_t(axis));
    Tensor<double> y = Tensor<double>::from_shape(shape);
    for (std::size_t o = 0; o < outer; ++o)
        for (std::size_t i = 0; i < inner; ++i) {
            std::vector<double> s(n);
            for (std::size_t j = 0; j < n; ++j) s[j] = x.flat((o * n + j) * inner + i);
            y.flat(o * inner + i) = f(s);
        }
    return y;
}

double total(const std::vector<double>& s) { return std::accumulate(s.begin(), s.end(), 0.0); }
double average(const std::vector<double>& s) { return total(s) / double(s.size()); }
double largest(const std::vector<double>& s) { return *std::max_element(s.begin(), s.end()); }
double log_sum_exp(const std::vector<double>& s)  // the naive formula: fine for moderate inputs
{
    double t = 0;
    for (double v : s) t += std::exp(v);
    return std::log(t);
}

// At 1e-13 relative: the slices' sums cancel to at most 1/67 of their sum |x| for the seeds used
// here, so two summation orders stay within 4.4e-14 of each other.
void check_close(const Tensor<double>& got, const Tensor<double>& want)
{
    CAPTURE(got, want);
    REQUIRE(got.shape() == want.shape());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got.flat(i) == Approx(want.flat(i)).epsilon(1e-13));
}

const std::vector<Shape> shapes{{4}, {2, 3}, {2, 3, 4}};

using AxisOp = Var<double> (*)(const Var<double>&, std::ptrdiff_t, ad::KeepDims);

// An axis reduction over every axis of every shape, keepdims both ways: its value against the
// formula on each slice, and its gradient against central differences.
void check_axis_reduction(AxisOp op, const Slice& formula, const Tensor<double>& x, std::ptrdiff_t axis, bool keepdims)
{
    CAPTURE(x.shape(), axis, keepdims);
    const auto rank = std::ptrdiff_t(x.dimension());
    const auto ax = std::size_t(axis < 0 ? axis + rank : axis);
    Tape<double> tape;
    check_close(op(tape.constant(x), axis, ad::KeepDims{keepdims}).value(), reduce_slices(x, ax, keepdims, formula));
    require_gradcheck([=](const Vars& v) { return op(v[0], axis, ad::KeepDims{keepdims}); }, {x});
}

}  // namespace

TEST_CASE("sum(x) adds every element, and d sum(x) = g at every element", "[ops][reduce]")
{
    const Shape shape = GENERATE(Shape{}, Shape{4}, Shape{2, 3}, Shape{2, 3, 4});
    const Tensor<double> x = randn(shape, 1);
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = ad::sum(xv);
    CHECK(y.dimension() == 0);
    // The op's reduction (its order set by the vector width) against a loop: two sums of n terms
    // differ by at most 2 (n - 1) ulps of sum |x|. Relative to the sum that is unbounded: these four
    // terms of seed 1 cancel to 1/117 of sum |x|.
    const double bound = double(x.size()) * std::numeric_limits<double>::epsilon() * xt::sum(xt::abs(x))();
    CHECK(y.item() == Approx(std::accumulate(x.begin(), x.end(), 0.0)).epsilon(0).margin(bound));
    const Tensor<double> g = ad::vjp(y, Tensor<double>(2.5), {xv})[0];
    CHECK_THAT(g, Equals(Tensor<double>(x * 0.0 + 2.5)));
    require_gradcheck([](const Vars& v) { return ad::sum(v[0]); }, {x});
}

TEST_CASE("mean(x) = sum(x) / n, and d mean(x) = g / n at every element", "[ops][reduce]")
{
    const Shape shape = GENERATE(Shape{}, Shape{4}, Shape{2, 3}, Shape{2, 3, 4});
    const Tensor<double> x = randn(shape, 2);
    const double n = double(x.size());
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = ad::mean(xv);
    // as for sum: a sum in another order, within 2 (n - 1) ulps of sum |x|, then divided by n
    const double bound = std::numeric_limits<double>::epsilon() * xt::sum(xt::abs(x))();
    CHECK(y.item() == Approx(std::accumulate(x.begin(), x.end(), 0.0) / n).epsilon(0).margin(bound));
    CHECK_THAT(ad::grad(y, {xv})[0], Equals(Tensor<double>(x * 0.0 + 1 / n)));
    require_gradcheck([](const Vars& v) { return ad::mean(v[0]); }, {x});
}

TEST_CASE("sum along an axis, every axis from either end, keepdims or not", "[ops][reduce]")
{
    const Shape shape = GENERATE(from_range(shapes));
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    const bool keepdims = GENERATE(false, true);
    check_axis_reduction(ad::sum<double>, total, randn(shape, 3), axis, keepdims);
}

TEST_CASE("mean along an axis is the sum over the axis divided by its length", "[ops][reduce]")
{
    const Shape shape = GENERATE(from_range(shapes));
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    const bool keepdims = GENERATE(false, true);
    check_axis_reduction(ad::mean<double>, average, randn(shape, 4), axis, keepdims);
}

TEST_CASE("max along an axis, with its gradient at the maximal element, away from ties", "[ops][reduce]")
{
    const Shape shape = GENERATE(from_range(shapes));
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    const bool keepdims = GENERATE(false, true);
    check_axis_reduction(ad::max<double>, largest, distinct(shape, 5), axis, keepdims);
}

TEST_CASE("logsumexp along an axis equals log(sum(exp(x))) and its gradient is softmax(x)", "[ops][reduce]")
{
    const Shape shape = GENERATE(from_range(shapes));
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    const bool keepdims = GENERATE(false, true);
    const Tensor<double> x = randn(shape, 6, 2.0);
    check_axis_reduction(ad::logsumexp<double>, log_sum_exp, x, axis, keepdims);

    // d logsumexp / dx_j = exp(x_j) / sum_k exp(x_k)
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const Tensor<double> g = ad::grad(ad::sum(ad::logsumexp(xv, axis, ad::KeepDims{keepdims})), {xv})[0];
    const auto ax = std::size_t(axis < 0 ? axis + rank : axis);
    const Tensor<double> sums = reduce_slices(x, ax, true, [](const std::vector<double>& s) {
        double t = 0;
        for (double v : s) t += std::exp(v);
        return t;
    });
    check_close(g, Tensor<double>(xt::exp(x) / sums));
}

TEST_CASE("logsumexp is NaN over a slice holding a NaN, whatever infinities are beside it", "[ops][reduce][nan]")
{
    // As PyTorch: the NaN reaches its slice's result even where the maximum alone would decide
    // it (a slice of one element, a slice with +inf, a slice otherwise -inf), and only there.
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{{nan, -inf}, {inf, nan}, {-inf, nan}, {1.0, inf}, {-inf, 0.0}});
    const Tensor<double> y = ad::logsumexp(x, 1).value();
    CHECK(std::isnan(y(0)));
    CHECK(std::isnan(y(1)));
    CHECK(std::isnan(y(2)));
    CHECK(y(3) == inf);
    CHECK(y(4) == 0.0);
    Tensor<double> one = Tensor<double>::from_shape({1, 1});
    one(0, 0) = nan;
    CHECK(std::isnan(ad::logsumexp(tape.variable(one), 1).value()(0)));
}

TEST_CASE("norm(x) = sqrt(sum x^2) with d norm(x) = g x / norm(x)", "[ops][reduce]")
{
    const Shape shape = GENERATE(Shape{}, Shape{4}, Shape{2, 3}, Shape{2, 3, 4});
    const Tensor<double> x = randn(shape, 7);
    double ss = 0;
    for (double v : x) ss += v * v;
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = ad::norm(xv);
    CHECK(y.dimension() == 0);
    CHECK(y.item() == Approx(std::sqrt(ss)).epsilon(1e-14));
    check_close(ad::grad(y, {xv})[0], Tensor<double>(x / std::sqrt(ss)));
    require_gradcheck([](const Vars& v) { return ad::norm(v[0]); }, {x});
}

TEST_CASE("norm of the zero vector is 0 with gradient 0", "[ops][reduce][kinks]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{0.0, 0.0, 0.0});
    const auto y = ad::norm(x);
    CHECK(y.item() == 0.0);
    CHECK_THAT(ad::grad(y, {x})[0], Equals({0.0, 0.0, 0.0}));
}

TEST_CASE("max along an axis with ties sends the gradient to the first maximal element", "[ops][reduce][kinks]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{{1.0, 3.0, 3.0}, {2.0, 2.0, 2.0}});
    const auto along_rows = ad::max(x, 1);
    CHECK_THAT(along_rows.value(), Equals({3.0, 2.0}));
    CHECK_THAT(ad::vjp(along_rows, Tensor<double>{10.0, 20.0}, {x})[0],
               Equals(Tensor<double>{{0.0, 10.0, 0.0}, {20.0, 0.0, 0.0}}));
    const auto along_columns = ad::max(x, 0, ad::keepdims);
    CHECK_THAT(along_columns.value(), Equals(Tensor<double>{{2.0, 3.0, 3.0}}));
    CHECK_THAT(ad::vjp(along_columns, Tensor<double>{{1.0, 2.0, 4.0}}, {x})[0],
               Equals(Tensor<double>{{0.0, 2.0, 4.0}, {1.0, 0.0, 0.0}}));
}

TEST_CASE("a reduction of a reduction: the variance mean((x - mean(x))^2) along rows", "[ops][reduce]")
{
    const Tensor<double> x = randn({3, 5}, 8);
    require_gradcheck(
        [](const Vars& v) {
            const auto centred = v[0] - ad::mean(v[0], -1, ad::keepdims);
            return ad::mean(ad::square(centred), -1);
        },
        {x});
}
