// What the op tests share: reproducible inputs (some kept away from the points where an op has a
// kink), the shapes they sweep, and a gradcheck that prints its report when it fails.
#pragma once

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <utility>
#include <vector>

namespace adtest {

using ad::Shape;
using ad::Tensor;
using ad::Var;
using Vars = std::vector<Var<double>>;

inline Tensor<double> filled(const Shape& shape, const std::function<double()>& next)
{
    auto t = Tensor<double>::from_shape(shape);
    for (auto& v : t) v = next();
    return t;
}

// N(0, scale^2) entries, the same for the same seed.
inline Tensor<double> randn(const Shape& shape, std::uint64_t seed, double scale = 1)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> d(0, scale);
    return filled(shape, [&] { return d(gen); });
}

inline Tensor<double> uniform(const Shape& shape, double lo, double hi, std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> d(lo, hi);
    return filled(shape, [&] { return d(gen); });
}

// |x| uniform on [lo, hi] with a random sign: no entry near a kink at 0.
inline Tensor<double> away_from_zero(const Shape& shape, std::uint64_t seed, double lo = 0.2, double hi = 1.5)
{
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> d(lo, hi);
    std::bernoulli_distribution sign(0.5);
    return filled(shape, [&] { return sign(gen) ? d(gen) : -d(gen); });
}

// Distinct multiples of 0.1, plus `offset`, in random order: no two entries tie, and entries of
// two such tensors whose offsets differ by 0.05 are at least 0.05 apart.
inline Tensor<double> distinct(const Shape& shape, std::uint64_t seed, double offset = 0)
{
    auto t = Tensor<double>::from_shape(shape);
    const auto n = static_cast<std::ptrdiff_t>(t.size());
    std::vector<double> v;
    for (std::ptrdiff_t i = 0; i < n; ++i) v.push_back(double(i - n / 2) * 0.1 + offset);
    std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
    std::copy(v.begin(), v.end(), t.begin());
    return t;
}

// Shapes every elementwise op is checked on: a scalar, a vector, a matrix, a 3-tensor.
inline const std::vector<Shape>& elementwise_shapes()
{
    static const std::vector<Shape> s{{}, {5}, {2, 3}, {2, 1, 3}};
    return s;
}

// Pairs a binary op must broadcast: one axis stretched each way, a missing leading axis, a
// scalar on either side, equal shapes, and both operands stretched on a 3-tensor.
inline const std::vector<std::pair<Shape, Shape>>& broadcast_pairs()
{
    static const std::vector<std::pair<Shape, Shape>> p{
        {{3, 1}, {1, 4}}, {{5}, {2, 5}}, {{2, 5}, {5}}, {{}, {2, 3}},
        {{2, 3}, {}},     {{2, 3}, {2, 3}}, {{2, 1, 3}, {4, 1}}};
    return p;
}

// CHECK_THAT(t, Equals(u)): the same shape and exactly the same values. (xtensor's own
// operators would take Catch's expression decomposer as an operand, so tensors are compared
// through a matcher.)
template <class T>
class EqualsTensor : public Catch::MatcherBase<Tensor<T>> {
public:
    explicit EqualsTensor(Tensor<T> expected) : expected_(std::move(expected)) {}
    bool match(const Tensor<T>& t) const override
    {
        return t.shape() == expected_.shape() && std::equal(t.begin(), t.end(), expected_.begin());
    }
    std::string describe() const override { return "equals " + Catch::Detail::stringify(expected_); }

private:
    Tensor<T> expected_;
};
template <class T>
EqualsTensor<T> Equals(const Tensor<T>& expected) { return EqualsTensor<T>(expected); }
inline EqualsTensor<double> Equals(std::initializer_list<double> expected) { return EqualsTensor<double>(Tensor<double>(expected)); }

// Central differences against the reverse sweep, with gradcheck's default tolerances: first
// order only (for functions holding an op without a differentiable VJP).
inline void require_first_order_gradcheck(const ad::MultiFn<double>& f, const std::vector<Tensor<double>>& inputs)
{
    const auto res = ad::gradcheck<double>(f, inputs);
    INFO(res.report());
    CHECK(res.ok);
    CHECK(res.checked > 0);
}

// First and second order: gradcheck, then gradgradcheck (the VJP recorded with create_graph,
// differentiated again, against central differences of the first-order VJP) on the same inputs.
inline void require_gradcheck(const ad::MultiFn<double>& f, const std::vector<Tensor<double>>& inputs)
{
    require_first_order_gradcheck(f, inputs);
    const auto res = ad::gradgradcheck<double>(f, inputs);
    INFO("second order: " << res.report());
    CHECK(res.ok);
    CHECK(res.checked > 0);
}

}  // namespace adtest
