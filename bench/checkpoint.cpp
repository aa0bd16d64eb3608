// Gradient checkpointing on config e's blocks (z + relu(layer_norm(W z + b)), width 64, batch 32,
// MSE, float32) at growing depth: the peak memory and the time of a training step without
// checkpoints and with a checkpoint every round(sqrt(depth)) blocks, and whether the two give the
// same gradients bit for bit. One thread. Each measurement runs in a child process of its own, so
// its peak resident set (VmHWM) is its own.
//
//   ad_bench_checkpoint [--depths 16,32,64,128,256] [--steps N] [--rounds R] [--json FILE]
#include "configs.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <xtensor/xnoalias.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace {

constexpr std::size_t width = 64, batch = 32;

struct Model {
    std::vector<std::unique_ptr<ad::nn::Linear<float>>> linear;
    std::vector<std::unique_ptr<ad::nn::LayerNorm<float>>> norm;
    std::vector<ad::Parameter<float>*> params;
    ad::Tensor<float> x, target;
    ad::Tape<float> tape;

    explicit Model(std::size_t depth)
    {
        ad::nn::Rng rng(1);
        for (std::size_t i = 0; i < depth; ++i) {
            linear.push_back(std::make_unique<ad::nn::Linear<float>>(width, width, rng));
            norm.push_back(std::make_unique<ad::nn::LayerNorm<float>>(width));
            for (auto* p : linear.back()->parameters()) params.push_back(p);
            for (auto* p : norm.back()->parameters()) params.push_back(p);
        }
        std::normal_distribution<float> normal(0.0f, 1.0f);
        x = ad::Tensor<float>::from_shape({batch, width});
        target = ad::Tensor<float>::from_shape({batch, width});
        for (auto& v : x) v = normal(rng);
        for (auto& v : target) v = normal(rng);
    }

    ad::Var<float> block(std::size_t i, const ad::Var<float>& z) { return z + ad::relu((*norm[i])((*linear[i])(z))); }

    // One SGD step; `every` blocks to a checkpoint, 0 for none.
    void step(std::size_t every)
    {
        for (auto* p : params) p->zero_grad();
        tape.clear();
        ad::Var<float> h = tape.constant(x);
        const std::size_t depth = linear.size();
        for (std::size_t i = 0; i < depth;) {
            const std::size_t end = every ? std::min(depth, i + every) : i + 1;
            if (every)
                h = ad::checkpoint(
                    [this, i, end](const std::vector<ad::Var<float>>& in) {
                        ad::Var<float> z = in[0];
                        for (std::size_t j = i; j < end; ++j) z = block(j, z);
                        return z;
                    },
                    {h});
            else
                h = block(i, h);
            i = end;
        }
        ad::backward(ad::mse(h, tape.constant(target)));
        for (auto* p : params) xt::noalias(p->mutable_value()) -= 1e-3f * p->grad;
    }

    // A hash of every parameter's bits after the steps: equal hashes, equal training.
    std::uint64_t fingerprint() const
    {
        std::uint64_t h = 1469598103934665603ull;
        for (const auto* p : params)
            for (const float v : p->value()) {
                std::uint32_t bits;
                std::memcpy(&bits, &v, sizeof bits);
                h = (h ^ bits) * 1099511628211ull;
            }
        return h;
    }
};

struct Result {
    double peak_mb = 0, us_per_step = 0;
    std::uint64_t fingerprint = 0;
};

// Builds the model, takes `steps` steps and reports peak memory, time and the parameters' hash.
Result measure(std::size_t depth, std::size_t every, long steps)
{
    Model m(depth);
    m.step(every);  // the first step sizes the tape's buffers
    const auto t0 = std::chrono::steady_clock::now();
    for (long s = 0; s < steps; ++s) m.step(every);
    const std::chrono::duration<double, std::micro> dt = std::chrono::steady_clock::now() - t0;
    return {bench::peak_rss_mb(), dt.count() / double(steps), m.fingerprint()};
}

// measure() in a child process, so the peak memory is that run's alone.
Result in_child(std::size_t depth, std::size_t every, long steps)
{
    int fd[2];
    if (pipe(fd) != 0) throw std::runtime_error("pipe failed");
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        close(fd[0]);
        const Result r = measure(depth, every, steps);
        const bool ok = write(fd[1], &r, sizeof r) == sizeof r;
        _exit(ok ? 0 : 1);
    }
    close(fd[1]);
    Result r;
    const bool got = read(fd[0], &r, sizeof r) == sizeof r;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("the measurement at depth " + std::to_string(depth) + " failed");
    return r;
}

// The run of median time (with its memory and hash).
Result median(std::vector<Result> runs)
{
    std::sort(runs.begin(), runs.end(), [](const Result& a, const Result& b) { return a.us_per_step < b.us_per_step; });
    return runs[runs.size() / 2];
}

std::vector<std::size_t> parse_list(const std::string& s)
{
    std::vector<std::size_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) out.push_back(std::stoul(item));
    return out;
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        std::vector<std::size_t> depths{16, 32, 64, 128, 256};
        long steps = 20;
        int rounds = 5;
        std::string json;
        for (int i = 1; i + 1 < argc; i += 2) {
            const std::string a = argv[i];
            if (a == "--depths") depths = parse_list(argv[i + 1]);
            else if (a == "--steps") steps = std::stol(argv[i + 1]);
            else if (a == "--rounds") rounds = std::stoi(argv[i + 1]);
            else if (a == "--json") json = argv[i + 1];
            else throw std::invalid_argument("unknown option " + a);
        }
        openblas_set_num_threads(1);
        const Result base = in_child(1, 0, 1);
        std::printf("gradient checkpointing, config e's blocks (width %zu, batch %zu, float32), one thread, %ld steps\n"
                    "peak memory of the process; the baseline (depth 1, no checkpoints) is %.1f MB\n\n",
                    width, batch, steps, base.peak_mb);
        std::printf("| depth | every | peak MB plain | peak MB checkpointed | parameters and gradients MB | "
                    "above baseline and parameters: plain / checkpointed | us per step plain | checkpointed | "
                    "time ratio | same parameters after the steps |\n"
                    "|---|---|---|---|---|---|---|---|---|---|\n");
        std::ostringstream rows;
        for (const std::size_t depth : depths) {
            const auto every = std::size_t(std::lround(std::sqrt(double(depth))));
            // Rounds alternate the two runs, and each keeps its median time: the machine's load
            // drifts over seconds.
            std::vector<Result> plains, ckpts;
            for (int round = 0; round < rounds; ++round) {
                plains.push_back(in_child(depth, 0, steps));
                ckpts.push_back(in_child(depth, every, steps));
            }
            const Result plain = median(plains), ckpt = median(ckpts);
            const bool same = plain.fingerprint == ckpt.fingerprint;
            // Parameters and their gradients grow with depth either way; the rest is the tape.
            const double param_mb = double(depth * (width * width + 3 * width) * sizeof(float) * 2) / (1 << 20);
            std::printf("| %zu | %zu | %.1f | %.1f | %.1f | %.1f / %.1f | %.0f | %.0f | %.2f | %s |\n", depth, every,
                        plain.peak_mb, ckpt.peak_mb, param_mb, plain.peak_mb - base.peak_mb - param_mb,
                        ckpt.peak_mb - base.peak_mb - param_mb,
                        plain.us_per_step, ckpt.us_per_step, ckpt.us_per_step / plain.us_per_step,
                        same ? "yes" : "NO");
            rows << (rows.tellp() > 0 ? ",\n" : "") << "  {\"depth\": " << depth << ", \"every\": " << every
                 << ", \"peak_mb_plain\": " << plain.peak_mb << ", \"peak_mb_checkpointed\": " << ckpt.peak_mb
                 << ", \"baseline_mb\": " << base.peak_mb << ", \"parameters_mb\": " << param_mb << ", \"us_per_step_plain\": " << plain.us_per_step
                 << ", \"us_per_step_checkpointed\": " << ckpt.us_per_step
                 << ", \"bit_identical\": " << (same ? "true" : "false") << "}";
        }
        if (!json.empty()) {
            std::ofstream out(json);
            out << "[\n" << rows.str() << "\n]\n";
            if (!out) throw std::runtime_error("cannot write " + json);
            std::printf("\nwrote %s\n", json.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ad_bench_checkpoint: %s\n", e.what());
        return 1;
    }
}
