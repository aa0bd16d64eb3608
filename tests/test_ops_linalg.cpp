// Matrix products in every vector/matrix combination and with every transpose flag, against a
// plain triple loop and central differences; transpose as a reversal of axes.
#include "gradcheck_helpers.hpp"

using namespace adtest;
using ad::Tape;

namespace {

// (A B)_ij = sum_k A_ik B_kj, written out.
Tensor<double> product(const Tensor<double>& A, const Tensor<double>& B)
{
    const std::size_t m = A.shape()[0], k = A.shape()[1], n = B.shape()[1];
    Tensor<double> C = Tensor<double>::from_shape({m, n});
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0;
            for (std::size_t l = 0; l < k; ++l) s += A(i, l) * B(l, j);
            C(i, j) = s;
        }
    return C;
}

Tensor<double> transposed(const Tensor<double>& A)
{
    Tensor<double> T = Tensor<double>::from_shape({A.shape()[1], A.shape()[0]});
    for (std::size_t i = 0; i < A.shape()[0]; ++i)
        for (std::size_t j = 0; j < A.shape()[1]; ++j) T(j, i) = A(i, j);
    return T;
}

Tensor<double> as(const Tensor<double>& t, const Shape& shape)
{
    Tensor<double> r = t;
    r.reshape(shape);
    return r;
}

void check_close(const Tensor<double>& got, const Tensor<double>& want)
{
    CAPTURE(got, want);
    REQUIRE(got.shape() == want.shape());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got.flat(i) == Approx(want.flat(i)).epsilon(1e-13));
}

struct Dims {
    std::size_t m, k, n;
};

}  // namespace

TEST_CASE("matmul: matrix-matrix, matrix-vector, vector-matrix and vector-vector are sum_k a_ik b_kj", "[ops][linalg]")
{
    const Dims d = GENERATE(Dims{2, 3, 4}, Dims{1, 5, 1}, Dims{4, 1, 3}, Dims{3, 7, 2});
    CAPTURE(d.m, d.k, d.n);
    const Tensor<double> A = randn({d.m, d.k}, 1), B = randn({d.k, d.n}, 2);
    const Tensor<double> a = randn({d.k}, 3), b = randn({d.k}, 4);
    Tape<double> tape;

    SECTION("[m, k] x [k, n] -> [m, n]")
    {
        check_close(ad::matmul(tape.constant(A), tape.constant(B)).value(), product(A, B));
        require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[1]); }, {A, B});
    }
    SECTION("[m, k] x [k] -> [m]")
    {
        check_close(ad::matmul(tape.constant(A), tape.constant(b)).value(), as(product(A, as(b, {d.k, 1})), {d.m}));
        require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[1]); }, {A, b});
    }
    SECTION("[k] x [k, n] -> [n]")
    {
        check_close(ad::matmul(tape.constant(a), tape.constant(B)).value(), as(product(as(a, {1, d.k}), B), {d.n}));
        require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[1]); }, {a, B});
    }
    SECTION("[k] x [k] -> [], the dot product")
    {
        const auto y = ad::matmul(tape.constant(a), tape.constant(b));
        CHECK(y.dimension() == 0);
        check_close(y.value(), as(product(as(a, {1, d.k}), as(b, {d.k, 1})), {}));
        require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[1]); }, {a, b});
    }
}

TEST_CASE("matmul with transpose flags is op(A) op(B) for all four combinations", "[ops][linalg]")
{
    const bool ta = GENERATE(false, true), tb = GENERATE(false, true);
    const Dims d = GENERATE(Dims{2, 3, 4}, Dims{5, 2, 3});
    CAPTURE(ta, tb, d.m, d.k, d.n);
    // Stored so that op(A) is [m, k] and op(B) is [k, n]: no two dimensions equal, so a wrong
    // transpose cannot pass by accident.
    const Tensor<double> A = ta ? randn({d.k, d.m}, 5) : randn({d.m, d.k}, 5);
    const Tensor<double> B = tb ? randn({d.n, d.k}, 6) : randn({d.k, d.n}, 6);
    Tape<double> tape;
    const auto C = ad::matmul(tape.constant(A), tape.constant(B), ta, tb);
    check_close(C.value(), product(ta ? transposed(A) : A, tb ? transposed(B) : B));
    require_gradcheck([=](const Vars& v) { return ad::matmul(v[0], v[1], ta, tb); }, {A, B});
}

TEST_CASE("A A and A^T A: one matrix on both sides of a product gets both adjoints", "[ops][linalg]")
{
    const Tensor<double> A = randn({3, 3}, 7), R = randn({4, 3}, 8);
    require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[0]); }, {A});
    require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[0], true, false); }, {R});
    require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[0], false, true); }, {R});
}

TEST_CASE("a linear layer tanh(x W^T + b) with the bias broadcast over the batch", "[ops][linalg]")
{
    const Tensor<double> x = randn({5, 4}, 9), W = randn({3, 4}, 10), b = randn({3}, 11);
    require_gradcheck([](const Vars& v) { return ad::tanh(ad::matmul(v[0], v[1], false, true) + v[2]); }, {x, W, b});
}

TEST_CASE("transpose reverses the axes: y(i, j, k) = x(k, j, i), and d x^T = g^T", "[ops][linalg]")
{
    const Shape shape = GENERATE(Shape{4}, Shape{2, 3}, Shape{2, 3, 4});
    const Tensor<double> x = randn(shape, 12);
    Tape<double> tape;
    const auto y = ad::transpose(tape.constant(x));
    REQUIRE(y.shape() == Shape(shape.rbegin(), shape.rend()));
    if (shape.size() == 1) CHECK_THAT(y.value(), Equals(x));
    if (shape.size() == 2)
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 3; ++j) CHECK(y.value()(j, i) == x(i, j));
    if (shape.size() == 3)
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 3; ++j)
                for (std::size_t k = 0; k < 4; ++k) CHECK(y.value()(k, j, i) == x(i, j, k));
    require_gradcheck([](const Vars& v) { return ad::transpose(v[0]); }, {x});
}
