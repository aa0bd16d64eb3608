// The shared thread pool (autodiff/kernels/parallel.hpp): parallel_for covers its range once in
// disjoint pieces and uses the pool only for large loops; the kernels split over it give the
// same bits at 1 and at 2 threads, because every output element is computed by one thread in
// the serial loop's order; and the library runs on OpenBLAS's OpenMP build when built for it.
#include "autodiff/autodiff.hpp"
#include "autodiff/kernels/nchw.hpp"
#include "autodiff/kernels/parallel.hpp"
#include "nn/optim.hpp"

#include <catch2/catch.hpp>

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

TEST_CASE("the kernels split over the pool give the same bits at 1 and 2 threads", "[parallel]")
{
    // Sizes large enough for every split loop to use the pool. Matrix products are left out:
    // OpenBLAS's threaded GEMM rounds differently from its serial one.
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
            ad::backward(ad::sum(ad::square(h)) + ad::sum(ad::square(s)) + ad::sum(ad::square(pmax)) +
                         ad::sum(ad::square(pavg)) + ad::sum(sm * tape.constant(r)) + ad::sum(ln * tape.constant(r)));
            out = {h.value(), s.value(), pmax.value(), pavg.value(), sm.value(), ln.value(),
                   X.grad, B.grad, I.grad, gamma.grad, beta.grad};
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
