// The shared thread pool (autodiff/kernels/parallel.hpp): parallel_for covers its range once in
// disjoint pieces and uses the pool only for large loops; the kernels split over it give the
// same bits at 1 and at 2 threads, because every output element is computed by one thread in
// the serial loop's order; and the library runs on OpenBLAS's OpenMP build when built for it.
#include "autodiff/autodiff.hpp"
#include "autodiff/kernels/nchw.hpp"
#include "autodiff/kernels/parallel.hpp"
#include "autodiff/op.hpp"
#include "nn/optim.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" int openblas_get_parallel(void);  // 0 serial, 1 pthreads, 2 OpenMP

namespace {

using ad::Tensor;

// Runs f with the library set to n threads, then puts the setting back.
template <class F>
auto with_threads(int n, F f)
{
    const int before = ad::get_num_threads();
    ad::set_num_threads(n);
    auto out = f();
    ad::set_num_threads(before);
    return out;
}

// The ranges parallel_for hands out, and the OpenMP threads that ran them.
struct Calls {
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    std::set<int> threads;
};

Calls record(std::size_t n, std::size_t cost)
{
    Calls c;
    std::mutex m;
    ad::kernels::parallel_for(n, cost, [&](std::size_t b, std::size_t e) {
        const std::lock_guard<std::mutex> lock(m);
        c.ranges.emplace_back(b, e);
#ifdef _OPENMP
        c.threads.insert(omp_get_thread_num());
#else
        c.threads.insert(0);
#endif
    });
    std::sort(c.ranges.begin(), c.ranges.end());
    return c;
}

bool bitwise_equal(const Tensor<float>& a, const Tensor<float>& b)
{
    return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

bool covers_once(const Calls& c, std::size_t n)
{
    std::size_t next = 0;
    for (auto [b, e] : c.ranges) {
        if (b != next || e <= b) return false;
        next = e;
    }
    return next == n;
}

Tensor<float> random_tensor(ad::Shape shape, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Tensor<float> t = Tensor<float>::from_shape(shape);
    for (auto& v : t) v = normal(rng);
    return t;
}

}  // namespace

TEST_CASE("parallel_for covers 0 .. n - 1 once, on the pool only above its work threshold", "[parallel]")
{
    const std::size_t big = ad::kernels::parallel_min_work;
    for (int threads : {1, 2}) {
        for (auto [n, cost] : {std::pair<std::size_t, std::size_t>{0, 1}, {1, big}, {7, 1}, {big, 1}, {3, big}, {1001, 64}}) {
            const Calls c = with_threads(threads, [&] { return record(n, cost); });
            CAPTURE(threads, n, cost);
            if (n == 0) {
                CHECK(c.ranges.empty());
                continue;
            }
            CHECK(covers_once(c, n));
            const bool large = n > 1 && n * cost >= big;
            // One call on the calling thread unless the loop is large and there are threads.
            const std::size_t expected = threads > 1 && large ? 2 : 1;
#ifdef _OPENMP
            CHECK(c.ranges.size() == expected);
            CHECK(c.threads.size() == expected);
#else
            (void)expected;
            CHECK(c.ranges.size() == 1);
#endif
        }
    }
}

#ifdef AD_EXPECT_OPENMP
TEST_CASE("built with AD_OPENMP, the matrix products run on OpenBLAS's OpenMP build, whose threads set_num_threads sets",
          "[parallel]")
{
    CHECK(openblas_get_parallel() == 2);
    with_threads(2, [] {
        CHECK(omp_get_max_threads() == 2);
        return 0;
    });
}
#endif

TEST_CASE("parallel_invoke runs each task once, side by side when asked on a pool of two, and rethrows", "[parallel]")
{
    // Where each task ran: its OpenMP thread, and whether inside a parallel region.
    auto where = [](bool split) {
        std::vector<std::pair<int, bool>> ran;
        std::mutex m;
        auto task = [&] {
            const std::lock_guard<std::mutex> lock(m);
#ifdef _OPENMP
            ran.emplace_back(omp_get_thread_num(), omp_in_parallel() != 0);
#else
            ran.emplace_back(0, false);
#endif
        };
        ad::kernels::parallel_invoke(split, task, task);
        std::sort(ran.begin(), ran.end());
        return ran;
    };
    using Ran = std::vector<std::pair<int, bool>>;
    CHECK(with_threads(2, [&] { return where(false); }) == Ran{{0, false}, {0, false}});
    CHECK(with_threads(1, [&] { return where(true); }) == Ran{{0, false}, {0, false}});
#ifdef _OPENMP
    CHECK(with_threads(2, [&] { return where(true); }) == Ran{{0, true}, {1, true}});
#else
    CHECK(with_threads(2, [&] { return where(true); }) == Ran{{0, false}, {0, false}});
#endif
    // A task that throws: its error reaches the caller, on the pool once the other task is done.
    for (int threads : {1, 2}) {
        CAPTURE(threads);
        bool other_ran = false;
        with_threads(threads, [&] {
            CHECK_THROWS_WITH(ad::kernels::parallel_invoke(
                                  true, [&] { other_ran = true; }, [] { throw ad::Error("second task"); }),
                              "second task");
            CHECK_THROWS_WITH(ad::kernels::parallel_invoke(
                                  true, [] { throw ad::Error("first task"); }, [] {}),
                              "first task");
            return 0;
        });
        CHECK(other_ran);
    }
}

TEST_CASE("the kernels split over the pool give the same bits at 1 and 2 threads", "[parallel]")
{
    // Sizes large enough for every split loop to use the pool. Single matrix products are left
    // out: OpenBLAS's threaded GEMM rounds differently from its serial one. A batch of them is
    // split over the batch, each on one thread, as at one thread.
    const Tensor<float> x = random_tensor({256, 512}, 1), b = random_tensor({512}, 2), r = random_tensor({256, 512}, 3);
    const Tensor<float> img = random_tensor({16, 16, 24, 24}, 4);
    auto run = [&] {
        std::vector<Tensor<float>> out;
        {
            // relu and add (forward and VJP), a broadcast bias summed back over the rows (sum_to),
            // sum_to itself, softmax and layer_norm over rows, max and average pooling (forward
            // and VJP).
            ad::Tape<float> tape;
            ad::Parameter<float> X(x), B(b), I(img), gamma(random_tensor({512}, 5)), beta(b);
            const auto h = ad::relu(tape.param(X) + tape.param(B)) + tape.constant(r);
            const auto sm = ad::softmax(tape.param(X) * 3.0f);
            const auto ln = ad::layer_norm(tape.param(X), tape.param(gamma), tape.param(beta));
            const auto s = ad::sum_to(h, {512});
            const auto i = tape.param(I);
            const auto pmax = ad::max_pool2d(i, ad::Pool2dOptions(2));
            const auto pavg = ad::avg_pool2d(i, ad::Pool2dOptions(3, 1, 1));
            // The ops written as xtensor expressions (gelu, exp, tanh, the product), forward and
            // VJP, on a size that leaves a tail after the last whole SIMD block; and a batched
            // product of 32 matrices, split over the batch.
            ad::Parameter<float> Y(random_tensor({257, 511}, 6)), Q(random_tensor({8, 4, 64, 32}, 7)),
                K(random_tensor({8, 4, 32, 64}, 8));
            const auto y = tape.param(Y);
            const auto e = ad::gelu(y) + ad::exp(y * 0.5f) * ad::tanh(y);
            const auto qk = ad::matmul(tape.param(Q), tape.param(K));
            ad::backward(ad::sum(ad::square(h)) + ad::sum(ad::square(s)) + ad::sum(ad::square(pmax)) +
                         ad::sum(ad::square(pavg)) + ad::sum(sm * tape.constant(r)) + ad::sum(ln * tape.constant(r)) +
                         ad::sum(ad::square(e)) + ad::sum(ad::square(qk)));
            out = {h.value(), s.value(), pmax.value(), pavg.value(), sm.value(), ln.value(), e.value(), qk.value(),
                   X.grad, B.grad, I.grad, gamma.grad, beta.grad, Y.grad, Q.grad, K.grad};
            // An Adam step and an SGD step with momentum on those gradients.
            ad::nn::Adam<float> adam({{"X", &X}, {"B", &B}}, ad::nn::AdamOptions{});
            ad::nn::SGDOptions o;
            o.momentum = 0.9;
            ad::nn::SGD<float> sgd({{"I", &I}}, o);
            adam.step();
            sgd.step();
            sgd.step();
            for (auto* p : {&X, &B, &I}) out.push_back(p->value());
        }
        // The convolution's own loops: im2col, col2im, to_cnp, from_cnp and the bias gradient.
        ad::kernels::ConvGeometry g;
        g.N = 16, g.C = 16, g.H = 24, g.W = 24, g.F = 16, g.kh = 3, g.kw = 3, g.ph = 1, g.pw = 1, g.sh = 2, g.sw = 2;
        g.Ho = ad::kernels::conv_out_size(g.H, g.kh, g.sh, g.ph, 1), g.Wo = ad::kernels::conv_out_size(g.W, g.kw, g.sw, g.pw, 1);
        Tensor<float> cols = Tensor<float>::from_shape({g.cols_size()}), dx = xt::zeros<float>({g.in_size()});
        ad::kernels::im2col(img.data(), g, cols.data());
        ad::kernels::col2im_add(cols.data(), g, dx.data());
        Tensor<float> cnp = Tensor<float>::from_shape({g.F * g.columns()}), y = Tensor<float>::from_shape({g.out_size()});
        ad::kernels::to_cnp(cols.data(), g.N, g.F, g.pixels(), cnp.data());  // any [N, F, P] data will do
        ad::kernels::from_cnp(cnp.data(), g.N, g.F, g.pixels(), b.data(), y.data(), false);
        Tensor<float> db = Tensor<float>::from_shape({g.F});
        ad::kernels::bias_grad(y.data(), g.N, g.F, g.pixels(), db.data(), false);
        for (auto* t : {&cols, &dx, &cnp, &y, &db}) out.push_back(*t);
        return out;
    };
    const auto one = with_threads(1, run);
    const auto two = with_threads(2, run);
    REQUIRE(one.size() == two.size());
    for (std::size_t i = 0; i < one.size(); ++i) {
        CAPTURE(i);
        CHECK(one[i].shape() == two[i].shape());
        CHECK(one[i] == two[i]);  // bit for bit
    }
}

TEST_CASE("an expression split over the pool gives the same bits at any thread count, and xtensor's values",
          "[parallel]")
{
    // Whole SIMD blocks on the pool, the tail after the last block on the calling thread: the
    // same compiled code whatever the thread count, so the same bits. Against xt::noalias (code
    // compiled elsewhere, which may fuse a product and a sum that this does not, or the reverse)
    // the values agree to a few roundings of the terms: 4 eps times the sum of their magnitudes.
    for (std::size_t n : {std::size_t(40000), std::size_t(40007), std::size_t(65536 + 13)}) {
        CAPTURE(n);
        const Tensor<float> x = random_tensor({n}, 9), y = random_tensor({n}, 10);
        const auto e = xt::exp(x) * xt::tanh(y) + 0.25f * xt::erfc(x);
        Tensor<float> want = Tensor<float>::from_shape({n}), want_sum = y;
        xt::noalias(want) = e;
        xt::noalias(want_sum) += e;
        const Tensor<float> bound = 4 * std::numeric_limits<float>::epsilon() *
                                    (xt::abs(y) + xt::abs(xt::exp(x) * xt::tanh(y)) + 0.25f * xt::erfc(x));
        std::vector<Tensor<float>> got, got_sum;
        for (int t : {1, 2}) {
            CAPTURE(t);
            Tensor<float> g = Tensor<float>::from_shape({n}), gs = y;
            const bool split = with_threads(t, [&] {
                return ad::detail::assign_split(g, e, false) && ad::detail::assign_split(gs, e, true);
            });
            REQUIRE(split);
            CHECK(xt::all(xt::abs(g - want) <= bound));
            CHECK(xt::all(xt::abs(gs - want_sum) <= bound));
            got.push_back(g);
            got_sum.push_back(gs);
        }
        CHECK(bitwise_equal(got[0], got[1]));
        CHECK(bitwise_equal(got_sum[0], got_sum[1]));
    }
    // Not taken (false, nothing written) for an expression that broadcasts or a small tensor.
    Tensor<float> a = xt::zeros<float>({256, 256});
    const Tensor<float> row = random_tensor({256}, 11), small = random_tensor({64}, 12);
    CHECK_FALSE(ad::detail::assign_split(a, xt::exp(row) + a, false));
    CHECK(bitwise_equal(a, xt::zeros<float>({256, 256})));
    Tensor<float> b = xt::zeros<float>({64});
    CHECK_FALSE(ad::detail::assign_split(b, xt::exp(small), false));
}
