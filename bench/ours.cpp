// The benchmark's models in this engine, written as a user would: nn::Linear and nn::LayerNorm
// recorded on one tape that is cleared every step, ad::mse / ad::cross_entropy, and nn::SGD
// (libtorch's side uses torch::optim::SGD).
#include "configs.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"
#include "nn/optim.hpp"

#include <xtensor/xnoalias.hpp>

#include <algorithm>
#include <chrono>

namespace bench {

namespace {

template <class T>
ad::Tensor<T> tensor(const std::vector<float>& data, ad::Shape shape)
{
    ad::Tensor<T> out = ad::Tensor<T>::from_shape(shape);
    std::copy(data.begin(), data.end(), out.begin());
    return out;
}

template <class T>
class Ours : public Trainer {
public:
    Ours(const Config& c, const Init& init) : c_(c), labels_(init.labels)
    {
        const auto shapes = c.linear_shapes();
        for (std::size_t l = 0; l < shapes.size(); ++l) {
            const auto [in, out] = shapes[l];
            linear_.push_back(std::make_unique<ad::nn::Linear<T>>(
                tensor<T>(init.weight[l], {out, in}), tensor<T>(init.bias[l], {out})));
            if (c.residual()) norm_.push_back(std::make_unique<ad::nn::LayerNorm<T>>(out));
        }
        ad::nn::NamedParameters<T> named;
        for (std::size_t l = 0; l < linear_.size(); ++l)
            for (auto& [name, p] : linear_[l]->named_parameters()) named.emplace_back(std::to_string(l) + "." + name, p);
        for (std::size_t l = 0; l < norm_.size(); ++l)
            for (auto& [name, p] : norm_[l]->named_parameters()) named.emplace_back("norm" + std::to_string(l) + "." + name, p);
        for (auto& p : named) params_.push_back(p.second);
        sgd_ = std::make_unique<ad::nn::SGD<T>>(named, ad::nn::SGDOptions{c.lr});
        // The batch and target stay the same from step to step, as libtorch's side reuses its
        // tensors: frozen parameters, which the tape reads in place instead of copying.
        x_.set_value(tensor<T>(init.x, {c.batch, c.inputs()}));
        x_.requires_grad_(false);
        if (c.loss == Loss::mse) target_.set_value(tensor<T>(init.target, {c.batch, c.outputs()}));
        target_.requires_grad_(false);
    }

    void step() override
    {
        step_marked([](int) {});
    }

    // The step, calling mark(k) after phase k: 0 zero the gradients, 1 forward and loss,
    // 2 backward, 3 update.
    template <class Mark>
    void step_marked(Mark mark)
    {
        for (auto* p : params_) p->zero_grad();
        mark(0);
        tape_.clear();
        ad::Var<T> h = tape_.param(x_);
        const std::size_t n = linear_.size();
        for (std::size_t l = 0; l < n; ++l) {
            if (c_.residual()) {
                h = h + ad::relu((*norm_[l])((*linear_[l])(h)));
            } else {
                h = (*linear_[l])(h);
                if (l + 1 < n) h = c_.activation == Activation::tanh ? ad::tanh(h) : ad::relu(h);
            }
        }
        const ad::Var<T> loss = c_.loss == Loss::mse ? ad::mse(h, tape_.param(target_))
                                                         : ad::cross_entropy(h, labels_);
        mark(1);
        ad::backward(loss);
        loss_ = loss.item();
        mark(2);
        sgd_->step();
        mark(3);
    }

    double loss() override { return loss_; }

private:
    const Config& c_;
    ad::Tape<T> tape_;
    std::vector<std::unique_ptr<ad::nn::Linear<T>>> linear_;
    std::vector<std::unique_ptr<ad::nn::LayerNorm<T>>> norm_;
    std::vector<ad::Parameter<T>*> params_;
    std::unique_ptr<ad::nn::SGD<T>> sgd_;
    ad::Parameter<T> x_, target_;
    std::vector<std::int64_t> labels_;
    double loss_ = 0;
};

template <class T>
class OursAnomaly : public Trainer {
public:
    OursAnomaly(const Config& c, const Init& init) : ours_(c, init) {}
    void step() override
    {
        const ad::DetectAnomaly on;
        ours_.step();
    }
    double loss() override { return ours_.loss(); }

private:
    Ours<T> ours_;
};

}  // namespace

std::unique_ptr<Trainer> make_ours(const Config& c, const Init& init, Precision p)
{
    if (p == Precision::f64) return std::make_unique<Ours<double>>(c, init);
    return std::make_unique<Ours<float>>(c, init);
}

std::unique_ptr<Trainer> make_ours_anomaly(const Config& c, const Init& init, Precision p)
{
    if (p == Precision::f64) return std::make_unique<OursAnomaly<double>>(c, init);
    return std::make_unique<OursAnomaly<float>>(c, init);
}

std::array<double, 4> ours_phase_us(const Config& c, const Init& init, long steps)
{
    using Clock = std::chrono::steady_clock;
    Ours<float> t(c, init);
    for (int s = 0; s < 5; ++s) t.step();
    std::array<double, 4> total{};
    for (long s = 0; s < steps; ++s) {
        auto t0 = Clock::now();
        t.step_marked([&](int k) {
            const auto t1 = Clock::now();
            total[std::size_t(k)] += std::chrono::duration<double, std::micro>(t1 - t0).count();
            t0 = t1;
        });
    }
    for (auto& v : total) v /= double(steps);
    return total;
}

}  // namespace bench
