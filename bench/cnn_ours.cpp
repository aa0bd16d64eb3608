// Configuration f in this engine, written as a user would: nn::Conv2d, nn::MaxPool2d,
// nn::Flatten and nn::Linear recorded on one tape that is cleared every step, ad::cross_entropy,
// plain SGD on the parameters.
#include "cnn.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/conv_layers.hpp"
#include "nn/linear.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xnoalias.hpp>

#include <random>

namespace bench::cnn {

namespace {

ad::Tensor<float> tensor(const std::vector<float>& data, ad::Shape shape) { return xt::adapt(data, shape); }

class Ours : public Trainer {
public:
    explicit Ours(const CnnInit& init) : rng_(1), labels_(init.labels)
    {
        conv1_ = std::make_unique<ad::nn::Conv2d<float>>(1, c1, k, rng_);
        conv2_ = std::make_unique<ad::nn::Conv2d<float>>(c1, c2, k, rng_);
        conv1_->weight().set_value(tensor(init.w1, {c1, 1, k, k}));
        conv1_->bias()->set_value(tensor(init.b1, {c1}));
        conv2_->weight().set_value(tensor(init.w2, {c2, c1, k, k}));
        conv2_->bias()->set_value(tensor(init.b2, {c2}));
        fc1_ = std::make_unique<ad::nn::Linear<float>>(tensor(init.w3, {hidden, flat}), tensor(init.b3, {hidden}));
        fc2_ = std::make_unique<ad::nn::Linear<float>>(tensor(init.w4, {classes, hidden}), tensor(init.b4, {classes}));
        for (ad::nn::Module<float>* m : {(ad::nn::Module<float>*)conv1_.get(), (ad::nn::Module<float>*)conv2_.get(),
                                         (ad::nn::Module<float>*)fc1_.get(), (ad::nn::Module<float>*)fc2_.get()})
            for (auto* p : m->parameters()) params_.push_back(p);
        x_.set_value(tensor(init.x, {batch, 1, side, side}));
        x_.requires_grad_(false);  // the batch stays: the tape reads it in place, as libtorch's side does
    }

    void step() override
    {
        for (auto* p : params_) p->zero_grad();
        tape_.clear();
        const ad::Pool2dOptions pool(2);
        ad::Var<float> h = tape_.param(x_);
        h = ad::max_pool2d(ad::relu((*conv1_)(h)), pool);
        h = ad::max_pool2d(ad::relu((*conv2_)(h)), pool);
        h = ad::relu((*fc1_)(ad::flatten(h)));
        const ad::Var<float> loss = ad::cross_entropy((*fc2_)(h), labels_);
        ad::backward(loss);
        loss_ = loss.item();
        for (auto* p : params_) xt::noalias(p->mutable_value()) -= lr * p->grad;
    }

    double loss() override { return loss_; }

private:
    std::mt19937_64 rng_;
    std::unique_ptr<ad::nn::Conv2d<float>> conv1_, conv2_;
    std::unique_ptr<ad::nn::Linear<float>> fc1_, fc2_;
    std::vector<ad::Parameter<float>*> params_;
    std::vector<std::int64_t> labels_;
    ad::Parameter<float> x_;
    ad::Tape<float> tape_;
    double loss_ = 0;
};

}  // namespace

CnnInit make_cnn_init(std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    auto uniform = [&](std::size_t n, std::size_t fan_in) {
        const float bound = 1.0f / std::sqrt(float(fan_in));  // PyTorch's default for conv and linear
        std::uniform_real_distribution<float> d(-bound, bound);
        std::vector<float> v(n);
        for (auto& e : v) e = d(gen);
        return v;
    };
    CnnInit in;
    in.w1 = uniform(c1 * k * k, k * k);
    in.b1 = uniform(c1, k * k);
    in.w2 = uniform(c2 * c1 * k * k, c1 * k * k);
    in.b2 = uniform(c2, c1 * k * k);
    in.w3 = uniform(hidden * flat, flat);
    in.b3 = uniform(hidden, flat);
    in.w4 = uniform(classes * hidden, hidden);
    in.b4 = uniform(classes, hidden);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    in.x.resize(batch * side * side);
    for (auto& e : in.x) e = pixel(gen);
    std::uniform_int_distribution<std::int64_t> label(0, classes - 1);
    in.labels.resize(batch);
    for (auto& e : in.labels) e = label(gen);
    return in;
}

std::unique_ptr<Trainer> make_cnn_ours(const CnnInit& init) { return std::make_unique<Ours>(init); }

}  // namespace bench::cnn
