// Shape ops move values without arithmetic, so each VJP moves g back the same way: values are
// checked element by element against index arithmetic, gradients against central differences.
#include "gradcheck_helpers.hpp"

#include <xtensor/xbroadcast.hpp>

#include <type_traits>
#include <utility>

using namespace adtest;
using ad::Tape;

namespace {

// A row-major tensor seen as outer x n x inner around one axis.
struct Around {
    std::size_t outer = 1, n = 1, inner = 1;
    Around(const Shape& s, std::size_t axis)
    {
        for (std::size_t i = 0; i < s.size(); ++i) (i < axis ? outer : i == axis ? n : inner) *= s[i];
    }
};

std::size_t positive(std::ptrdiff_t axis, std::size_t rank) { return std::size_t(axis < 0 ? axis + std::ptrdiff_t(rank) : axis); }

}  // namespace

TEST_CASE("reshape keeps the row-major order of the elements, with ad::infer worked out", "[ops][shape]")
{
    using Target = std::pair<Shape, Shape>;
    const Target target = GENERATE(Target{{4, 6}, {4, 6}}, Target{{ad::infer}, {24}}, Target{{3, ad::infer, 2}, {3, 4, 2}},
                                   Target{{24, 1}, {24, 1}}, Target{{2, 3, 4}, {2, 3, 4}}, Target{{ad::infer, 1, 1}, {24, 1, 1}});
    CAPTURE(target.first);
    const Tensor<double> x = randn({2, 3, 4}, 1);
    Tape<double> tape;
    const auto y = ad::reshape(tape.constant(x), target.first);
    REQUIRE(y.shape() == target.second);
    CHECK(std::equal(x.begin(), x.end(), y.value().begin()));
    require_gradcheck([&](const Vars& v) { return ad::reshape(v[0], target.first); }, {x});
}

TEST_CASE("shape(), reshape, broadcast_to, sum_to and the conv adjoints exchange the one type ad::Shape", "[ops][shape]")
{
    using ad::Var;
    static_assert(std::is_same<decltype(std::declval<const Var<double>&>().shape()), const Shape&>::value);
    static_assert(std::is_same<decltype(std::declval<const Var<float>&>().shape()), const Shape&>::value);
    static_assert(std::is_same<decltype(std::declval<const Tensor<double>&>().shape()), const Shape&>::value);
    using ToShape = Var<double> (*)(const Var<double>&, const Shape&);
    static_assert(std::is_same<decltype(&ad::reshape<double>), ToShape>::value);
    static_assert(std::is_same<decltype(&ad::broadcast_to<double>), ToShape>::value);
    static_assert(std::is_same<decltype(&ad::sum_to<double>), ToShape>::value);
    using ConvAdjoint = Var<double> (*)(const Var<double>&, const Var<double>&, const Shape&, const ad::Conv2dOptions&);
    static_assert(std::is_same<decltype(&ad::conv2d_input_grad<double>), ConvAdjoint>::value);
    static_assert(std::is_same<decltype(&ad::conv2d_weight_grad<double>), ConvAdjoint>::value);
    static_assert(ad::infer == std::size_t(-1));

    // One op's shape() is the next op's argument, as is, no conversion written.
    Tape<double> tape;
    const Tensor<double> a = randn({2, 3, 4}, 21), b = randn({6, 4}, 22), row = randn({4}, 23);
    const auto x = tape.variable(a), y = tape.variable(b);
    const auto same = ad::reshape(x, x.shape());
    CHECK(same.shape() == x.shape());
    CHECK(std::equal(a.begin(), a.end(), same.value().begin()));
    const auto flat = ad::reshape(x, y.shape());
    CHECK(flat.shape() == Shape{6, 4});
    CHECK(ad::reshape(flat, x.shape()).value() == a);
    const auto r = tape.variable(row);
    const auto wide = ad::broadcast_to(r, y.shape());
    REQUIRE(wide.shape() == y.shape());
    for (std::size_t i = 0; i < 6; ++i)
        for (std::size_t j = 0; j < 4; ++j) CHECK(wide.value()(i, j) == row(j));
    const auto back = ad::sum_to(wide, r.shape());
    REQUIRE(back.shape() == r.shape());
    for (std::size_t j = 0; j < 4; ++j) CHECK(back.value()(j) == Approx(6 * row(j)).epsilon(1e-15));
    // A rank-4 shape is held inline: copying one does not allocate.
    Shape copy = tape.variable(randn({2, 1, 3, 2}, 24)).shape();
    CHECK(copy.on_stack());
}

TEST_CASE("reshape refuses a misused ad::infer, naming the op, the target and the input shape", "[ops][shape][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({2, 3}, 25));
    using Catch::Matchers::Contains;
    CHECK_THROWS_AS(ad::reshape(x, {ad::infer, ad::infer}), ad::Error);
    CHECK_THROWS_WITH(ad::reshape(x, {ad::infer, ad::infer}),
                      "reshape (tape position 1): at most one dimension can be ad::infer, got [infer, infer] for input "
                      "shape [2, 3]");
    CHECK_THROWS_AS(ad::reshape(x, {ad::infer, 4}), ad::Error);
    CHECK_THROWS_WITH(ad::reshape(x, {ad::infer, 4}),
                      Contains("reshape") && Contains("[infer, 4]") && Contains("6 elements") && Contains("[2, 3]"));
    CHECK_THROWS_WITH(ad::reshape(x, {2, ad::infer, 2, ad::infer}), Contains("at most one") && Contains("[2, infer, 2, infer]"));
    // With a zero among the other dimensions the inferred size could be anything.
    const auto e = tape.variable(Tensor<double>::from_shape({0, 3}));
    CHECK_THROWS_WITH(ad::reshape(e, {0, ad::infer}), Contains("reshape") && Contains("[0, infer]") && Contains("[0, 3]"));
    CHECK(ad::reshape(e, {ad::infer, 3}).shape() == Shape{0, 3});
}

TEST_CASE("slice(x, axis, start, stop) keeps start <= i < stop along the axis, negative ends counted from the end", "[ops][shape]")
{
    const Shape shape = GENERATE(Shape{6}, Shape{4, 5}, Shape{4, 5, 3});
    const auto rank = std::ptrdiff_t(shape.size());
    const std::ptrdiff_t axis = GENERATE_COPY(range(-rank, rank));
    const std::size_t ax = positive(axis, shape.size());
    const auto n = std::ptrdiff_t(shape[ax]);
    using Ends = std::pair<std::ptrdiff_t, std::ptrdiff_t>;
    const Ends ends = GENERATE_COPY(Ends{1, 3}, Ends{0, n}, Ends{-2, n}, Ends{-3, -1}, Ends{2, 2});
    CAPTURE(shape, axis, ends.first, ends.second);
    const Tensor<double> x = randn(shape, 2);
    Tape<double> tape;
    const auto y = ad::slice(tape.constant(x), axis, ends.first, ends.second);

    const std::size_t start = positive(ends.first, std::size_t(n)), stop = positive(ends.second, std::size_t(n));
    Shape expected = shape;
    expected[ax] = stop - start;
    REQUIRE(y.shape() == expected);
    const Around in(shape, ax), out(expected, ax);
    for (std::size_t o = 0; o < in.outer; ++o)
        for (std::size_t j = 0; j < out.n; ++j)
            for (std::size_t i = 0; i < in.inner; ++i)
                CHECK(y.value().flat((o * out.n + j) * in.inner + i) == x.flat((o * in.n + start + j) * in.inner + i));
    require_gradcheck([=](const Vars& v) { return ad::slice(v[0], axis, ends.first, ends.second); }, {x});
}

TEST_CASE("concat joins tensors along an axis, and d concat hands each input its piece of g", "[ops][shape]")
{
    const std::ptrdiff_t axis = GENERATE(0, 1, 2, -1, -3);
    const std::size_t ax = positive(axis, 3);
    CAPTURE(axis);
    // Three inputs of lengths 1, 3 and 2 along the axis, [2, 4, 3] elsewhere.
    std::vector<Tensor<double>> xs;
    for (std::size_t len : {1, 3, 2}) {
        Shape s{2, 4, 3};
        s[ax] = len;
        xs.push_back(randn(s, 3 + len));
    }
    Tape<double> tape;
    const auto y = ad::concat<double>({tape.constant(xs[0]), tape.constant(xs[1]), tape.constant(xs[2])}, axis);
    Shape expected{2, 4, 3};
    expected[ax] = 6;
    REQUIRE(y.shape() == expected);
    const Around out(expected, ax);
    std::size_t offset = 0;
    for (const auto& x : xs) {
        const Around in(Shape(x.shape().begin(), x.shape().end()), ax);
        for (std::size_t o = 0; o < in.outer; ++o)
            for (std::size_t j = 0; j < in.n; ++j)
                for (std::size_t i = 0; i < in.inner; ++i)
                    CHECK(y.value().flat((o * out.n + offset + j) * in.inner + i) == x.flat((o * in.n + j) * in.inner + i));
        offset += in.n;
    }
    require_gradcheck([=](const Vars& v) { return ad::concat(v, axis); }, xs);
}

TEST_CASE("concat of one tensor needing a gradient and one constant", "[ops][shape]")
{
    const Tensor<double> a = randn({2, 3}, 7), c = randn({2, 2}, 8);
    require_gradcheck(
        [&](const Vars& v) { return ad::tanh(ad::concat<double>({v[0], v[0].tape().constant(c)}, 1)); }, {a});
}

TEST_CASE("broadcast_to repeats x along new and stretched axes, and its VJP sums g back", "[ops][shape]")
{
    using Case = std::pair<Shape, Shape>;
    const Case c = GENERATE(Case{{3}, {2, 3}}, Case{{3, 1}, {3, 4}}, Case{{}, {2, 2}}, Case{{1, 4}, {2, 3, 4}},
                            Case{{2, 1, 3}, {2, 4, 3}}, Case{{2, 3}, {2, 3}});
    CAPTURE(c.first, c.second);
    const Tensor<double> x = randn(c.first, 9);
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = ad::broadcast_to(xv, c.second);
    CHECK_THAT(y.value(), Equals(Tensor<double>(xt::broadcast(x, c.second))));
    // d sum(broadcast_to(x)) / dx counts the copies of each element.
    Tensor<double> copies = x;
    copies.fill(double(y.size() / x.size()));
    CHECK_THAT(ad::grad(ad::sum(y), {xv})[0], Equals(copies));
    require_gradcheck([&](const Vars& v) { return ad::broadcast_to(v[0], c.second); }, {x});
}

TEST_CASE("sum_to is broadcast_to in reverse: sum_to(broadcast_to(x, s), x.shape) = (|s| / |x|) x", "[ops][shape]")
{
    using Case = std::pair<Shape, Shape>;
    const Case c = GENERATE(Case{{3}, {2, 3}}, Case{{3, 1}, {3, 4}}, Case{{}, {2, 2}}, Case{{1, 4}, {2, 3, 4}},
                            Case{{2, 1, 3}, {2, 4, 3}}, Case{{2, 3}, {2, 3}});
    CAPTURE(c.first, c.second);
    const Tensor<double> x = randn(c.first, 11), big = randn(c.second, 12);
    Tape<double> tape;
    const auto back = ad::sum_to(ad::broadcast_to(tape.variable(x), c.second), c.first);
    const double copies = double(xt::broadcast(x, c.second).size() / std::max<std::size_t>(x.size(), 1));
    CHECK(xt::allclose(back.value(), copies * x, 1e-15, 0.0));
    // sum_to of any tensor: the sums over the broadcast axes, as xtensor's broadcasting defines them
    const auto s = ad::sum_to(tape.variable(big), c.first);
    REQUIRE(std::equal(s.shape().begin(), s.shape().end(), c.first.begin(), c.first.end()));
    CHECK(xt::allclose(ad::sum(s).value(), Tensor<double>(xt::sum(big)), 1e-13, 0.0));
    require_gradcheck([&](const Vars& v) { return ad::sum_to(v[0], c.first); }, {big});
    // the input read again after sum_to: its VJP adds into a gradient already begun
    require_gradcheck([&](const Vars& v) { return ad::sum(ad::sum_to(v[0], c.first)) + ad::sum(v[0] * v[0]); }, {big});
    CHECK_THROWS_WITH(ad::sum_to(tape.variable(big), {5, 7}), Catch::Matchers::Contains("sum_to"));
}

TEST_CASE("scatter_add_rows is gather_rows in reverse: row idx_i gets x_i added", "[ops][shape]")
{
    const Shape shape = GENERATE(Shape{5}, Shape{5, 3}, Shape{5, 2, 2});
    const std::vector<std::size_t> idx{4, 0, 4, 2, 4};
    const Tensor<double> x = randn(shape, 13);
    const std::size_t width = x.size() / 5;
    Tape<double> tape;
    const auto y = ad::scatter_add_rows(tape.variable(x), idx, 6);
    REQUIRE(y.shape()[0] == 6);
    for (std::size_t r = 0; r < 6; ++r)
        for (std::size_t j = 0; j < width; ++j) {
            double want = 0;
            for (std::size_t i = 0; i < idx.size(); ++i)
                if (idx[i] == r) want += x.flat(i * width + j);
            CHECK(y.value().flat(r * width + j) == Approx(want).epsilon(1e-15));
        }
    require_gradcheck([&](const Vars& v) { return ad::scatter_add_rows(v[0], idx, 6); }, {x});
    CHECK_THROWS_WITH(ad::scatter_add_rows(tape.variable(x), {0, 9, 0, 0, 0}, 6),
                      Catch::Matchers::Contains("scatter_add_rows") && Catch::Matchers::Contains("index 9"));
}

TEST_CASE("gather_rows picks x(idx_i) and adds the gradients of repeated rows", "[ops][shape]")
{
    const Shape shape = GENERATE(Shape{5}, Shape{5, 3}, Shape{5, 2, 2});
    const std::vector<std::size_t> idx{4, 0, 4, 2, 4};
    const Tensor<double> x = randn(shape, 10);
    const std::size_t width = x.size() / 5;
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto y = ad::gather_rows(xv, idx);
    Shape expected = shape;
    expected[0] = idx.size();
    REQUIRE(y.shape() == expected);
    for (std::size_t i = 0; i < idx.size(); ++i)
        for (std::size_t j = 0; j < width; ++j) CHECK(y.value().flat(i * width + j) == x.flat(idx[i] * width + j));
    // Row 4 is taken three times, rows 0 and 2 once, rows 1 and 3 never.
    const Tensor<double> g = ad::grad(ad::sum(y), {xv})[0];
    const double times[] = {1, 0, 1, 0, 3};
    for (std::size_t r = 0; r < 5; ++r)
        for (std::size_t j = 0; j < width; ++j) CHECK(g.flat(r * width + j) == times[r]);
    require_gradcheck([&](const Vars& v) { return ad::gather_rows(v[0], idx); }, {x});
}

TEST_CASE("gather_rows refuses a scalar, naming its shape as every op's error does", "[ops][shape][errors]")
{
    Tape<double> tape;
    CHECK_THROWS_WITH(ad::gather_rows(tape.variable(Tensor<double>(1.5)), {0}),
                      Catch::Matchers::Contains("gather_rows") && Catch::Matchers::Contains("shape []"));
}

TEST_CASE("index_select picks slices along an axis and adds the gradients of repeated ones", "[ops][shape]")
{
    Tape<double> tape;
    const Tensor<double> xv = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    const Var<double> x = tape.variable(xv);
    const Var<double> y = ad::index_select(x, 1, {2, 0, 2});
    CHECK(y.value() == Tensor<double>({{3.0, 1.0, 3.0}, {6.0, 4.0, 6.0}}));
    // d sum(y * w) / dx: column 2 gets w's columns 0 and 2, column 0 gets column 1, column 1 nothing
    const Tensor<double> w = {{1.0, 10.0, 100.0}, {2.0, 20.0, 200.0}};
    const auto g = ad::grad(ad::sum(y * tape.constant(w)), {x});
    CHECK(g[0] == Tensor<double>({{10.0, 0.0, 101.0}, {20.0, 0.0, 202.0}}));

    const Var<double> r = ad::select(x, 0, -1);  // x[-1], the axis dropped
    CHECK(r.value() == Tensor<double>({4.0, 5.0, 6.0}));
    CHECK(ad::select(x, 1, 1).value() == Tensor<double>({2.0, 5.0}));
    const auto gr = ad::grad(ad::sum(ad::select(x, 1, 1) * 3.0), {x});
    CHECK(gr[0] == Tensor<double>({{0.0, 3.0, 0.0}, {0.0, 3.0, 0.0}}));
    require_gradcheck([](const Vars& v) { return ad::index_select(ad::tanh(v[0]), 0, {1, 1, 0}); }, {randn({2, 3}, 7)});
}

TEST_CASE("index_select, index_add and select name the op, the shape and the index they refuse", "[ops][shape][errors]")
{
    using Catch::Matchers::Contains;
    Tape<double> tape;
    const Var<double> x = tape.variable(randn({2, 3}, 1));
    CHECK_THROWS_WITH(ad::index_select(x, 1, {0, 3}), Contains("index_select") && Contains("index 3 (position 1)") &&
                                                          Contains("axis 1 of size 3") && Contains("[2, 3]"));
    CHECK_THROWS_WITH(ad::index_select(x, 2, {0}), Contains("index_select") && Contains("axis 2") &&
                                                       Contains("[2, 3]"));
    CHECK_THROWS_WITH(ad::select(x, 0, 2), Contains("select") && Contains("index 2") && Contains("axis 0 of size 2") &&
                                               Contains("[2, 3]"));
    CHECK_THROWS_WITH(ad::select(x, 0, -3), Contains("select") && Contains("index -3"));
    CHECK_THROWS_WITH(ad::select(x, -3, 0), Contains("select") && Contains("axis -3"));
    CHECK_THROWS_WITH(ad::index_add(x, 0, {0}, 4), Contains("index_add") && Contains("one slice of x per index") &&
                                                       Contains("[2, 3]"));
    CHECK_THROWS_WITH(ad::index_add(x, 0, {0, 4}, 4), Contains("index_add") && Contains("index 4") &&
                                                          Contains("size 4"));
}

TEST_CASE("transpose(x, 1, 2) of [2, 3, 4] is y(i, k, j) = x(i, j, k), and permute is its general form", "[ops][shape]")
{
    const Tensor<double> x = randn({2, 3, 4}, 71);
    Tape<double> tape;
    const auto X = tape.variable(x);
    const auto y = ad::transpose(X, 1, -1), p = ad::permute(X, {2, 0, 1});
    REQUIRE(y.shape() == Shape{2, 4, 3});
    REQUIRE(p.shape() == Shape{4, 2, 3});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t k = 0; k < 4; ++k) {
                CHECK(y.value()(i, k, j) == x(i, j, k));
                CHECK(p.value()(k, i, j) == x(i, j, k));
            }
    // a weighted sum picks each element's weight back: d/dx sum(w * permute(x)) = w permuted back
    const Tensor<double> w = randn({4, 2, 3}, 72);
    const auto g = ad::grad(ad::sum(p * tape.constant(w)), {X})[0];
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t k = 0; k < 4; ++k) CHECK(g(i, j, k) == w(k, i, j));
}

TEST_CASE("permute and transpose(x, a, b) name the shape and the axes they refuse", "[ops][shape][errors]")
{
    using Catch::Matchers::Contains;
    Tape<double> tape;
    const auto x = tape.variable(randn({2, 3, 4}, 73));
    CHECK_THROWS_AS(ad::permute(x, {0, 0, 1}), ad::Error);
    CHECK_THROWS_WITH(ad::permute(x, {0, 0, 1}),
                      Contains("permute (tape position 1): axes [0, 0, 1] are not a permutation of the 3 axes of "
                               "shape [2, 3, 4]"));
    CHECK_THROWS_WITH(ad::permute(x, {0, 1, 3}), Contains("axes [0, 1, 3]") && Contains("-3 <= axis < 3"));
    CHECK_THROWS_WITH(ad::permute(x, {1, 0}), Contains("axes [1, 0]") && Contains("[2, 3, 4]"));
    CHECK_THROWS_AS(ad::transpose(x, 1, 3), ad::Error);
    CHECK_THROWS_WITH(ad::transpose(x, 1, 3),
                      Contains("transpose (tape position 1): axes 1 and 3 to swap: axis 3 is out of range for shape "
                               "[2, 3, 4] (expected -3 <= axis < 3)"));
    CHECK(tape.size() == 1);  // nothing refused was recorded
}
