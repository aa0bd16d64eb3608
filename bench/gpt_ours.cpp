// Configuration g in this engine: the model of examples/char_model.hpp, its loss, clipping and
// AdamW, written as examples/char_transformer.cpp writes its training step.
#include "gpt.hpp"

#include "char_model.hpp"
#include "nn/clip.hpp"
#include "nn/optim.hpp"

#include <xtensor/xadapt.hpp>

#include <map>
#include <random>
#include <stdexcept>

namespace bench::gpt {

namespace {

examples::CharModelConfig model_config()
{
    examples::CharModelConfig c;
    c.vocab = vocab, c.context = context, c.width = width, c.heads = heads, c.blocks = blocks;
    return c;
}

ad::nn::AdamWOptions adamw_options()
{
    ad::nn::AdamWOptions o;
    o.lr = lr;
    o.weight_decay = weight_decay;
    return o;
}

class Ours : public Trainer {
public:
    explicit Ours(const GptInit& init) : rng_(1), model_(model_config(), rng_), adamw_(model_, adamw_options()), params_(model_)
    {
        std::map<std::string, const Named*> by_name;
        for (const auto& p : init.params) by_name[p.name] = &p;
        for (auto& [name, param] : model_.named_parameters()) {
            const auto it = by_name.find(name);
            if (it == by_name.end()) throw std::runtime_error("config g: no initial value for " + name);
            const Named& p = *it->second;
            param->set_value(xt::adapt(p.values, ad::Shape(p.shape.begin(), p.shape.end())));
            by_name.erase(it);
        }
        if (!by_name.empty()) throw std::runtime_error("config g: this engine's model has no " + by_name.begin()->first);
        const std::vector<std::size_t> shape{batch, context};
        tokens_ = xt::adapt(init.tokens, shape);
        targets_ = xt::adapt(init.targets, shape);
    }

    void step() override
    {
        tape_.clear();
        adamw_.zero_grad();
        const auto loss = model_.loss(model_.logits(tokens_, tape_), targets_);
        ad::backward(loss);
        ad::nn::clip_grad_norm(params_, max_norm);
        adamw_.step();
        loss_ = loss.item();
    }

    double loss() override { return loss_; }

private:
    ad::nn::Rng rng_;
    examples::CharTransformer<float> model_;
    ad::nn::AdamW<float> adamw_;
    ad::nn::ParameterList<float> params_;  // named once, not every step
    xt::xarray<std::int64_t> tokens_, targets_;
    ad::Tape<float> tape_;
    double loss_ = 0;
};

}  // namespace

GptInit make_gpt_init(std::uint64_t seed)
{
    // This engine's initialisation (N(0, 1) token embeddings, N(0, 0.02) positions, PyTorch's
    // defaults elsewhere), read out by state-dict name for both libraries.
    ad::nn::Rng rng(seed);
    examples::CharTransformer<float> model(model_config(), rng);
    GptInit init;
    for (auto& [name, param] : model.named_parameters()) {
        const auto& v = param->value();
        init.params.push_back({name, std::vector<std::int64_t>(v.shape().begin(), v.shape().end()),
                               std::vector<float>(v.begin(), v.end())});
    }
    // Targets are the next token, as in the example's windows of text.
    std::mt19937_64 gen(seed);
    std::uniform_int_distribution<std::int64_t> id(0, std::int64_t(vocab) - 1);
    std::vector<std::int64_t> text(batch * (context + 1));
    for (auto& t : text) t = id(gen);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < context; ++t) {
            init.tokens.push_back(text[b * (context + 1) + t]);
            init.targets.push_back(text[b * (context + 1) + t + 1]);
        }
    return init;
}

std::unique_ptr<Trainer> make_gpt_ours(const GptInit& init) { return std::make_unique<Ours>(init); }

}  // namespace bench::gpt
