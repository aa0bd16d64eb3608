#include "configs.hpp"

#include <cmath>
#include <fstream>
#include <random>
#include <stdexcept>

namespace bench {

std::vector<std::pair<std::size_t, std::size_t>> Config::linear_shapes() const
{
    std::vector<std::pair<std::size_t, std::size_t>> out;
    if (residual())
        for (std::size_t i = 0; i < blocks; ++i) out.emplace_back(sizes[0], sizes[0]);
    else
        for (std::size_t i = 0; i + 1 < sizes.size(); ++i) out.emplace_back(sizes[i], sizes[i + 1]);
    return out;
}

const std::vector<Config>& configs()
{
    using A = Activation;
    using L = Loss;
    static const std::vector<Config> all = {
        {'a', "XOR 2-8-1 tanh, batch 4, MSE", {2, 8, 1}, 0, 4, A::tanh, L::mse},
        {'b', "784-128-10 ReLU, batch 1, CE", {784, 128, 10}, 0, 1, A::relu, L::cross_entropy},
        {'c', "784-256-256-10 ReLU, batch 64, CE", {784, 256, 256, 10}, 0, 64, A::relu, L::cross_entropy},
        {'d', "4 x Linear 1024x1024 ReLU, batch 256, MSE", {1024, 1024, 1024, 1024, 1024}, 0, 256, A::relu, L::mse},
        {'e', "32 residual blocks LN+ReLU, width 64, batch 32, MSE", {64}, 32, 32, A::relu, L::mse},
    };
    return all;
}

const Config& config(char name)
{
    for (const auto& c : configs())
        if (c.name == name) return c;
    throw std::invalid_argument(std::string("no configuration '") + name + "' (expected a..e)");
}

Init make_init(const Config& c, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    Init init;
    for (auto [in, out] : c.linear_shapes()) {
        const float bound = 1.0f / std::sqrt(float(in));
        std::uniform_real_distribution<float> u(-bound, bound);
        std::vector<float> w(in * out), b(out);
        for (auto& v : w) v = u(rng);
        for (auto& v : b) v = u(rng);
        init.weight.push_back(std::move(w));
        init.bias.push_back(std::move(b));
    }
    std::normal_distribution<float> normal(0.0f, 1.0f);
    if (c.name == 'a') {
        init.x = {0, 0, 0, 1, 1, 0, 1, 1};
        init.target = {0, 1, 1, 0};
        return init;
    }
    init.x.resize(c.batch * c.inputs());
    for (auto& v : init.x) v = normal(rng);
    if (c.loss == Loss::mse) {
        init.target.resize(c.batch * c.outputs());
        for (auto& v : init.target) v = normal(rng);
    } else {
        std::uniform_int_distribution<std::int64_t> label(0, std::int64_t(c.outputs()) - 1);
        init.labels.resize(c.batch);
        for (auto& v : init.labels) v = label(rng);
    }
    return init;
}

const char* precision_name(Precision p)
{
    return p == Precision::f64 ? "float64" : "float32";
}

double peak_rss_mb()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
    return -1;
}

}  // namespace bench
