// A layer's two gradient products, dx = G W and dW = G^T x, one after the other (each split over
// the pool by OpenBLAS) against side by side (kernels::parallel_invoke, one single-threaded
// product per thread), through the engine's own kernels::gemm, float32. The figures behind
// kernels::concurrent_gemm_min. Best of 20 runs of 50 pairs each, OMP_NUM_THREADS threads.
//
//   OMP_NUM_THREADS=2 ad_bench_gemm_pairs
#include "autodiff/kernels/blas.hpp"
#include "autodiff/kernels/parallel.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

using ad::kernels::Dims;

// Microseconds per call of f: the best of 20 runs of 50 calls, after 100 to warm up.
template <class F>
double best_us(F f)
{
    for (int i = 0; i < 100; ++i) f();
    double best = 1e300;
    for (int r = 0; r < 20; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 50; ++i) f();
        const std::chrono::duration<double, std::micro> dt = std::chrono::steady_clock::now() - t0;
        best = std::min(best, dt.count() / 50);
    }
    return best;
}

}  // namespace

int main()
{
    // [batch, in] x, [out, in] W and [batch, out] G: dx is [batch, in], dW [out, in].
    struct Layer {
        std::size_t batch, out, in;
    };
    std::printf("| batch x out x in | in turn (us) | side by side (us) |\n|---|---|---|\n");
    for (const Layer l : {Layer{32, 64, 64}, Layer{64, 128, 128}, Layer{64, 256, 256}, Layer{256, 1024, 1024}}) {
        std::vector<float> x(l.batch * l.in, 0.03f), W(l.out * l.in, 0.02f), G(l.batch * l.out, 0.01f);
        std::vector<float> dx(x.size()), dW(W.size());
        const Dims xd{l.batch, l.in}, wd{l.out, l.in}, gd{l.batch, l.out};
        auto products = [&](bool split) {
            ad::kernels::parallel_invoke(
                split, [&] { ad::kernels::gemm(G.data(), gd, false, W.data(), wd, false, dx.data(), xd, false); },
                [&] { ad::kernels::gemm(G.data(), gd, true, x.data(), xd, false, dW.data(), wd, false); });
        };
        const double in_turn = best_us([&] { products(false); });
        const double side = best_us([&] { products(true); });
        std::printf("| %zu x %zu x %zu | %.1f | %.1f |\n", l.batch, l.out, l.in, in_turn, side);
    }
    return 0;
}
