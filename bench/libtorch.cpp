// The same models in libtorch's C++ front end, written as its users write them: torch::nn
// modules, torch::mse_loss / cross_entropy, torch::optim::SGD.
#include "configs.hpp"

#include <torch/torch.h>

namespace bench {

namespace {

torch::Tensor tensor(const std::vector<float>& data, std::vector<std::int64_t> shape)
{
    return torch::from_blob(const_cast<float*>(data.data()), shape, torch::kFloat32).clone();
}

torch::Dtype dtype(Precision p) { return p == Precision::f64 ? torch::kFloat64 : torch::kFloat32; }

class Libtorch : public Trainer {
public:
    Libtorch(const Config& c, const Init& init, Precision p) : c_(c)
    {
        const auto opts = torch::TensorOptions().dtype(dtype(p));
        torch::NoGradGuard no_grad;
        std::vector<torch::Tensor> params;
        const auto shapes = c.linear_shapes();
        for (std::size_t l = 0; l < shapes.size(); ++l) {
            const auto [in, out] = shapes[l];
            torch::nn::Linear lin{torch::nn::LinearOptions(std::int64_t(in), std::int64_t(out))};
            lin->to(dtype(p));
            lin->weight.copy_(tensor(init.weight[l], {std::int64_t(out), std::int64_t(in)}));
            lin->bias.copy_(tensor(init.bias[l], {std::int64_t(out)}));
            for (auto& p : lin->parameters()) params.push_back(p);
            linear_.push_back(lin);
            if (c.residual()) {
                torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({std::int64_t(out)}).eps(1e-5));
                norm->to(dtype(p));
                for (auto& p : norm->parameters()) params.push_back(p);
                norm_.push_back(norm);
            }
        }
        x_ = tensor(init.x, {std::int64_t(c.batch), std::int64_t(c.inputs())}).to(opts);
        if (c.loss == Loss::mse)
            target_ = tensor(init.target, {std::int64_t(c.batch), std::int64_t(c.outputs())}).to(opts);
        else
            labels_ = torch::from_blob(const_cast<std::int64_t*>(init.labels.data()),
                                       {std::int64_t(c.batch)}, torch::kInt64).clone();
        sgd_ = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(c.lr));
    }

    void step() override
    {
        sgd_->zero_grad();
        torch::Tensor h = x_;
        const std::size_t n = linear_.size();
        for (std::size_t l = 0; l < n; ++l) {
            if (c_.residual()) {
                h = h + torch::relu(norm_[l](linear_[l](h)));
            } else {
                h = linear_[l](h);
                if (l + 1 < n) h = c_.activation == Activation::tanh ? torch::tanh(h) : torch::relu(h);
            }
        }
        loss_ = c_.loss == Loss::mse ? torch::mse_loss(h, target_)
                                     : torch::nn::functional::cross_entropy(h, labels_);
        loss_.backward();
        sgd_->step();
    }

    double loss() override { return loss_.item<double>(); }

private:
    const Config& c_;
    std::vector<torch::nn::Linear> linear_;
    std::vector<torch::nn::LayerNorm> norm_;
    torch::Tensor x_, target_, labels_, loss_;
    std::unique_ptr<torch::optim::SGD> sgd_;
};

}  // namespace

std::unique_ptr<Trainer> make_libtorch(const Config& c, const Init& init, Precision p)
{
    return std::make_unique<Libtorch>(c, init, p);
}

}  // namespace bench

namespace bench {

void set_libtorch_threads(int n) { torch::set_num_threads(n); }
int libtorch_threads() { return torch::get_num_threads(); }
void set_libtorch_interop_threads(int n) { at::set_num_interop_threads(n); }
std::string libtorch_version() { return TORCH_VERSION; }

}  // namespace bench

// The op chain (chain.hpp) in libtorch: 0-dim float64 tensors with requires_grad, the ops of
// torch::, and torch::autograd::grad for the three inputs (the graph is freed after it).
#include "chain.hpp"

namespace bench {

namespace {

class ChainLibtorch : public Chain {
public:
    explicit ChainLibtorch(std::size_t n) : n_(n)
    {
        const auto opts = torch::TensorOptions().dtype(torch::kFloat64).requires_grad(true);
        x_ = torch::scalar_tensor(chain_x, opts);
        a_ = torch::scalar_tensor(chain_a, opts);
        b_ = torch::scalar_tensor(chain_b, opts);
    }

    void record() override
    {
        v_ = x_;
        for (std::size_t k = 0; k < n_; ++k) {
            switch (k % 5) {
            case 0: v_ = torch::tanh(v_); break;
            case 1: v_ = v_ * a_; break;
            case 2: v_ = v_ + b_; break;
            case 3: v_ = torch::sin(v_); break;
            default: v_ = torch::exp(v_); break;
            }
        }
    }

    void sweep() override
    {
        const auto g = torch::autograd::grad({v_}, {x_, a_, b_});
        last = {v_.item<double>(), g[0].item<double>(), g[1].item<double>(), g[2].item<double>()};
        v_ = torch::Tensor();
    }

private:
    std::size_t n_;
    torch::Tensor x_, a_, b_, v_;
};

}  // namespace

std::unique_ptr<Chain> make_chain_libtorch(std::size_t n) { return std::make_unique<ChainLibtorch>(n); }

}  // namespace bench
