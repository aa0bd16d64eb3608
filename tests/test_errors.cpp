// Bad input: every error is an ad::Error whose message names the op, the shapes involved and
// what was expected, and a failed op leaves nothing on the tape.
#include "gradcheck_helpers.hpp"

#include <cmath>
#include <limits>

using namespace adtest;
using ad::Tape;
using Catch::Contains;

// Both the type and the message, in one line per case.
#define REQUIRE_ERROR(expr, matcher)            \
    do {                                         \
        REQUIRE_THROWS_AS(expr, ad::Error);      \
        REQUIRE_THROWS_WITH(expr, matcher);      \
    } while (false)

// A message containing every one of the parts. Unlike Contains(a) && Contains(b), which keeps
// references to its operands, it owns its strings, so a function can return it.
class ContainsAll : public Catch::MatcherBase<std::string> {
public:
    explicit ContainsAll(std::vector<std::string> parts) : parts_(std::move(parts)) {}
    bool match(const std::string& s) const override
    {
        return std::all_of(parts_.begin(), parts_.end(), [&](const std::string& p) { return s.find(p) != std::string::npos; });
    }
    std::string describe() const override { return "contains all of " + Catch::Detail::stringify(parts_); }

private:
    std::vector<std::string> parts_;
};

TEST_CASE("binary ops refuse shapes that do not broadcast, naming both", "[errors]")
{
    Tape<double> tape;
    const auto a = tape.variable(randn({2, 3}, 1)), b = tape.variable(randn({4, 3}, 2));
    const std::size_t before = tape.size();
    REQUIRE_ERROR(a + b, Contains("add") && Contains("[2, 3]") && Contains("[4, 3]") && Contains("equal or 1"));
    REQUIRE_ERROR(a - b, Contains("sub") && Contains("[2, 3]") && Contains("[4, 3]"));
    REQUIRE_ERROR(a * b, Contains("mul") && Contains("[2, 3]") && Contains("[4, 3]"));
    REQUIRE_ERROR(a / b, Contains("div") && Contains("[2, 3]") && Contains("[4, 3]"));
    REQUIRE_ERROR(ad::maximum(a, b), Contains("maximum") && Contains("[2, 3]") && Contains("[4, 3]"));
    REQUIRE_ERROR(ad::minimum(a, b), Contains("minimum") && Contains("[2, 3]") && Contains("[4, 3]"));
    const auto c = tape.variable(randn({2}, 3));  // trailing 3 against 2
    REQUIRE_ERROR(a * c, Contains("mul") && Contains("[2, 3]") && Contains("[2]"));
    CHECK(tape.size() == before + 1);  // only c was recorded
}

TEST_CASE("matmul refuses inner dimensions that do not chain, batch axes that do not broadcast, scalars and transposed vectors", "[errors]")
{
    Tape<double> tape;
    const auto A = tape.variable(randn({2, 3}, 4)), B = tape.variable(randn({4, 5}, 5));
    REQUIRE_ERROR(ad::matmul(A, B), Contains("matmul") && Contains("[2, 3]") && Contains("[4, 5]") && Contains("3 and 4"));
    REQUIRE_ERROR(ad::matmul(A, A, ad::transpose_a | ad::transpose_b), Contains("matmul") && Contains("[2, 3]^T") && Contains("2 and 3"));
    const auto v = tape.variable(randn({4}, 6));
    REQUIRE_ERROR(ad::matmul(A, v), Contains("matmul") && Contains("[2, 3]") && Contains("[4]"));
    REQUIRE_ERROR(ad::matmul(v, A), Contains("matmul") && Contains("[4]") && Contains("[2, 3]"));
    const auto T3 = tape.variable(randn({2, 3, 4}, 7));
    REQUIRE_ERROR(ad::matmul(T3, tape.variable(randn({3, 4, 2}, 8))),
                  Contains("matmul") && Contains("[2, 3, 4] and [3, 4, 2]") && Contains("batch axes") && Contains("[2] against [3]"));
    REQUIRE_ERROR(ad::matmul(T3, A), Contains("matmul") && Contains("[2, 3, 4] and [2, 3]") && Contains("4 and 2"));
    REQUIRE_ERROR(ad::matmul(tape.variable(randn({}, 9)), T3), Contains("matmul") && Contains("rank >= 1") && Contains("[] and [2, 3, 4]"));
    REQUIRE_ERROR(ad::matmul(v, v, ad::transpose_a), Contains("matmul") && Contains("transposes only of matrices") && Contains("[4]"));
    REQUIRE_ERROR(ad::matmul(T3, v, ad::transpose_b), Contains("matmul") && Contains("transposes only of matrices") && Contains("[2, 3, 4] and [4]^T"));
}

TEST_CASE("concat needs equal shapes apart from the axis", "[errors]")
{
    Tape<double> tape;
    const auto a = tape.variable(randn({2, 3}, 8)), b = tape.variable(randn({2, 4}, 9)), v = tape.variable(randn({3}, 10));
    REQUIRE_ERROR(ad::concat<double>({a, b}, 0), Contains("concat") && Contains("[2, 3]") && Contains("[2, 4]") && Contains("axis 0"));
    REQUIRE_ERROR(ad::concat<double>({a, v}, 0), Contains("concat") && Contains("[2, 3]") && Contains("[3]"));
    REQUIRE_ERROR(ad::concat<double>({}, 0), Contains("concat") && Contains("at least one"));
    REQUIRE_NOTHROW(ad::concat<double>({a, b}, 1));
}

TEST_CASE("mse and dropout need tensors of the input's shape", "[errors]")
{
    Tape<double> tape;
    const auto p = tape.variable(randn({2, 3}, 11)), t = tape.variable(randn({3, 2}, 12));
    REQUIRE_ERROR(ad::mse(p, t), Contains("mse") && Contains("[2, 3]") && Contains("[3, 2]") && Contains("same shape"));
    const Tensor<double> mask{{1, 0}, {0, 1}, {1, 1}};
    REQUIRE_ERROR(ad::dropout(p, mask, 0.5), Contains("dropout") && Contains("[3, 2]") && Contains("[2, 3]"));
    const Tensor<double> not_binary{{1, 0.5, 0}, {1, 1, 1}};
    REQUIRE_ERROR(ad::dropout(p, not_binary, 0.5), Contains("dropout") && Contains("0 or 1"));
}

TEST_CASE("dropout needs 0 <= p < 1", "[errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({2, 2}, 13));
    const Tensor<double> mask{{1, 0}, {0, 1}};
    const double p = GENERATE(1.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN());
    REQUIRE_ERROR(ad::dropout(x, mask, p), Contains("dropout") && Contains("outside [0, 1)"));
}

TEST_CASE("reshape and broadcast_to refuse a target the input cannot take, naming both shapes", "[errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({2, 3}, 14));
    REQUIRE_ERROR(ad::reshape(x, {4, 2}), Contains("reshape") && Contains("[2, 3]") && Contains("[4, 2]") && Contains("6 elements"));
    REQUIRE_ERROR(ad::reshape(x, {ad::infer, 4}),
                  Contains("reshape") && Contains("[infer, 4]") && Contains("[2, 3]") && Contains("divide"));
    REQUIRE_ERROR(ad::reshape(x, {ad::infer, ad::infer}),
                  Contains("reshape") && Contains("at most one") && Contains("[infer, infer]") && Contains("[2, 3]"));
    REQUIRE_ERROR(ad::broadcast_to(x, {3, 3}), Contains("broadcast_to") && Contains("[2, 3]") && Contains("[3, 3]"));
    REQUIRE_ERROR(ad::broadcast_to(x, {2, 1}), Contains("broadcast_to") && Contains("[2, 3]") && Contains("[2, 1]"));
    REQUIRE_ERROR(ad::broadcast_to(x, {3}), Contains("broadcast_to") && Contains("[2, 3]") && Contains("[3]"));
}

TEST_CASE("an axis outside -rank <= axis < rank is refused by every op that takes one", "[errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({2, 3}, 15));
    const std::ptrdiff_t axis = GENERATE(2, -3, 7);
    CAPTURE(axis);
    const auto names = [&](const std::string& op) {
        // the op, where it would have stood on the tape (after x), and what was wrong
        return ContainsAll({op + " (tape position 1): axis " + std::to_string(axis), "[2, 3]", "-2 <= axis < 2"});
    };
    REQUIRE_ERROR(ad::sum(x, axis), names("sum"));
    REQUIRE_ERROR(ad::mean(x, axis, ad::keepdims), names("mean"));
    REQUIRE_ERROR(ad::max(x, axis), names("max"));
    REQUIRE_ERROR(ad::logsumexp(x, axis), names("logsumexp"));
    REQUIRE_ERROR(ad::softmax(x, axis), names("softmax"));
    REQUIRE_ERROR(ad::log_softmax(x, axis), names("log_softmax"));
    REQUIRE_ERROR(ad::slice(x, axis, 0, 1), names("slice"));
    REQUIRE_ERROR(ad::concat<double>({x, x}, axis), names("concat"));
}

TEST_CASE("slice and gather_rows refuse indices outside the tensor", "[errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({3, 2}, 16));
    REQUIRE_ERROR(ad::slice(x, 0, 1, 7), Contains("slice") && Contains("[1, 7)") && Contains("size 3") && Contains("[3, 2]"));
    REQUIRE_ERROR(ad::slice(x, 1, 2, 1), Contains("slice") && Contains("[2, 1)") && Contains("start <= stop"));
    REQUIRE_ERROR(ad::slice(x, 0, -4, 2), Contains("slice") && Contains("[-4, 2)") && Contains("[3, 2]"));
    REQUIRE_ERROR(ad::gather_rows(x, {0, 3}), Contains("gather_rows") && Contains("index 3") && Contains("3 rows") && Contains("[3, 2]"));
    const auto s = tape.variable(Tensor<double>(1.0));
    REQUIRE_ERROR(ad::gather_rows(s, {0}), Contains("gather_rows") && Contains("rank >= 1"));
}

TEST_CASE("cross_entropy needs [batch, classes] logits and one label in 0 <= label < classes per row", "[errors]")
{
    Tape<double> tape;
    const auto z = tape.variable(randn({2, 3}, 17));
    REQUIRE_ERROR(ad::cross_entropy(z, {0, 3}), Contains("cross_entropy") && Contains("label 3") && Contains("3 classes") && Contains("[2, 3]"));
    REQUIRE_ERROR(ad::cross_entropy(z, {-1, 0}), Contains("cross_entropy") && Contains("label -1") && Contains("[2, 3]"));
    REQUIRE_ERROR(ad::cross_entropy(z, {0, 1, 2}), Contains("cross_entropy") && Contains("[2, 3]") && Contains("need 2 labels, got 3"));
    REQUIRE_ERROR(ad::cross_entropy(z, {}), Contains("cross_entropy") && Contains("need 2 labels, got 0"));
    const auto v = tape.variable(randn({3}, 18));
    REQUIRE_ERROR(ad::cross_entropy(v, {0}), Contains("cross_entropy") && Contains("[batch, classes]") && Contains("[3]"));
}

TEST_CASE("backward from a non-scalar needs a cotangent, and the cotangent must have the output's shape", "[errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({2, 3}, 19));
    const auto y = ad::tanh(x);
    REQUIRE_ERROR(ad::backward(y), Contains("backward") && Contains("[2, 3]") && Contains("cotangent"));
    REQUIRE_ERROR(ad::grad(y, {x}), Contains("grad") && Contains("[2, 3]") && Contains("cotangent"));
    const Tensor<double> wrong = randn({3, 2}, 20);
    REQUIRE_ERROR(ad::backward(y, wrong), Contains("backward") && Contains("cotangent has shape [3, 2]") && Contains("[2, 3]"));
    REQUIRE_ERROR(ad::vjp(y, wrong, {x}), Contains("vjp") && Contains("[3, 2]") && Contains("[2, 3]"));
    REQUIRE_NOTHROW(ad::backward(y, Tensor<double>(randn({2, 3}, 21))));
}

TEST_CASE("gradcheck refuses float, and check_gradient gradients of the wrong number or shape", "[errors][gradcheck]")
{
    const auto f = [](const std::vector<Var<float>>& v) { return ad::sum(v[0]); };
    REQUIRE_ERROR(ad::gradcheck<float>(f, {Tensor<float>{1.0f, 2.0f}}), Contains("gradcheck") && Contains("double"));
    const auto L = [](const std::vector<Tensor<double>>& p) { return p[0](0) * p[0](1); };
    const std::vector<Tensor<double>> x{Tensor<double>{1.0, 2.0}};
    REQUIRE_ERROR(ad::check_gradient(L, x, {}), Contains("check_gradient") && Contains("1 inputs but 0 gradients"));
    REQUIRE_ERROR(ad::check_gradient(L, x, {Tensor<double>{1.0, 2.0, 3.0}}), Contains("input 0") && Contains("[3]") && Contains("[2]"));
}

TEST_CASE("item, clamp and reductions of empty tensors say what they need", "[errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({2}, 22));
    REQUIRE_ERROR(x.item(), Contains("item") && Contains("one-element") && Contains("[2]"));
    REQUIRE_ERROR(ad::clamp(x, 1.0, -1.0), Contains("clamp") && Contains("lo <= hi"));
    const auto empty = tape.variable(Tensor<double>::from_shape({0, 3}));
    REQUIRE_ERROR(ad::mean(empty), Contains("mean") && Contains("empty") && Contains("[0, 3]"));
    REQUIRE_ERROR(ad::max(empty, 0), Contains("max") && Contains("empty") && Contains("[0, 3]"));
    REQUIRE_ERROR(ad::mse(empty, empty), Contains("mse") && Contains("empty") && Contains("[0, 3]"));
}

// An empty batch is a legitimate tensor: ops whose result is defined on it (elementwise, sums,
// products with a zero dimension) compute it, as NumPy and PyTorch do, and the rest refuse it
// by name. None reads past an empty buffer; the sanitizer build runs this too.
TEST_CASE("empty tensors go through every op that defines a result for them, forward and backward", "[errors][empty]")
{
    Tape<double> tape;
    const auto e = tape.variable(Tensor<double>::from_shape({0, 3}));
    const auto W = tape.variable(randn({4, 3}, 1));
    const auto b = tape.variable(randn({4}, 2));
    const auto g = tape.variable(randn({3}, 3));

    const auto elementwise = ad::sum(ad::tanh(e) * ad::relu(e) + ad::exp(e) / (ad::sigmoid(e) + 1.0));
    CHECK(elementwise.item() == 0.0);
    CHECK(ad::grad(elementwise, {e})[0].shape() == ad::Shape{0, 3});

    const auto y = ad::affine(e, W, b);  // [0, 4]
    CHECK(y.shape() == ad::Shape{0, 4});
    const auto m = ad::matmul(e, W, ad::transpose_b);
    CHECK(m.shape() == ad::Shape{0, 4});
    const auto gw = ad::grad(ad::sum(y) + ad::sum(m), {W, b});
    CHECK(gw[0] == xt::zeros<double>({4, 3}));  // no rows, no contribution
    CHECK(gw[1] == xt::zeros<double>({4}));

    CHECK(ad::sum(e, 0).shape() == ad::Shape{3});
    CHECK(ad::sum(e, 0).value() == xt::zeros<double>({3}));
    CHECK(ad::sum(e, 1).shape() == ad::Shape{0});
    CHECK(ad::softmax(e, -1).shape() == ad::Shape{0, 3});
    CHECK(ad::log_softmax(tape.variable(Tensor<double>::from_shape({2, 0})), 1).shape() == ad::Shape{2, 0});
    CHECK(ad::layer_norm(e, g, g).shape() == ad::Shape{0, 3});
    CHECK(ad::concat<double>({e, tape.variable(randn({2, 3}, 4))}, 0).shape() == ad::Shape{2, 3});
    CHECK(ad::reshape(e, {ad::infer, 3}).shape() == ad::Shape{0, 3});
    CHECK(ad::gather_rows(e, {}).shape() == ad::Shape{0, 3});
    const auto z = tape.variable(Tensor<double>::from_shape({2, 0}));
    CHECK(ad::matmul(z, tape.variable(Tensor<double>::from_shape({0, 5}))).value() == xt::zeros<double>({2, 5}));

    // A mean, a maximum and a loss over nothing have no value: each is refused by name.
    REQUIRE_ERROR(ad::mean(e, 0), Contains("mean") && Contains("[0, 3]"));
    REQUIRE_ERROR(ad::logsumexp(z, 1), Contains("logsumexp") && Contains("[2, 0]"));
    REQUIRE_ERROR(ad::cross_entropy(e, {}), Contains("cross_entropy") && Contains("[0, 3]"));
}
