// Configuration f in libtorch's C++ front end, written as its users write it: torch::nn::Conv2d
// and Linear, torch::max_pool2d, cross_entropy, torch::optim::SGD.
#include "cnn.hpp"

#include <torch/torch.h>

namespace bench::cnn {

namespace {

torch::Tensor tensor(const std::vector<float>& data, std::vector<std::int64_t> shape)
{
    return torch::from_blob(const_cast<float*>(data.data()), shape, torch::kFloat32).clone();
}

class Libtorch : public Trainer {
public:
    explicit Libtorch(const CnnInit& init)
        : conv1_(torch::nn::Conv2dOptions(1, c1, k)), conv2_(torch::nn::Conv2dOptions(c1, c2, k)),
          fc1_(flat, hidden), fc2_(hidden, classes)
    {
        const auto K = std::int64_t(k);
        {
            torch::NoGradGuard no_grad;
            conv1_->weight.copy_(tensor(init.w1, {c1, 1, K, K}));
            conv1_->bias.copy_(tensor(init.b1, {c1}));
            conv2_->weight.copy_(tensor(init.w2, {c2, c1, K, K}));
            conv2_->bias.copy_(tensor(init.b2, {c2}));
            fc1_->weight.copy_(tensor(init.w3, {hidden, flat}));
            fc1_->bias.copy_(tensor(init.b3, {hidden}));
            fc2_->weight.copy_(tensor(init.w4, {classes, hidden}));
            fc2_->bias.copy_(tensor(init.b4, {classes}));
        }
        std::vector<torch::Tensor> params;
        for (auto* m : std::initializer_list<torch::nn::Module*>{conv1_.get(), conv2_.get(), fc1_.get(), fc2_.get()})
            for (auto& p : m->parameters()) params.push_back(p);
        x_ = tensor(init.x, {batch, 1, side, side});
        labels_ = torch::from_blob(const_cast<std::int64_t*>(init.labels.data()), {std::int64_t(batch)}, torch::kInt64)
                      .clone();
        sgd_ = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(lr));
    }

    void step() override
    {
        sgd_->zero_grad();
        auto h = torch::max_pool2d(torch::relu(conv1_(x_)), 2);
        h = torch::max_pool2d(torch::relu(conv2_(h)), 2);
        h = torch::relu(fc1_(h.flatten(1)));
        loss_ = torch::nn::functional::cross_entropy(fc2_(h), labels_);
        loss_.backward();
        sgd_->step();
    }

    double loss() override { return loss_.item<float>(); }

private:
    torch::nn::Conv2d conv1_, conv2_;
    torch::nn::Linear fc1_, fc2_;
    torch::Tensor x_, labels_, loss_;
    std::unique_ptr<torch::optim::SGD> sgd_;
};

}  // namespace

std::unique_ptr<Trainer> make_cnn_libtorch(const CnnInit& init) { return std::make_unique<Libtorch>(init); }

void set_torch_threads(int n) { torch::set_num_threads(n); }
void set_torch_interop_threads(int n) { at::set_num_interop_threads(n); }
std::string torch_version() { return TORCH_VERSION; }

}  // namespace bench::cnn
