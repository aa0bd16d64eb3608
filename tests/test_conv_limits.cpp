// The size limits of convolution and pooling: attributes past the common limit (65535), shapes
// whose sizes do not fit in 64 bits, and outputs or work buffers past Conv2dOptions::max_bytes /
// Pool2dOptions::max_bytes are refused with an ad::Error before anything is allocated; values at
// the limits are computed. Also batch_norm2d's refusal of a single value per channel.
#include "gradcheck_helpers.hpp"

#include <xtensor/xbuilder.hpp>

#include <cstdint>
#include <limits>
#include <vector>

using namespace adtest;
using ad::Conv2dOptions;
using ad::Pool2dOptions;
using ad::Tape;
using Catch::Matchers::Contains;

namespace {

constexpr std::size_t two_to_63 = std::size_t(1) << 63;
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

// A tensor of shape s holding `v` in row-major order.
Tensor<double> tensor(const Shape& s, const std::vector<double>& v)
{
    auto t = Tensor<double>::from_shape(s);
    std::copy(v.begin(), v.end(), t.data());
    return t;
}

// x[i] = i for i < n, as [1, 1, n, 1].
Tensor<double> ramp_column(std::size_t n)
{
    auto t = Tensor<double>::from_shape({1, 1, n, 1});
    for (std::size_t i = 0; i < n; ++i) t.data()[i] = double(i);
    return t;
}

}  // namespace

TEST_CASE("pooling refuses a padding of 2^63, whose double wraps to 0", "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    const auto x = tape.constant(randn({1, 1, 4, 4}, 1));
    const std::size_t n = tape.size();
    for (int axis = 0; axis < 2; ++axis) {
        Pool2dOptions p(2);
        p.padding[std::size_t(axis)] = two_to_63;
        CHECK_THROWS_WITH(ad::max_pool2d(x, p), Contains("max_pool2d (tape position 1): kernel [2, 2], stride [2, 2]") &&
                                                    Contains("must each be at most 65535, the limit of convolution "
                                                             "and pooling attributes (input [1, 1, 4, 4])"));
        CHECK_THROWS_WITH(ad::avg_pool2d(x, p), Contains("avg_pool2d (tape position 1)") &&
                                                    Contains("9223372036854775808") && Contains("at most 65535"));
    }
    CHECK(tape.size() == n);
}

TEST_CASE("avg_pool2d refuses a kernel of 2^32 + 2 with padding 2^31 + 1, which 32 bits would hold as 2 and 1",
          "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({1, 1, 3, 3}, 2));
    Pool2dOptions p;
    p.kernel = {(std::size_t(1) << 32) + 2, (std::size_t(1) << 32) + 2};
    p.stride = {1, 1};
    p.padding = {(std::size_t(1) << 31) + 1, (std::size_t(1) << 31) + 1};
    CHECK_THROWS_WITH(ad::avg_pool2d(x, p), Contains("avg_pool2d (tape position 1): kernel [4294967298, 4294967298]") &&
                                                Contains("must each be at most 65535"));
    CHECK_THROWS_WITH(ad::max_pool2d(x, p), Contains("max_pool2d (tape position 1)") && Contains("at most 65535"));
    CHECK(tape.size() == 1);
}

TEST_CASE("convolution and pooling share one attribute limit, 65535: above it refused, at it computed",
          "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    const auto x = tape.constant(randn({1, 1, 5, 5}, 3));
    const auto w = tape.constant(randn({1, 1, 3, 3}, 4));
    const std::size_t n = tape.size();
    SECTION("above: every attribute of either op")
    {
        const std::size_t over = ad::window_attribute_limit + 1;
        CHECK(over == 65536);
        for (int field = 0; field < 3; ++field)
            for (std::size_t axis = 0; axis < 2; ++axis) {
                Pool2dOptions p(1);
                (field == 0 ? p.kernel : field == 1 ? p.stride : p.padding)[axis] = over;
                CHECK_THROWS_WITH(ad::max_pool2d(x, p), Contains("must each be at most 65535"));
                CHECK_THROWS_WITH(ad::avg_pool2d(x, p), Contains("must each be at most 65535"));
            }
        for (int field = 0; field < 4; ++field)
            for (std::size_t axis = 0; axis < 2; ++axis) {
                Conv2dOptions o;
                if (field == 3) o.groups = over;
                else (field == 0 ? o.stride : field == 1 ? o.padding : o.dilation)[axis] = over;
                CHECK_THROWS_WITH(ad::conv2d(x, w, o), Contains("conv2d (tape position 2): the kernel [3, 3]") &&
                                                           Contains("must each be at most 65535"));
            }
        // A convolution's kernel extent, from a weight shape the adjoint op is given.
        const auto tall = tape.constant(randn({1, 1, over, 1}, 5));
        const auto g = tape.constant(randn({1, 1, 1, 1}, 6));
        CHECK_THROWS_WITH(ad::conv2d_weight_grad(tall, g, {1, 1, over, 1}),
                          Contains("conv2d_weight_grad (tape position 4): the kernel [65536, 1]") &&
                              Contains("must each be at most 65535"));
        CHECK(tape.size() == n + 2);
    }
    SECTION("at the limit: a 65535-element window, padding 65535, dilation and stride 65535")
    {
        // The mean of 0, 1, ..., 65534 is 32767; each element's share of its gradient 1 / 65535.
        const auto col = tape.variable(ramp_column(65535));
        Pool2dOptions p;
        p.kernel = {65535, 1};
        p.stride = {65535, 1};
        const auto y = ad::avg_pool2d(col, p);
        REQUIRE(y.shape() == Shape{1, 1, 1, 1});
        CHECK(y.value()(0, 0, 0, 0) == Approx(32767.0).epsilon(1e-12));
        const Tensor<double> dx = ad::grad(ad::sum(y), {col})[0];
        CHECK(dx(0, 0, 0, 0) == Approx(1.0 / 65535).epsilon(1e-12));
        CHECK(dx(0, 0, 65534, 0) == Approx(1.0 / 65535).epsilon(1e-12));
        const auto m = ad::max_pool2d(col, p);
        CHECK(m.value()(0, 0, 0, 0) == 65534.0);

        // One input value 2 padded by 65535 above and below: 3 x 2 at output row 65535, 0 elsewhere.
        Conv2dOptions o;
        o.padding = {65535, 0};
        const auto y2 = ad::conv2d(tape.constant(tensor({1, 1, 1, 1}, {2.0})), tape.constant(tensor({1, 1, 1, 1}, {3.0})), o);
        REQUIRE(y2.shape() == Shape{1, 1, 131071, 1});
        CHECK(y2.value()(0, 0, 65535, 0) == 6.0);
        CHECK(y2.value()(0, 0, 0, 0) == 0.0);
        CHECK(y2.value()(0, 0, 131070, 0) == 0.0);

        // Two taps 65535 apart, moved by 65535: one output, w0 x[0] + w1 x[65535].
        Conv2dOptions d;
        d.dilation = {65535, 1};
        d.stride = {65535, 1};
        const auto y3 = ad::conv2d(tape.constant(ramp_column(65536)), tape.constant(tensor({1, 1, 2, 1}, {0.5, 2.0})), d);
        REQUIRE(y3.shape() == Shape{1, 1, 1, 1});
        CHECK(y3.value()(0, 0, 0, 0) == 2.0 * 65535);
    }
}

TEST_CASE("conv2d_weight_grad refuses a kernel of 2^63 + 1 taps, whose dilated span wraps to 1",
          "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    const auto x = tape.constant(randn({1, 1, 3, 2}, 7));
    const auto g = tape.constant(randn({1, 1, 3, 1}, 8));
    Conv2dOptions o;
    o.dilation = {2, 1};
    CHECK_THROWS_WITH(ad::conv2d_weight_grad(x, g, {1, 1, two_to_63 + 1, 2}, o),
                      Contains("conv2d_weight_grad (tape position 2): the kernel [9223372036854775809, 2]") &&
                          Contains("must each be at most 65535") &&
                          Contains("(input [1, 1, 3, 2], weight [1, 1, 9223372036854775809, 2])"));
    CHECK(tape.size() == 2);
}

TEST_CASE("conv2d_input_grad refuses an input shape whose size does not fit in 64 bits or in max_bytes",
          "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    const auto w = tape.constant(randn({1, 1, 1, 1}, 9));
    const auto g = tape.constant(randn({1, 1, 1, 1}, 10));
    const std::size_t n = tape.size();
    // 2^64 - 1 + 2 x 1 wraps to 1, and the shape claims 2^128 elements.
    Conv2dOptions pad1;
    pad1.padding = {1, 1};
    CHECK_THROWS_WITH(ad::conv2d_input_grad(g, w, {1, 1, size_max, size_max}, pad1),
                      Contains("conv2d_input_grad (tape position 2): the padded height 18446744073709551615 + 2 x 1 "
                               "does not fit in 64 bits"));
    // Without padding: 2^63 x 4 elements.
    CHECK_THROWS_WITH(ad::conv2d_input_grad(g, w, {1, 1, two_to_63, 4}),
                      Contains("conv2d_input_grad (tape position 2): the input gradient [1, 1, 9223372036854775808, 4] "
                               "(more than 18446744073709551615 elements;") &&
                          Contains("would take more than 18446744073709551615 bytes"));
    // Elements that fit in 64 bits, bytes that do not: a tall kernel spread by dilation 65535,
    // and a wide input covered by stride 65535, against a cotangent of 16384 elements.
    const auto tall = tape.constant(randn({1, 1, 65535, 1}, 11));
    Conv2dOptions o;
    o.dilation = {65535, 1};
    o.stride = {1, 65535};
    const std::size_t H = std::size_t(65535) * 65534 + 1;  // the dilated span: one output row
    const std::size_t W = std::size_t(16384) * 65535;     // 16384 output columns
    CHECK_THROWS_WITH(ad::conv2d_input_grad(tape.constant(randn({1, 1, 1, 16384}, 12)), tall, {1, 1, H, W}, o),
                      Contains("conv2d_input_grad (tape position 4): the input gradient [1, 1, 4294770691, 1073725440] "
                               "(4611404549893079040 elements;") &&
                          Contains("would take more than 18446744073709551615 bytes"));
    // 4294770691 elements: 34358165528 bytes, above the default cap of 4 GiB.
    CHECK_THROWS_WITH(ad::conv2d_input_grad(g, tall, {1, 1, H, 1}, o),
                      Contains("conv2d_input_grad (tape position 4): the input gradient [1, 1, 4294770691, 1] "
                               "(4294770691 elements; input [1, 1, 4294770691, 1], weight [1, 1, 65535, 1]) would "
                               "take 34358165528 bytes, more than the 4294967296 bytes the op may allocate "
                               "(Conv2dOptions::max_bytes)"));
    CHECK(tape.size() == n + 2);
}

TEST_CASE("conv2d refuses an output or work space past max_bytes before allocating it", "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    SECTION("the default cap, 4 GiB")
    {
        CHECK(Conv2dOptions{}.max_bytes == std::uint64_t(4) << 30);
        CHECK(Pool2dOptions{}.max_bytes == std::uint64_t(4) << 30);
        // One value padded to 131071 x 32767, two filters: 2 x 131071 x 32767 x 8 bytes (64 GiB).
        Conv2dOptions o;
        o.padding = {65535, 16383};
        CHECK_THROWS_WITH(ad::conv2d(tape.constant(randn({1, 1, 1, 1}, 13)), tape.constant(randn({2, 1, 1, 1}, 14)), o),
                          Contains("conv2d (tape position 2): the output [1, 2, 131071, 32767] (8589606914 elements; "
                                   "input [1, 1, 1, 1], weight [2, 1, 1, 1]) would take 68716855312 bytes, more than "
                                   "the 4294967296 bytes the op may allocate (Conv2dOptions::max_bytes)"));
        // An output of 131069 x 2045 (2 GB) from 64 channels by 3 x 3 taps: the unfolded input
        // is [576, 268036105], and with the output's copies 1153 x 268036105 x 8 bytes (2.5 TB).
        Conv2dOptions p;
        p.padding = {65535, 1023};
        CHECK_THROWS_WITH(ad::conv2d(tape.constant(randn({1, 64, 1, 1}, 15)), tape.constant(randn({1, 64, 3, 3}, 16)), p),
                          Contains("conv2d (tape position 4): the work space of 309045629065 elements (the unfolded "
                                   "input, [C kh kw, N Ho Wo] = [576, 268036105], and the output [1, 1, 131069, 2045] "
                                   "as [F, N Ho Wo]; input [1, 64, 1, 1], weight [1, 64, 3, 3]) would take "
                                   "2472365032520 bytes, more than the 4294967296 bytes"));
        CHECK(tape.size() == 4);
    }
    SECTION("a lower cap, met exactly")
    {
        // x [2, 3, 5, 5] by w [4, 3, 3, 3], padding 1: N Ho Wo = 50, the unfolded input 27 x 50,
        // the output 4 x 50. conv2d keeps [cols | cnp | dcols]: (2 x 1350 + 200) x 8 = 23200 bytes;
        // its adjoint ops add a second copy of the output: (2 x 1350 + 2 x 200) x 8 = 24800.
        const auto x = tape.variable(randn({2, 3, 5, 5}, 17));
        const auto w = tape.variable(randn({4, 3, 3, 3}, 18));
        Conv2dOptions o;
        o.padding = {1, 1};
        o.max_bytes = 23199;
        CHECK_THROWS_WITH(ad::conv2d(x, w, o), Contains("conv2d (tape position 2): the work space of 2900 elements") &&
                                                   Contains("would take 23200 bytes, more than the 23199 bytes"));
        o.max_bytes = 23200;
        const auto y = ad::conv2d(x, w, o);
        CHECK(y.shape() == Shape{2, 4, 5, 5});
        // The cap goes with the op into its gradient, whose adjoint ops need 24800 bytes.
        CHECK_THROWS_WITH(ad::grad(ad::sum(ad::square(y)), {x}, ad::create_graph),
                          Contains("conv2d_input_grad") && Contains("would take 24800 bytes, more than the 23200 bytes"));
        o.max_bytes = 24800;
        const auto y2 = ad::conv2d(x, w, o);
        const auto gx = ad::grad(ad::sum(ad::square(y2)), {x}, ad::create_graph)[0];
        CHECK(gx.shape() == x.shape());
    }
    SECTION("pooling: the output and max_pool2d's positions of the maxima")
    {
        // [2, 3, 4, 4] pooled by 2: 24 outputs, 192 bytes in double, 96 in float; 24 positions of 8 bytes.
        const auto x = tape.constant(randn({2, 3, 4, 4}, 19));
        Pool2dOptions p(2);
        p.max_bytes = 191;
        CHECK_THROWS_WITH(ad::avg_pool2d(x, p), Contains("avg_pool2d (tape position 1): the output [2, 3, 2, 2] "
                                                         "(24 elements; input [2, 3, 4, 4]) would take 192 bytes, "
                                                         "more than the 191 bytes the op may allocate "
                                                         "(Pool2dOptions::max_bytes)"));
        p.max_bytes = 192;
        CHECK(ad::avg_pool2d(x, p).shape() == Shape{2, 3, 2, 2});
        CHECK(ad::max_pool2d(x, p).shape() == Shape{2, 3, 2, 2});
        Tape<float> ftape;
        const auto xf = ftape.constant(Tensor<float>(xt::ones<float>({2, 3, 4, 4})));
        p.max_bytes = 191;
        CHECK(ad::avg_pool2d(xf, p).shape() == Shape{2, 3, 2, 2});
        CHECK_THROWS_WITH(ad::max_pool2d(xf, p),
                          Contains("max_pool2d (tape position 2): the positions of the maxima, one for each element "
                                   "of the output [2, 3, 2, 2] (24 elements; input [2, 3, 4, 4]) would take 192 bytes, "
                                   "more than the 191 bytes"));
    }
}

TEST_CASE("batch_norm2d refuses one value per channel: a variance of one value is 0 / 0",
          "[ops][conv][errors][limits]")
{
    Tape<double> tape;
    const auto gamma = tape.constant(tensor({3}, {1.5, -2.0, 0.5}));
    const auto beta = tape.constant(tensor({3}, {0.25, 1.0, -3.0}));
    CHECK_THROWS_WITH(ad::batch_norm2d(tape.constant(randn({1, 3}, 20)), gamma, beta, 0.0),
                      Contains("batch_norm2d (tape position 3): expected more than 1 value per channel for batch "
                               "statistics (training mode), got 1 (N H W of the input [1, 3])"));
    CHECK_THROWS_WITH(ad::batch_norm2d(tape.constant(randn({1, 3, 1, 1}, 21)), gamma, beta),
                      Contains("batch_norm2d (tape position 4): expected more than 1 value per channel") &&
                          Contains("got 1 (N H W of the input [1, 3, 1, 1])"));
    CHECK(tape.size() == 4);
    // Two values per channel, eps 0: they normalise to -1 and +1, so y = beta -+ gamma.
    const auto y = ad::batch_norm2d(tape.constant(tensor({1, 3, 1, 2}, {1.0, 5.0, 7.0, -1.0, 2.0, 2.5})), gamma,
                                    beta, 0.0);
    const std::vector<double> expected{0.25 - 1.5, 0.25 + 1.5, 1.0 - 2.0, 1.0 + 2.0, -3.0 - 0.5, -3.0 + 0.5};
    for (std::size_t i = 0; i < 6; ++i) CHECK(y.value().data()[i] == Approx(expected[i]).epsilon(1e-12));
    const auto y2 = ad::batch_norm2d(tape.constant(tensor({2, 3}, {1.0, 7.0, 2.0, 5.0, -1.0, 2.5})), gamma, beta, 0.0);
    for (std::size_t i = 0; i < 6; ++i) CHECK(y2.value().data()[i] == Approx(expected[(i % 3) * 2 + i / 3]).epsilon(1e-12));
}
