// gelu's forward and backward through the engine, in float and double, ns per element: what
// computing Phi with erfc costs (xsimd's vectorised erfc in float, the C library's in double).
//
//   ad_bench_gelu [ELEMENTS]     default 1048576; best of 7 repetitions
#include "autodiff/autodiff.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace {

template <class T>
void run(const char* name, std::size_t n)
{
    std::mt19937_64 gen(1);
    std::normal_distribution<double> d(0, 2);
    ad::Tensor<T> x = ad::Tensor<T>::from_shape({n});
    for (auto& v : x) v = T(d(gen));
    ad::Tape<T> tape;
    double forward = 1e300, both = 1e300;
    for (int r = 0; r < 7; ++r) {
        tape.clear();
        const auto xv = tape.variable(x);
        const auto t0 = std::chrono::steady_clock::now();
        const auto y = ad::gelu(xv);
        const auto t1 = std::chrono::steady_clock::now();
        const auto g = ad::grad(ad::sum(y), {xv});
        const auto t2 = std::chrono::steady_clock::now();
        forward = std::min(forward, std::chrono::duration<double, std::nano>(t1 - t0).count() / double(n));
        both = std::min(both, std::chrono::duration<double, std::nano>(t2 - t0).count() / double(n));
        if (g[0].size() != n) std::abort();
    }
    std::printf("%s: gelu forward %.2f ns per element, forward and backward %.2f\n", name, forward, both);
}

}  // namespace

int main(int argc, char** argv)
{
    const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : std::size_t(1) << 20;
    if (n == 0) {
        std::fprintf(stderr, "ad_bench_gelu: ELEMENTS must be a positive whole number\n");
        return 2;
    }
    run<float>("float", n);
    run<double>("double", n);
}
