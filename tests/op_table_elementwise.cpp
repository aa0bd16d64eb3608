// Op table entries: elementwise ops, unary and broadcasting binary, and the custom-op example's
// ops. References are <cmath> one element at a time, in forms that stay accurate where the
// naive formula does not (erfc for Phi, expm1 for elu, a split log1p for softplus).
#include "custom_ops.hpp"
#include "op_table.hpp"

namespace optable {

namespace {

constexpr double selu_alpha = 1.6732632423543772848170429916717;
constexpr double selu_scale = 1.0507009873554804934193349852946;

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// Values at the edges of double: zeros of both signs, tiny and large magnitudes, infinities.
Sample edges(const std::vector<double>& values)
{
    return {"edge values", {tensor({values.size()}, values)}, {}, {}, false};
}
const std::vector<double> real_edges{0.0, -0.0, 1e-300, -1e-300, 1e-8, -1e-8, 40.0, -40.0, 800.0, -800.0, inf, -inf};
const std::vector<double> positive_edges{0.0, 1e-300, 1e-8, 1.0, 1e8, 1e300, inf};

// A unary entry: samples uniform on [lo, hi] over the elementwise shapes, plus the edge values.
template <class F, class R>
void unary(std::vector<Entry>& table, const char* name, F call, R reference, double lo, double hi,
           std::vector<double> edge_values, std::uint64_t seed)
{
    auto e = make(name, Kind::elementwise, [call](const auto& x, const Sample&) { return call(x[0]); });
    e.reference = unary_reference(reference);
    e.samples = [=] {
        auto s = elementwise_samples(lo, hi, seed);
        s.push_back(edges(edge_values));
        return s;
    };
    e.lo = lo;
    e.hi = hi;
    e.forward_atol = 0;
    table.push_back(e);
}

// A broadcasting entry: pairs over adtest::broadcast_pairs(), both inputs uniform on [lo, hi],
// plus pairs of edge values.
template <class F, class R>
void binary(std::vector<Entry>& table, const char* name, F call, R reference, double lo, double hi, std::uint64_t seed)
{
    auto e = make(name, Kind::broadcasting, [call](const auto& x, const Sample&) { return call(x[0], x[1]); });
    e.reference = binary_reference(reference);
    e.samples = [=] {
        auto s = broadcasting_samples(lo, hi, seed);
        s.push_back({"edge values",
                     {Tensor<double>{0.0, -0.0, inf, -inf, 1e300, 2.0, -1e-300},
                      Tensor<double>{0.0, 0.0, 1.0, inf, 1e300, -inf, 3.0}},
                     {},
                     {},
                     false});
        return s;
    };
    e.refused = non_broadcasting_pairs;
    e.lo = lo;
    e.hi = hi;
    e.forward_atol = 0;
    table.push_back(e);
}

// The masks of where and masked_fill: over a mask of the shape in Sample::ints, element i is
// true unless 5 i + 2 is a multiple of 3 (i = 2, 5, 8, ... false), a fixed pattern of the shape.
bool mask_at(std::size_t i) { return (5 * i + 2) % 3 != 0; }
Shape mask_shape(const Sample& s) { return Shape(s.ints.begin(), s.ints.end()); }
xt::xarray<bool> bool_mask(const Sample& s)
{
    xt::xarray<bool> m = xt::xarray<bool>::from_shape(mask_shape(s));
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = mask_at(i);
    return m;
}
// The shape of mask, a and b broadcast together, and the flat positions in each of the element
// at every index of it.
Shape broadcast3(const Shape& a, const Shape& b, const Shape& c)
{
    const std::size_t n = std::max({a.size(), b.size(), c.size()});
    Shape out(n, 1);
    for (const Shape* s : {&a, &b, &c})
        for (std::size_t d = 0; d < s->size(); ++d) {
            const std::size_t e = (*s)[d];
            if (e != 1) out[d + n - s->size()] = e;
        }
    return out;
}

}  // namespace

void add_elementwise_ops(std::vector<Entry>& table)
{
    // clang-format off
    binary(table, "add", [](auto a, auto b) { return a + b; }, [](double a, double b) { return a + b; }, -3, 3, 10);
    binary(table, "sub", [](auto a, auto b) { return a - b; }, [](double a, double b) { return a - b; }, -3, 3, 20);
    binary(table, "mul", [](auto a, auto b) { return a * b; }, [](double a, double b) { return a * b; }, -3, 3, 30);
    binary(table, "div", [](auto a, auto b) { return a / b; }, [](double a, double b) { return a / b; }, 0.3, 3, 40);
    binary(table, "maximum", [](auto a, auto b) { return ad::maximum(a, b); },
           [](double a, double b) { return std::isnan(a) || a > b ? a : b; }, -3, 3, 50);
    binary(table, "minimum", [](auto a, auto b) { return ad::minimum(a, b); },
           [](double a, double b) { return std::isnan(a) || a < b ? a : b; }, -3, 3, 60);

    unary(table, "neg", [](auto x) { return -x; }, [](double x) { return -x; }, -3, 3, real_edges, 100);
    unary(table, "add_scalar", [](auto x) { return x + 1.75; }, [](double x) { return x + 1.75; }, -3, 3, real_edges, 110);
    unary(table, "rsub_scalar", [](auto x) { return 1.75 - x; }, [](double x) { return 1.75 - x; }, -3, 3, real_edges, 120);
    unary(table, "mul_scalar", [](auto x) { return x * -1.5; }, [](double x) { return x * -1.5; }, -3, 3, real_edges, 130);
    unary(table, "div_scalar", [](auto x) { return x / 3.0; }, [](double x) { return x / 3.0; }, -3, 3, real_edges, 140);
    unary(table, "rdiv_scalar", [](auto x) { return 2.5 / x; }, [](double x) { return 2.5 / x; }, 0.3, 3, real_edges, 150);
    unary(table, "pow", [](auto x) { return ad::pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0.2, 3, positive_edges, 160);
    unary(table, "square", [](auto x) { return ad::square(x); }, [](double x) { return x * x; }, -3, 3, real_edges, 170);
    unary(table, "sqrt", [](auto x) { return ad::sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.2, 3, positive_edges, 180);
    unary(table, "exp", [](auto x) { return ad::exp(x); }, [](double x) { return std::exp(x); }, -3, 3, real_edges, 190);
    unary(table, "log", [](auto x) { return ad::log(x); }, [](double x) { return std::log(x); }, 0.2, 3, positive_edges, 200);
    unary(table, "abs", [](auto x) { return ad::abs(x); }, [](double x) { return std::abs(x); }, -3, 3, real_edges, 210);
    unary(table, "sin", [](auto x) { return ad::sin(x); }, [](double x) { return std::sin(x); }, -3, 3, {0.0, -0.0, 1e-300, 40.0, -40.0}, 220);
    unary(table, "cos", [](auto x) { return ad::cos(x); }, [](double x) { return std::cos(x); }, -3, 3, {0.0, -0.0, 1e-300, 40.0, -40.0}, 230);
    unary(table, "clamp", [](auto x) { return ad::clamp(x, -1.0, 1.0); },
          [](double x) { return std::isnan(x) ? x : std::min(std::max(x, -1.0), 1.0); }, -3, 3, real_edges, 240);
    unary(table, "tanh", [](auto x) { return ad::tanh(x); }, [](double x) { return std::tanh(x); }, -3, 3, real_edges, 250);
    unary(table, "sigmoid", [](auto x) { return ad::sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -3, 3, real_edges, 260);
    unary(table, "relu", [](auto x) { return ad::relu(x); }, [](double x) { return x > 0 || std::isnan(x) ? x : 0.0; }, -3, 3, real_edges, 270);
    unary(table, "leaky_relu", [](auto x) { return ad::leaky_relu(x, 0.1); }, [](double x) { return x > 0 ? x : 0.1 * x; }, -3, 3, real_edges, 280);
    unary(table, "elu", [](auto x) { return ad::elu(x, 0.7); }, [](double x) { return x > 0 ? x : 0.7 * std::expm1(x); }, -3, 3, real_edges, 290);
    unary(table, "selu", [](auto x) { return ad::selu(x); },
          [](double x) { return selu_scale * (x > 0 ? x : selu_alpha * std::expm1(x)); }, -3, 3, real_edges, 300);
    unary(table, "softplus", [](auto x) { return ad::softplus(x); },
          [](double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }, -3, 3, real_edges, 310);
    unary(table, "normal_cdf", [](auto x) { return ad::normal_cdf(x); }, Phi, -3, 3, real_edges, 320);
    unary(table, "gelu", [](auto x) { return ad::gelu(x); }, [](double x) { return x * Phi(x); }, -3, 3,
          {0.0, -0.0, 1e-300, -1e-300, 1e-8, -1e-8, 3.6, -3.6, 8.0, -8.0, 30.0, -30.0, inf}, 330);

    // The custom-op example's ops (examples/custom_ops.hpp). round_ste is left out: its VJP is by
    // design not its derivative (zero almost everywhere), so gradcheck does not apply to it.
    unary(table, "log_cosh", [](auto x) { return ops::log_cosh(x); },
          [](double x) { return std::abs(x) < 700 ? std::log(std::cosh(x)) : std::abs(x) - std::log(2.0); }, -3, 3,
          {0.0, -0.0, 1e-8, 40.0, -40.0, 800.0, -800.0}, 340);
    // Its stable form |x| + log1p(e^-2|x|) - log 2 cancels near 0, to about 1e-16 absolute.
    table.back().forward_atol = 1e-15;
    // clip_grad is the identity; its VJP clips the cotangent to [-c, c]. With c = 1e6, far above
    // the cotangents the generic tests draw and random programs reach (tens), the VJP is the
    // identity's; examples/custom_op.cpp shows the clipping itself.
    unary(table, "clip_grad", [](auto x) { return ops::clip_grad(x, decltype(x.item())(1e6)); }, [](double x) { return x; },
          -3, 3, real_edges, 350);
    // clang-format on
    // --- selection by a constant mask ---
    {
        // ints: the mask's shape (its pattern is mask_at); reals empty: a bool mask, else a mask
        // of T holding reals[0] where mask_at is true, 0 elsewhere (1 selects; others are refused)
        auto e = make("where", Kind::other, [](const auto& x, const Sample& s) {
            using T = typename std::decay_t<decltype(x[0].value())>::value_type;
            if (s.reals.empty()) return ad::where(bool_mask(s), x[0], x[1]);
            Tensor<T> m = xt::cast<T>(bool_mask(s)) * T(s.reals[0]);
            return ad::where(m, x[0], x[1]);
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape ms = mask_shape(s), as = shape_of(in[0]), bs = shape_of(in[1]);
            const Shape out = broadcast3(ms, as, bs);
            Tensor<double> y = empty(out);
            for_each_index(out, [&](std::size_t k, const std::vector<std::size_t>& index) {
                y.data()[k] = mask_at(broadcast_offset(index, ms)) ? in[0].data()[broadcast_offset(index, as)]
                                                                    : in[1].data()[broadcast_offset(index, bs)];
            });
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"mask [2, 3], a [2, 3], b [2, 3]", {randn({2, 3}, 401), randn({2, 3}, 402)}, {2, 3}},
                {"mask [2, 3] of 0/1, a [2, 3], b [2, 3]", {randn({2, 3}, 403), randn({2, 3}, 404)}, {2, 3}, {1.0}},
                {"mask [3, 3] (causal-like), a [2, 3, 3], b [1]", {randn({2, 3, 3}, 405), randn({1}, 406)}, {3, 3}},
                {"mask [2, 1, 4], a [3, 1], b [4] (all three broadcast)", {randn({3, 1}, 407), randn({4}, 408)}, {2, 1, 4}},
                {"mask [2, 1, 4] of 0/1, a [3, 1], b [4]", {randn({3, 1}, 409), randn({4}, 410)}, {2, 1, 4}, {1.0}},
                {"mask [] (true), a [2, 2], b [2, 2]", {randn({2, 2}, 411), randn({2, 2}, 412)}, {}},
                {"mask [5] larger than a [1] and b []", {randn({1}, 413), randn({}, 414)}, {5}},
                {"empty: mask [0, 3], a [3], b [1, 3]", {randn({3}, 415), randn({1, 3}, 416)}, {0, 3}, {}, false},
                {"empty a [0, 2], mask [2], b [1]", {empty({0, 2}), randn({1}, 417)}, {2}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"mask [3] against a [2]", {randn({2}, 1), randn({2}, 2)}, {3}},
                {"a [2, 3] against b [3, 2]", {randn({2, 3}, 3), randn({3, 2}, 4)}, {1}},
                {"mask [4, 1] against a [2, 3] and b [3]", {randn({2, 3}, 5), randn({3}, 6)}, {4, 1}},
                {"a 0/1 mask holding 2", {randn({2, 3}, 7), randn({2, 3}, 8)}, {2, 3}, {2.0}},
                {"a 0/1 mask holding 0.5", {randn({2, 3}, 9), randn({2, 3}, 10)}, {2, 3}, {0.5}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the mask's shape (pattern mask_at); reals: {value}
        auto e = make("masked_fill", Kind::other, [](const auto& x, const Sample& s) {
            return ad::masked_fill(x[0], bool_mask(s), s.reals[0]);
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const Shape ms = mask_shape(s), xs = shape_of(in[0]);
            const Shape out = broadcast3(ms, xs, {});
            Tensor<double> y = empty(out);
            for_each_index(out, [&](std::size_t k, const std::vector<std::size_t>& index) {
                y.data()[k] = mask_at(broadcast_offset(index, ms)) ? s.reals[0] : in[0].data()[broadcast_offset(index, xs)];
            });
            return y;
        };
        e.samples = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"x [2, 3], mask [2, 3], value -2.5", {randn({2, 3}, 421)}, {2, 3}, {-2.5}},
                {"x [2, 3, 3], mask [3, 3], value 0", {randn({2, 3, 3}, 422)}, {3, 3}, {0.0}},
                {"x [3, 1], mask [2, 1, 4] (both broadcast)", {randn({3, 1}, 423)}, {2, 1, 4}, {1.5}},
                {"x [4], mask [] (true): all value", {randn({4}, 424)}, {}, {3.0}},
                {"x [2, 3], value -inf (attention scores)", {randn({2, 3}, 425)}, {2, 3}, {-inf}, false},
                {"empty x [0, 3], mask [3]", {empty({0, 3})}, {3}, {1.0}},
            };
        };
        e.refused = [] {
            using adtest::randn;
            return std::vector<Sample>{
                {"x [2, 3], mask [2]", {randn({2, 3}, 1)}, {2}, {0.0}},
                {"x [2, 3], mask [3, 3]", {randn({2, 3}, 2)}, {3, 3}, {0.0}},
            };
        };
        table.push_back(e);
    }
}

}  // namespace optable
