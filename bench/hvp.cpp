// Hessian-vector products on configurations c and e: H v, H the Hessian of the loss with respect
// to all parameters at the benchmark's initial weights, v a fixed random direction.
//
//   ours:     g = ad::grad(loss, params, ad::create_graph); ad::backward(g, v) (p.grad = H v)
//   libtorch: g = torch::autograd::grad(loss, params, create_graph = true);
//             torch::autograd::grad(g, params, grad_outputs = v) (double backward)
// Both seed the second sweep with v itself, as PyTorch's own HVPs do, instead of recording the
// inner product sum_i <g_i, v_i> and sweeping from it.
//   step:     each library's training step of the main benchmark (zero, forward, backward, SGD)
//
// Before timing, the two HVPs are compared (max |ours - libtorch| / max |libtorch|). The three
// runners take turns in interleaved rounds at each thread setting (OpenBLAS on 1 and on 2
// threads; libtorch's intra-op pool at 1, its best setting here, see PERFORMANCE-NOTES): the
// median of the per-round means is reported, each runner at its best setting, and the ratios
// ours HVP / ours step (aim <= 3) and ours HVP / libtorch HVP (aim <= 0.8). At 1x1 the calling
// thread's CPU time is reported too: on a loaded machine it is the steadier figure.
//
//   ad_bench_hvp [--configs ce] [--float64] [--rounds N]
//   ad_bench_hvp --configs e --profile STEPS   this engine's float32 HVP alone at one thread, for perf
#include "alloc_count.hpp"
#include "configs.hpp"

#include "autodiff/autodiff.hpp"
#include "steady_malloc.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace {

using bench::Activation;
using bench::Config;
using bench::Loss;
using Clock = std::chrono::steady_clock;

template <class T>
ad::Tensor<T> tensor(const std::vector<float>& data, ad::Shape shape)
{
    ad::Tensor<T> t = ad::Tensor<T>::from_shape(shape);
    std::copy(data.begin(), data.end(), t.begin());
    return t;
}

std::vector<float> random_direction(std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> v(n);
    for (auto& e : v) e = normal(rng);
    return v;
}

template <class T>
class OursHvp {
public:
    OursHvp(const Config& c, const bench::Init& init) : c_(c)
    {
        const auto shapes = c.linear_shapes();
        std::size_t k = 0;
        for (std::size_t l = 0; l < shapes.size(); ++l) {
            const auto [in, out] = shapes[l];
            p_.emplace_back(tensor<T>(init.weight[l], {out, in}));
            p_.emplace_back(tensor<T>(init.bias[l], {out}));
            if (c.residual()) {
                p_.emplace_back(ad::Tensor<T>(xt::ones<T>({out})));
                p_.emplace_back(ad::Tensor<T>(xt::zeros<T>({out})));
            }
        }
        for (auto& q : p_) {
            ptrs_.push_back(&q);
            v_.push_back(tensor<T>(random_direction(q.value().size(), 100 + k++), q.value().shape()));
        }
        x_ = tensor<T>(init.x, {c.batch, c.inputs()});
        if (c.loss == Loss::mse) target_ = tensor<T>(init.target, {c.batch, c.outputs()});
        labels_ = init.labels;
    }

    void run()
    {
        tape_.clear();
        const std::size_t per = c_.residual() ? 4 : 2, n = p_.size() / per;
        ad::Var<T> h = tape_.constant(x_);
        for (std::size_t l = 0; l < n; ++l) {
            const auto z = ad::affine(h, tape_.param(p_[per * l]), tape_.param(p_[per * l + 1]));
            if (c_.residual()) {
                h = h + ad::relu(ad::layer_norm(z, tape_.param(p_[per * l + 2]), tape_.param(p_[per * l + 3])));
            } else {
                h = z;
                if (l + 1 < n) h = c_.activation == Activation::tanh ? ad::tanh(h) : ad::relu(h);
            }
        }
        const auto loss = c_.loss == Loss::mse ? ad::mse(h, tape_.constant(target_)) : ad::cross_entropy(h, labels_);
        const auto g = ad::grad(loss, ptrs_, ad::create_graph);
        for (auto& q : p_) q.zero_grad();
        ad::backward(g, v_);
    }

    std::vector<double> result() const
    {
        std::vector<double> out;
        for (const auto& q : p_) out.insert(out.end(), q.grad.begin(), q.grad.end());
        return out;
    }

private:
    const Config& c_;
    ad::Tape<T> tape_;
    std::vector<ad::Parameter<T>> p_;
    std::vector<ad::Parameter<T>*> ptrs_;
    std::vector<ad::Tensor<T>> v_;
    ad::Tensor<T> x_, target_;
    std::vector<std::int64_t> labels_;
};

class TorchHvp {
public:
    TorchHvp(const Config& c, const bench::Init& init, torch::Dtype dtype) : c_(c)
    {
        const auto opts = torch::TensorOptions().dtype(dtype);
        auto from = [&](const std::vector<float>& d, std::vector<std::int64_t> shape) {
            return torch::from_blob(const_cast<float*>(d.data()), shape, torch::kFloat32).to(opts).clone();
        };
        const auto shapes = c.linear_shapes();
        std::size_t k = 0;
        for (std::size_t l = 0; l < shapes.size(); ++l) {
            const auto in = std::int64_t(shapes[l].first), out = std::int64_t(shapes[l].second);
            p_.push_back(from(init.weight[l], {out, in}));
            p_.push_back(from(init.bias[l], {out}));
            if (c.residual()) {
                p_.push_back(torch::ones({out}, opts));
                p_.push_back(torch::zeros({out}, opts));
            }
        }
        for (auto& q : p_) {
            q.set_requires_grad(true);
            const auto dir = random_direction(std::size_t(q.numel()), 100 + k++);
            v_.push_back(from(dir, q.sizes().vec()));
        }
        x_ = from(init.x, {std::int64_t(c.batch), std::int64_t(c.inputs())});
        if (c.loss == Loss::mse) target_ = from(init.target, {std::int64_t(c.batch), std::int64_t(c.outputs())});
        else labels_ = torch::from_blob(const_cast<std::int64_t*>(init.labels.data()), {std::int64_t(c.batch)},
                                        torch::kInt64).clone();
    }

    void run()
    {
        const std::size_t per = c_.residual() ? 4 : 2, n = p_.size() / per;
        torch::Tensor h = x_;
        for (std::size_t l = 0; l < n; ++l) {
            const auto z = torch::nn::functional::linear(h, p_[per * l], p_[per * l + 1]);
            if (c_.residual()) {
                h = h + torch::relu(torch::layer_norm(z, {z.size(1)}, p_[per * l + 2], p_[per * l + 3], 1e-5));
            } else {
                h = z;
                if (l + 1 < n) h = c_.activation == Activation::tanh ? torch::tanh(h) : torch::relu(h);
            }
        }
        const auto loss = c_.loss == Loss::mse ? torch::mse_loss(h, target_)
                                               : torch::nn::functional::cross_entropy(h, labels_);
        const auto g = torch::autograd::grad({loss}, p_, {}, /*retain_graph=*/true, /*create_graph=*/true);
        hv_ = torch::autograd::grad(g, p_, v_);
    }

    std::vector<double> result() const
    {
        std::vector<double> out;
        for (const auto& t : hv_) {
            const auto d = t.to(torch::kFloat64).contiguous();
            out.insert(out.end(), d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
        }
        return out;
    }

private:
    const Config& c_;
    std::vector<torch::Tensor> p_, v_, hv_;
    torch::Tensor x_, target_, labels_;
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// CPU time of the calling thread in microseconds.
double thread_cpu_us()
{
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return double(t.tv_sec) * 1e6 + double(t.tv_nsec) * 1e-3;
}

// Microseconds per call of f, the mean over `reps` calls: wall clock, and the calling thread's
// CPU time (at one thread all the work runs on it, so on a loaded machine this leaves out the
// waits for a core).
std::pair<double, double> time_us(const std::function<void()>& f, int reps)
{
    const double c0 = thread_cpu_us();
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    const double wall = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / reps;
    return {wall, (thread_cpu_us() - c0) / reps};
}

template <class T>
void measure(const Config& c, int rounds, bool f64)
{
    const auto init = bench::make_init(c);
    OursHvp<T> ours(c, init);
    TorchHvp torch_hvp(c, init, f64 ? torch::kFloat64 : torch::kFloat32);
    const auto step = bench::make_ours(c, init, f64 ? bench::Precision::f64 : bench::Precision::f32);
    const auto torch_step = bench::make_libtorch(c, init, f64 ? bench::Precision::f64 : bench::Precision::f32);

    openblas_set_num_threads(1);
    torch::set_num_threads(1);
    ours.run();
    torch_hvp.run();
    const auto a = ours.result(), b = torch_hvp.result();
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::abs(a[i] - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    std::printf("config %c (%s), %s: %zu parameters; HVP max |ours - libtorch| / max |libtorch| = %.1e\n", c.name,
                c.title.c_str(), f64 ? "float64" : "float32", a.size(), diff / scale);
    if (a.size() != b.size() || !(diff <= (f64 ? 1e-10 : 1e-3) * scale)) {
        std::printf("  the two HVPs disagree: no timing\n");
        std::exit(1);
    }

    // Calls per timed block: about 20 ms of work each.
    const double probe = time_us([&] { ours.run(); }, 3).first;
    const int reps = std::max(2, int(20000 / std::max(probe, 1.0)));
    std::map<std::string, std::map<int, std::vector<double>>> us;  // runner -> OpenBLAS threads -> block means
    std::map<std::string, std::vector<double>> cpu;                 // runner -> CPU-time block means at 1x1
    const std::vector<std::pair<std::string, std::function<void()>>> runners{
        {"ours HVP", [&] { ours.run(); }},
        {"ours step", [&] { step->step(); }},
        {"libtorch HVP", [&] { torch_hvp.run(); }},
        {"libtorch step", [&] { torch_step->step(); }}};
    for (auto& [name, f] : runners) f();  // warm-up: buffers and caches
    for (int r = 0; r < rounds; ++r) {
        for (int blas : {1, 2}) {
            openblas_set_num_threads(blas);
            for (auto& [name, f] : runners) {
                f();  // one untimed call after the others' turns
                const auto [wall, cpu_us] = time_us(f, reps);
                us[name][blas].push_back(wall);
                if (blas == 1) cpu[name].push_back(cpu_us);
            }
        }
    }
    std::printf("  thread CPU time at 1x1: ours HVP %.1f us, ours step %.1f us, libtorch HVP %.1f us, libtorch step "
                "%.1f us\n  CPU-time ratios: HVP / our step = %.2fx; our HVP / libtorch HVP = %.2fx; libtorch HVP / "
                "its step = %.2fx\n",
                median(cpu["ours HVP"]), median(cpu["ours step"]), median(cpu["libtorch HVP"]),
                median(cpu["libtorch step"]), median(cpu["ours HVP"]) / median(cpu["ours step"]),
                median(cpu["ours HVP"]) / median(cpu["libtorch HVP"]),
                median(cpu["libtorch HVP"]) / median(cpu["libtorch step"]));
    std::map<std::string, std::pair<double, int>> best;
    for (const auto& [name, by_threads] : us) {
        best[name] = {1e300, 0};
        for (const auto& [blas, v] : by_threads) {
            const double m = median(v);
            std::printf("  %-13s 1x%d  %10.1f us\n", name.c_str(), blas, m);
            if (m < best[name].first) best[name] = {m, blas};
        }
    }
    std::printf("  best: ours HVP %.1f us (1x%d), ours step %.1f us (1x%d), libtorch HVP %.1f us (1x%d)\n",
                best["ours HVP"].first, best["ours HVP"].second, best["ours step"].first, best["ours step"].second,
                best["libtorch HVP"].first, best["libtorch HVP"].second);
    std::printf("  HVP / our step = %.2fx (aim <= 3x); our HVP / libtorch HVP = %.2fx (aim <= 0.8x); "
                "libtorch: HVP / its step = %.2fx (its step %.1f us, 1x%d)\n",
                best["ours HVP"].first / best["ours step"].first, best["ours HVP"].first / best["libtorch HVP"].first,
                best["libtorch HVP"].first / best["libtorch step"].first, best["libtorch step"].first,
                best["libtorch step"].second);
}

}  // namespace

int main(int argc, char** argv)
{
    bench::steady_malloc();
    std::string configs = "ce";
    bool f64 = false;
    int rounds = 7;
    long profile = 0;  // --profile STEPS: this engine's HVP alone, for perf
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--configs") && i + 1 < argc) configs = argv[++i];
        else if (!std::strcmp(argv[i], "--profile") && i + 1 < argc) profile = std::max(1L, std::atol(argv[++i]));
        else if (!std::strcmp(argv[i], "--float64")) f64 = true;
        else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
        else {
            std::printf("usage: ad_bench_hvp [--configs ce] [--float64] [--rounds N] [--profile STEPS]\n");
            return std::strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (profile) {
        openblas_set_num_threads(1);
        for (char name : configs) {
            const Config& c = bench::config(name);
            OursHvp<float> ours(c, bench::make_init(c));
            const double us = time_us([&] { ours.run(); }, int(profile)).first;
            const auto a0 = bench::allocations();
            for (int i = 0; i < 10; ++i) ours.run();
            std::printf("config %c: this engine's HVP %.1f us (mean of %ld, one thread), %.1f heap allocations each\n",
                        name, us, profile, double(bench::allocations() - a0) / 10);
        }
        return 0;
    }
    torch::set_num_interop_threads(1);
    std::printf("Hessian-vector products, %d interleaved rounds; threads as (libtorch intra-op x OpenBLAS)\n",
                rounds);
    for (char name : configs) {
        const Config& c = bench::config(name);
        if (f64) measure<double>(c, rounds, true);
        else measure<float>(c, rounds, false);
    }
    return 0;
}
