// The smallest products: a BLAS call against kernels::gemm_loops, the plain dot products that
// kernels::gemm uses at or below kernels::small_gemm_max multiply-adds (config a's layers are
// 4x8x2 and 4x1x8). The fixed cost of a BLAS call (argument checks, buffer setup, packing) is
// tens of nanoseconds; the crossover is where the loops' arithmetic catches up with it.
//
//   ad_bench_gemm_small     one thread, float, every transpose pair, accumulating into C
#include "autodiff/kernels/blas.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace {

using ad::kernels::Dims;

// Nanoseconds per call of f, the median of five runs of `reps` calls.
template <class F>
double ns_per_call(F f, int reps)
{
    std::vector<double> runs;
    for (int r = 0; r < 5; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) f();
        runs.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / reps);
    }
    std::sort(runs.begin(), runs.end());
    return runs[2];
}

}  // namespace

int main()
{
    openblas_set_num_threads(1);
    const std::size_t shapes[][3] = {{4, 1, 8}, {4, 8, 2}, {8, 2, 4}, {4, 8, 4}, {8, 4, 8}, {8, 8, 4}, {8, 8, 8}, {16, 8, 8}};
    std::printf("m x n x k  (multiply-adds): ns per call, BLAS / loops, transposes (A, B) = nn nt tn tt\n");
    for (const auto& s : shapes) {
        const std::size_t m = s[0], n = s[1], k = s[2];
        std::printf("%2zu x %2zu x %2zu (%4zu):", m, n, k, m * n * k);
        for (int t = 0; t < 4; ++t) {
            const bool ta = t & 2, tb = t & 1;
            std::vector<float> A(m * k, 0.5f), B(k * n, 0.25f), C(m * n, 0.0f);
            const Dims a = ta ? Dims{k, m} : Dims{m, k}, b = tb ? Dims{n, k} : Dims{k, n}, c{m, n};
            auto Am = ad::kernels::as_matrix(A.data(), a), Bm = ad::kernels::as_matrix(B.data(), b);
            auto Cm = ad::kernels::as_matrix(C.data(), c);
            const double blas = ns_per_call([&] { xt::blas::gemm(Am, Bm, Cm, ta, tb, 1.0f, 1.0f); }, 200000);
            const double loops = ns_per_call(
                [&] {
                    ad::kernels::gemm_loops(A.data(), a, ta, B.data(), b, tb, C.data(), c, true);
                    asm volatile("" ::: "memory");  // C is read back: keep every call
                },
                200000);
            std::printf("  %5.1f / %5.1f", blas, loops);
        }
        std::printf("\n");
    }
    return 0;
}
