// BatchNorm's forward pass in evaluation mode (running statistics) against training mode (batch
// statistics, one batch_norm2d op), float32, at the shapes of the example CNN. The modes take
// turns in rounds of about 20 ms, alternating which goes first, so that drifts in the machine's
// load hit both alike; each mode's time is the median of its single forward passes (the input's
// leaf is recorded before the clock starts). Evaluation is timed with gradients recorded, as
// in training, and under NoGrad, as in inference.
//
//   ad_bench_batch_norm [--seconds S]     S per shape, 3 by default
#include "autodiff/autodiff.hpp"
#include "nn/batch_norm.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
namespace nn = ad::nn;

volatile float sink;  // keeps the outputs observable

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

ad::Tensor<float> random(const ad::Shape& shape, std::uint64_t seed, float mean, float sd)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> d(mean, sd);
    ad::Tensor<float> t = ad::Tensor<float>::from_shape(shape);
    for (auto& v : t) v = d(gen);
    return t;
}

std::unique_ptr<nn::BatchNorm<float>> make(std::size_t rank, std::size_t channels)
{
    if (rank == 2) return std::make_unique<nn::BatchNorm1d<float>>(channels);
    return std::make_unique<nn::BatchNorm2d<float>>(channels);
}

// One mode: a module, its own tape, and the timings of its forward passes.
struct Mode {
    const char* name;
    std::unique_ptr<nn::BatchNorm<float>> bn;
    bool no_grad = false;
    ad::Tape<float> tape;
    std::vector<double> us;

    void run(const ad::Tensor<float>& x, std::size_t calls)
    {
        for (std::size_t i = 0; i < calls; ++i) {
            tape.clear();
            std::unique_ptr<ad::NoGrad> off;
            if (no_grad) off = std::make_unique<ad::NoGrad>();
            const auto xv = tape.constant(x);
            const auto t0 = Clock::now();
            const auto y = (*bn)(xv);
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            sink = y.value().data()[0];
        }
    }
};

void bench_shape(const ad::Shape& shape, double seconds)
{
    const std::size_t C = shape[1];
    const ad::Tensor<float> x = random(shape, 1, 0.5f, 2.0f);
    Mode modes[] = {{"train", make(shape.size(), C)},
                    {"eval", make(shape.size(), C)},
                    {"eval, NoGrad", make(shape.size(), C), true}};
    const std::size_t n_modes = std::size(modes);
    // Running statistics and affine parameters away from their initial values, as after training.
    for (auto& m : modes) {
        ad::Tape<float> tape;
        (*m.bn)(tape.constant(random(shape, 2, 1.0f, 1.5f)));
        m.bn->weight().set_value(random({C}, 3, 1.0f, 0.2f));
        m.bn->bias().set_value(random({C}, 4, 0.0f, 0.2f));
    }
    modes[1].bn->eval();
    modes[2].bn->eval();
    std::vector<std::size_t> per_round;
    for (auto& m : modes) {
        m.run(x, 10);
        per_round.push_back(std::clamp<std::size_t>(std::size_t(20000.0 / std::max(median(m.us), 1.0)), 1, 1000));
        m.us.clear();
    }
    const auto start = Clock::now();
    for (std::size_t round = 0;; ++round) {
        bool enough = std::chrono::duration<double>(Clock::now() - start).count() >= seconds;
        for (const auto& m : modes) enough = enough && m.us.size() >= 50;
        if (enough) break;
        for (std::size_t k = 0; k < n_modes; ++k) {
            const std::size_t i = (round + k) % n_modes;
            modes[i].run(x, per_round[i]);
        }
    }
    const double train = median(modes[0].us);
    std::printf("%-16s %-14s train %9.1f us", ad::shape_str(shape).c_str(),
                shape.size() == 2 ? "BatchNorm1d" : "BatchNorm2d", train);
    for (std::size_t i = 1; i < n_modes; ++i) {
        const double t = median(modes[i].us);
        std::printf("   %s %9.1f us (%.2fx)", modes[i].name, t, t / train);
    }
    std::printf("   [%zu, %zu, %zu passes]\n", modes[0].us.size(), modes[1].us.size(), modes[2].us.size());
}

}  // namespace

int main(int argc, char** argv)
{
    double seconds = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seconds" && i + 1 < argc) {
            seconds = std::atof(argv[++i]);
            continue;
        }
        std::fprintf(stderr, "ad_bench_batch_norm: unknown option %s\nusage: ad_bench_batch_norm [--seconds S]\n",
                     a.c_str());
        return 2;
    }
    std::printf("BatchNorm forward, float32, medians; (ratio) = evaluation / training\n");
    for (const ad::Shape& s : {ad::Shape{64, 16, 24, 24}, ad::Shape{64, 32, 8, 8}, ad::Shape{64, 64}})
        bench_shape(s, seconds);
}
