// Matrix products in every vector/matrix combination and with every transpose flag, against a
// plain triple loop and central differences; transpose as a reversal of axes.
#include "gradcheck_helpers.hpp"

#include "autodiff/kernels/blas.hpp"

#include <xtensor/xview.hpp>

#include <cmath>
#include <limits>

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

// BLAS against the loop in product(): two summation orders of k terms differ by at most
// 2 k ulps of (|A| |B|)_ij. For the seeds used here that is at most 3.7e-14 of (A B)_ij, inside
// 1e-13 whatever kernel the instruction set picks.
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
    const auto C = ad::matmul(tape.constant(A), tape.constant(B), ad::Transpose{ta, tb});
    check_close(C.value(), product(ta ? transposed(A) : A, tb ? transposed(B) : B));
    require_gradcheck([=](const Vars& v) { return ad::matmul(v[0], v[1], ad::Transpose{ta, tb}); }, {A, B});
}

TEST_CASE("A A and A^T A: one matrix on both sides of a product gets both adjoints", "[ops][linalg]")
{
    const Tensor<double> A = randn({3, 3}, 7), R = randn({4, 3}, 8);
    require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[0]); }, {A});
    require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[0], ad::transpose_a); }, {R});
    require_gradcheck([](const Vars& v) { return ad::matmul(v[0], v[0], ad::transpose_b); }, {R});
}

namespace {

// |got - want| within the rounding of products summed in any order: each of the k terms of
// (X Y)_ij gathers at most k roundings of its size, so the error is at most k eps (|X| |Y|)_ij
// per product; `bound` is the sum of |X| |Y| over the products that make each element.
void check_within_rounding(const Tensor<double>& got, const Tensor<double>& want, const Tensor<double>& bound,
                           std::size_t k)
{
    REQUIRE(got.shape() == want.shape());
    const double eps = std::numeric_limits<double>::epsilon();
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i, got.flat(i), want.flat(i));
        CHECK(std::abs(got.flat(i) - want.flat(i)) <= double(k) * eps * bound.flat(i));
    }
}

// Restores the library's thread setting when a test leaves.
struct Threads {
    explicit Threads(int n) : before(ad::get_num_threads()) { ad::set_num_threads(n); }
    ~Threads() { ad::set_num_threads(before); }
    int before;
};

}  // namespace

// Up to kernels::small_gemm_max multiply-adds a product runs as plain loops, over C or, with
// fewer than four columns and more rows, over C^T; above it, through BLAS. Both are op(A) op(B)
// for every transpose pair, overwriting C or adding to it.
TEST_CASE("products below and above the plain-loop threshold are op(A) op(B), written or added", "[ops][linalg]")
{
    const Dims d = GENERATE(Dims{4, 2, 8}, Dims{8, 4, 2}, Dims{3, 5, 7}, Dims{2, 9, 3}, Dims{6, 7, 5}, Dims{9, 8, 11});
    const bool ta = GENERATE(false, true), tb = GENERATE(false, true), accumulate = GENERATE(false, true);
    CAPTURE(d.m, d.k, d.n, ta, tb, accumulate);
    static_assert(8 * 4 * 2 <= ad::kernels::small_gemm_max && 6 * 7 * 5 > ad::kernels::small_gemm_max,
                  "the shapes reach both the loops and BLAS");
    const Tensor<double> A = ta ? randn({d.k, d.m}, 21) : randn({d.m, d.k}, 21);
    const Tensor<double> B = tb ? randn({d.n, d.k}, 22) : randn({d.k, d.n}, 22);
    const Tensor<double> C0 = randn({d.m, d.n}, 23);
    Tensor<double> C = C0;
    ad::kernels::gemm(A.data(), {A.shape()[0], A.shape()[1]}, ta, B.data(), {B.shape()[0], B.shape()[1]}, tb,
                      C.data(), {d.m, d.n}, accumulate);
    const Tensor<double> AB = product(ta ? transposed(A) : A, tb ? transposed(B) : B);
    check_close(C, accumulate ? Tensor<double>(C0 + AB) : AB);
}

// Past kernels::concurrent_gemm_min multiply-adds, a matmul's two gradients run side by side on
// a pool of two threads, one product per thread, and an affine layer's in two halves of its
// outputs (the next test). They are still d op(A) = G op(B)^T and d op(B) = op(A)^T G, at one
// thread and at two, and a tensor on both sides, whose one adjoint both products write, still
// gets the sum of the two.
TEST_CASE("a large product's two gradients, side by side on two threads, are G B^T and A^T G", "[ops][linalg][parallel]")
{
    const int threads = GENERATE(1, 2);
    CAPTURE(threads);
    const Threads set(threads);
    const std::size_t m = 64, k = 72, n = 80;
    REQUIRE(m * k * n >= ad::kernels::concurrent_gemm_min);
    REQUIRE(m * m * m >= ad::kernels::concurrent_gemm_min);
    const Tensor<double> A = randn({m, k}, 12), B = randn({k, n}, 13), G = randn({m, n}, 14);
    const Tensor<double> W = transposed(B), b = randn({n}, 15);
    const Tensor<double> S = randn({m, m}, 16), H = randn({m, m}, 17), c = randn({m}, 18);
    const auto abs = [](const Tensor<double>& t) { return Tensor<double>(xt::abs(t)); };
    Tape<double> tape;

    SECTION("matmul: dA = G B^T, dB = A^T G")
    {
        const auto a = tape.variable(A), bv = tape.variable(B);
        const auto g = ad::grad(ad::sum(ad::matmul(a, bv) * tape.constant(G)), {a, bv});
        check_within_rounding(g[0], product(G, transposed(B)), product(abs(G), abs(transposed(B))), n);
        check_within_rounding(g[1], product(transposed(A), G), product(abs(transposed(A)), abs(G)), m);
    }
    SECTION("affine, x W^T + b: dx = G W, dW = G^T x, db = the column sums of G")
    {
        const auto x = tape.variable(A), w = tape.variable(W), bias = tape.variable(b);
        const auto g = ad::grad(ad::sum(ad::affine(x, w, bias) * tape.constant(G)), {x, w, bias});
        check_within_rounding(g[0], product(G, W), product(abs(G), abs(W)), n);
        check_within_rounding(g[1], product(transposed(G), A), product(abs(transposed(G)), abs(A)), m);
        check_within_rounding(g[2], xt::sum(G, {0}), xt::sum(abs(G), {0}), m);
    }
    SECTION("one tensor on both sides: d(S S) = H S^T + S^T H, d(S S^T + c) = H S + H^T S")
    {
        // Two threads adding into one buffer at once lose updates only now and then (at this
        // size, in one try of ten to nine of ten): twenty tries.
        const Tensor<double> St = transposed(S), Ht = transposed(H);
        const Tensor<double> dmat = product(H, St) + product(St, H), dlin = product(H, S) + product(Ht, S);
        const Tensor<double> bmat = product(abs(H), abs(St)) + product(abs(St), abs(H));
        const Tensor<double> blin = product(abs(H), abs(S)) + product(abs(Ht), abs(S));
        for (int t = 0; t < 20; ++t) {
            tape.clear();
            const auto s = tape.variable(S), cv = tape.constant(c);
            check_within_rounding(ad::grad(ad::sum(ad::matmul(s, s) * tape.constant(H)), {s})[0], dmat, bmat, 2 * m);
            check_within_rounding(ad::grad(ad::sum(ad::affine(s, s, cv) * tape.constant(H)), {s})[0], dlin, blin, 2 * m);
        }
    }
}

// A large affine layer's VJP runs in two halves of the output features, one per thread of a
// two-thread pool: dW's rows half by half, and dx = G W as the sum of the two halves' products.
// The halves are the same at one thread and at two, so the gradients have the same bits; an odd
// number of outputs splits unevenly. x feeding a second op makes dx a sum of two contributions;
// x a constant leaves dW alone.
TEST_CASE("a large affine layer's gradients, computed in two halves of its outputs, are G W, G^T x and the sums of G",
          "[ops][linalg][parallel]")
{
    const std::size_t m = 64, k = 72, n = GENERATE(80, 81);
    CAPTURE(n);
    REQUIRE(m * k * n >= ad::kernels::concurrent_gemm_min);
    const Tensor<double> X = randn({m, k}, 41), W = randn({n, k}, 42), b = randn({n}, 43);
    const Tensor<double> G = randn({m, n}, 44), H = randn({m, k}, 45);
    const auto abs = [](const Tensor<double>& t) { return Tensor<double>(xt::abs(t)); };
    auto gradients = [&](int threads, bool x_variable) {
        const Threads set(threads);
        Tape<double> tape;
        const auto x = x_variable ? tape.variable(X) : tape.constant(X), w = tape.variable(W), bias = tape.variable(b);
        // sum(affine(x, W, b) * G) + sum(x * H): d/dx = G W + H
        auto loss = ad::sum(ad::affine(x, w, bias) * tape.constant(G));
        if (x_variable) loss = loss + ad::sum(x * tape.constant(H));
        return ad::grad(loss, x_variable ? std::vector<ad::Var<double>>{w, bias, x} : std::vector<ad::Var<double>>{w, bias});
    };
    const bool x_variable = GENERATE(true, false);
    CAPTURE(x_variable);
    const auto one = gradients(1, x_variable), two = gradients(2, x_variable);
    check_within_rounding(one[0], product(transposed(G), X), product(abs(transposed(G)), abs(X)), m);
    check_within_rounding(one[1], xt::sum(G, {0}), xt::sum(abs(G), {0}), m);
    if (x_variable)
        check_within_rounding(one[2], product(G, W) + H, product(abs(G), abs(W)) + abs(H), n + 1);
    for (std::size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);  // bit for bit
}

TEST_CASE("a linear layer tanh(x W^T + b) with the bias broadcast over the batch", "[ops][linalg]")
{
    const Tensor<double> x = randn({5, 4}, 9), W = randn({3, 4}, 10), b = randn({3}, 11);
    require_gradcheck([](const Vars& v) { return ad::tanh(ad::matmul(v[0], v[1], ad::transpose_b) + v[2]); }, {x, W, b});
}

TEST_CASE("affine with no input features is b in every row, and its gradients are empty but for db", "[ops][linalg][empty]")
{
    // As torch.nn.functional.linear: x [batch, 0] and W [out, 0] give b in each row, and the
    // backward pass sums g over the rows into db (it divided by the zero feature count).
    const Tensor<double> b{1.5, -2.0};
    for (const Shape& xs : {Shape{3, 0}, Shape{0}}) {
        CAPTURE(xs);
        Tape<double> tape;
        const auto x = tape.variable(Tensor<double>::from_shape(xs));
        const auto W = tape.variable(Tensor<double>::from_shape({2, 0}));
        const auto bv = tape.variable(b);
        const auto y = ad::affine(x, W, bv);
        const std::size_t rows = xs.size() == 2 ? xs[0] : 1;
        REQUIRE(y.size() == rows * 2);
        for (std::size_t i = 0; i < y.size(); ++i) CHECK(y.value().data()[i] == b(i % 2));
        const auto g = ad::grad(ad::sum(y), {x, W, bv});
        CHECK(g[0].shape() == x.shape());
        CHECK(g[1].shape() == W.shape());
        CHECK_THAT(g[2], Equals(Tensor<double>{double(rows), double(rows)}));
    }
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

// A product with one output row or column runs as GEMV, in row blocks small enough for OpenBLAS
// to keep on the calling thread: sizes here span several blocks (rows * cols > 9215).
TEST_CASE("matrix-vector products large enough to run in blocks equal the sum they define", "[ops][linalg][matmul]")
{
    auto naive = [](const Tensor<double>& A, const Tensor<double>& B) {  // [m, k] x [k, n]
        Tensor<double> C = xt::zeros<double>({A.shape()[0], B.shape()[1]});
        for (std::size_t i = 0; i < A.shape()[0]; ++i)
            for (std::size_t j = 0; j < B.shape()[1]; ++j)
                for (std::size_t l = 0; l < A.shape()[1]; ++l) C(i, j) += A(i, l) * B(l, j);
        return C;
    };
    const Tensor<double> x = randn({1, 300}, 1), W = randn({300, 50}, 2), Wt = xt::transpose(W);
    const Tensor<double> M = randn({60, 200}, 3), v = randn({200, 1}, 4);
    Tape<double> tape;
    const auto X = tape.variable(x);
    CHECK(xt::allclose(ad::matmul(X, tape.variable(W)).value(), naive(x, W), 1e-12, 1e-12));
    CHECK(xt::allclose(ad::matmul(X, tape.variable(Wt), ad::transpose_b).value(), naive(x, W), 1e-12, 1e-12));
    CHECK(xt::allclose(ad::matmul(tape.variable(M), tape.variable(v)).value(), naive(M, v), 1e-12, 1e-12));
    const Tensor<double> Mt = xt::transpose(M);
    CHECK(xt::allclose(ad::matmul(tape.variable(Mt), tape.variable(v), ad::transpose_a).value(), naive(M, v), 1e-12, 1e-12));

    // First order only at these sizes: a second-order check perturbs each of the 15,000 weights
    // through a whole recorded VJP; second order is checked at small shapes (matmul above, affine
    // in test_ops_nn.cpp), through the same kernels.
    require_first_order_gradcheck([](const Vars& in) { return ad::sum(ad::tanh(ad::matmul(in[0], in[1]))); }, {x, W});
    require_first_order_gradcheck([](const Vars& in) { return ad::sum(ad::tanh(ad::matmul(in[0], in[1], ad::transpose_b))); },
                                  {x, Wt});
    require_gradcheck([](const Vars& in) { return ad::sum(ad::tanh(ad::matmul(in[0], in[1], ad::transpose_a))); }, {Mt, v});
    Tensor<double> row = xt::view(x, 0, xt::all());
    require_first_order_gradcheck([](const Vars& in) { return ad::sum(ad::tanh(ad::affine(in[0], in[1], in[2]))); },
                                  {row, Wt, randn({50}, 5)});
}

// [2, 2, 2] x [2, 2, 2]: product b is A_b B_b, worked by hand. With A_0 = [[1, 2], [3, 4]],
// B_0 = I; A_1 = [[5, 6], [7, 8]], B_1 = [[1, 2], [0, 1]]. For L = sum(C): dA_b[i][p] = sum_j
// B_b[p][j] (the row sums of B_b) and dB_b[p][j] = sum_i A_b[i][p] (the column sums of A_b).
TEST_CASE("batched matmul of [2, 2, 2] by [2, 2, 2] is one product per batch element, by hand", "[ops][linalg][batched]")
{
    const Tensor<double> a = {{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}, b = {{{1, 0}, {0, 1}}, {{1, 2}, {0, 1}}};
    Tape<double> tape;
    const auto A = tape.variable(a), B = tape.variable(b);
    const auto C = ad::matmul(A, B);
    const Tensor<double> want = {{{1, 2}, {3, 4}}, {{5, 16}, {7, 22}}};
    CHECK_THAT(C.value(), Equals(want));
    const auto g = ad::grad(ad::sum(C), {A, B});
    CHECK_THAT(g[0], Equals(Tensor<double>{{{1, 1}, {1, 1}}, {{3, 1}, {3, 1}}}));
    CHECK_THAT(g[1], Equals(Tensor<double>{{{4, 4}, {6, 6}}, {{12, 12}, {14, 14}}}));
}

// One matrix for the whole batch: its gradient is the sum over the batch. With B = ones [2, 2],
// dB[p][j] = sum_{b, i} A_b[i][p] = (1 + 3 + 5 + 7, 2 + 4 + 6 + 8) = (16, 20) down each row;
// B^T A_b^T = (A_b B)^T has the same sum and so the same gradients.
TEST_CASE("batched matmul with a matrix shared by the batch sums its gradient over the batch", "[ops][linalg][batched]")
{
    const Tensor<double> a = {{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}};
    Tape<double> tape;
    const auto A = tape.variable(a), B = tape.variable(Tensor<double>(xt::ones<double>({2, 2})));
    for (const bool shared_left : {false, true}) {
        // [2, 2, 2] x [2, 2] (folded into one GEMM), and [2, 2] x [2, 2, 2] read with stride 0
        const auto C = shared_left ? ad::matmul(B, A, ad::transpose_a | ad::transpose_b) : ad::matmul(A, B);
        REQUIRE(C.shape() == Shape{2, 2, 2});
        const auto g = ad::grad(ad::sum(C), {A, B});
        CHECK_THAT(g[0], Equals(Tensor<double>(xt::full_like(a, 2.0))));
        CHECK_THAT(g[1], Equals(Tensor<double>{{16, 16}, {20, 20}}));
    }
}

// [1, T, d] x [B, d, T] broadcasts the left operand over B = 3 batch elements, and [B, T, E] x [E]
// keeps one column per batch element: each result against 2-D products of the slices.
TEST_CASE("batched matmul broadcasts batch axes of size 1 and promotes vectors as torch.matmul does",
          "[ops][linalg][batched]")
{
    const Tensor<double> a = randn({1, 2, 3}, 31), b = randn({3, 3, 2}, 32), v = randn({2}, 33);
    Tape<double> tape;
    const auto C = ad::matmul(tape.variable(a), tape.variable(b));
    REQUIRE(C.shape() == Shape{3, 2, 2});
    const Tensor<double> a0 = xt::view(a, 0);
    for (std::size_t k = 0; k < 3; ++k) {
        const Tensor<double> bk = xt::view(b, k), ck = xt::view(C.value(), k);
        CHECK(xt::allclose(ck, product(a0, bk), 1e-14, 1e-14));
    }
    const auto y = ad::matmul(tape.variable(b), tape.variable(v));  // [3, 3, 2] x [2] -> [3, 3]
    REQUIRE(y.shape() == Shape{3, 3});
    const Tensor<double> column = as(v, {2, 1});
    for (std::size_t k = 0; k < 3; ++k) {
        const Tensor<double> bk = xt::view(b, k), yk = xt::view(y.value(), k);
        CHECK(xt::allclose(yk, as(product(bk, column), {3}), 1e-14, 1e-14));
    }
}

// Steady state of an attention-shaped step: a [B, T, E] x [E, F] projection (folded into one
// GEMM), q k^T over the batch ([B, T, F] x [B, T, F]^T) and a product with a matrix broadcast
// on the left. After the first step every buffer (outputs, saved tensors, parameter gradients)
// keeps its address: the batched products allocate nothing per step.
TEST_CASE("a training step through batched matmuls allocates no new buffers after the first", "[ops][linalg][batched]")
{
    Tape<float> tape;
    ad::Parameter<float> W(xt::cast<float>(randn({4, 3}, 41))), M(xt::cast<float>(randn({2, 2}, 42)));
    const Tensor<float> x = xt::cast<float>(randn({2, 2, 4}, 43));
    std::vector<const float*> first;
    for (int step = 0; step < 3; ++step) {
        tape.clear();
        W.zero_grad(), M.zero_grad();
        const auto h = ad::matmul(tape.constant(x), tape.param(W));         // [2, 2, 3]
        const auto s = ad::matmul(h, h, ad::transpose_b);                    // [2, 2, 2]
        const auto loss = ad::sum(ad::tanh(ad::matmul(tape.param(M), s)));  // [2, 2] x [2, 2, 2]
        ad::backward(loss);
        std::vector<const float*> now{W.grad.data(), M.grad.data()};
        for (std::size_t i = 0; i < tape.size(); ++i) {
            now.push_back(tape.value(i).data());
            if (const auto* saved = tape.saved_of(tape.record(i)))
                for (const auto& t : saved->tensors) now.push_back(t.data());
        }
        if (step == 1) first = now;
        if (step == 2) CHECK(now == first);
    }
}
