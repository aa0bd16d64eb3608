// Configuration g in libtorch's C++ front end, written as its users write a small GPT: Embedding,
// LayerNorm and Linear modules, attention as batched matmuls with masked_fill and softmax,
// torch::nn::utils::clip_grad_norm_ and torch::optim::AdamW. Parameter names are the state-dict
// keys of examples/char_model.hpp (tok_emb, pos_emb, blocks.<k> with
// torch.nn.TransformerEncoderLayer's keys, ln_f, head), so the initial weights are copied by name.
#include "gpt.hpp"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

namespace bench::gpt {

namespace {

struct AttentionImpl : torch::nn::Module {
    AttentionImpl()
        : in_proj_weight(register_parameter("in_proj_weight", torch::empty({3 * width, width}))),
          in_proj_bias(register_parameter("in_proj_bias", torch::empty({3 * width}))),
          out_proj(register_module("out_proj", torch::nn::Linear(width, width)))
    {
    }
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal)
    {
        const std::int64_t B = x.size(0), T = x.size(1), H = heads, d = width / heads;
        auto qkv = torch::nn::functional::linear(x, in_proj_weight, in_proj_bias)
                       .view({B, T, 3, H, d})
                       .permute({2, 0, 3, 1, 4});  // [3, B, H, T, d]
        auto q = qkv[0], k = qkv[1], v = qkv[2];
        auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(d));
        att = torch::softmax(att.masked_fill(causal, -std::numeric_limits<float>::infinity()), -1);
        auto y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, std::int64_t(width)});
        return out_proj(y);
    }
    torch::Tensor in_proj_weight, in_proj_bias;
    torch::nn::Linear out_proj;
};
TORCH_MODULE(Attention);

struct BlockImpl : torch::nn::Module {
    BlockImpl()
        : self_attn(register_module("self_attn", Attention())),
          linear1(register_module("linear1", torch::nn::Linear(width, 4 * width))),
          linear2(register_module("linear2", torch::nn::Linear(4 * width, width))),
          norm1(register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({std::int64_t(width)})))),
          norm2(register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({std::int64_t(width)}))))
    {
    }
    torch::Tensor forward(torch::Tensor x, const torch::Tensor& causal)
    {
        x = x + self_attn(norm1(x), causal);
        return x + linear2(torch::gelu(linear1(norm2(x))));
    }
    Attention self_attn;
    torch::nn::Linear linear1, linear2;
    torch::nn::LayerNorm norm1, norm2;
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
    GptImpl()
        : tok_emb(register_module("tok_emb", torch::nn::Embedding(vocab, width))),
          pos_emb(register_module("pos_emb", torch::nn::Embedding(context, width))),
          ln_f(register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({std::int64_t(width)})))),
          head(register_module("head", torch::nn::Linear(width, vocab)))
    {
        // A ModuleList so that the keys read blocks.<k>.*.
        auto list = register_module("blocks", torch::nn::ModuleList());
        for (std::size_t i = 0; i < blocks; ++i) {
            blocks_.push_back(Block());
            list->push_back(blocks_.back());
        }
        causal = torch::ones({std::int64_t(context), std::int64_t(context)}, torch::kBool).triu(1);
        positions = torch::arange(std::int64_t(context), torch::kInt64);
    }
    torch::Tensor forward(const torch::Tensor& tokens)
    {
        auto x = tok_emb(tokens) + pos_emb(positions);
        for (auto& b : blocks_) x = b(x, causal);
        return head(ln_f(x));
    }
    torch::nn::Embedding tok_emb, pos_emb;
    torch::nn::LayerNorm ln_f;
    torch::nn::Linear head;
    std::vector<Block> blocks_;
    torch::Tensor causal, positions;
};
TORCH_MODULE(Gpt);

class Libtorch : public Trainer {
public:
    explicit Libtorch(const GptInit& init)
    {
        std::map<std::string, const Named*> by_name;
        for (const auto& p : init.params) by_name[p.name] = &p;
        {
            torch::NoGradGuard no_grad;
            for (auto& kv : model_->named_parameters()) {
                const auto it = by_name.find(kv.key());
                if (it == by_name.end()) throw std::runtime_error("config g: no initial value for libtorch's " + kv.key());
                const Named& p = *it->second;
                kv.value().copy_(torch::from_blob(const_cast<float*>(p.values.data()), p.shape, torch::kFloat32));
                by_name.erase(it);
            }
        }
        if (!by_name.empty()) throw std::runtime_error("config g: libtorch's model has no " + by_name.begin()->first);
        const auto shape = std::vector<std::int64_t>{std::int64_t(batch), std::int64_t(context)};
        tokens_ = torch::from_blob(const_cast<std::int64_t*>(init.tokens.data()), shape, torch::kInt64).clone();
        targets_ = torch::from_blob(const_cast<std::int64_t*>(init.targets.data()), {std::int64_t(batch * context)},
                                    torch::kInt64)
                       .clone();
        // Weight decay on the parameters of rank >= 2 not named bias (the embeddings included),
        // nn::AdamW's default rule (nn::is_weight_matrix).
        std::vector<torch::Tensor> decay, no_decay;
        for (auto& kv : model_->named_parameters()) {
            const bool bias = kv.key().size() >= 4 && kv.key().compare(kv.key().size() - 4, 4, "bias") == 0;
            (kv.value().dim() >= 2 && !bias ? decay : no_decay).push_back(kv.value());
        }
        std::vector<torch::optim::OptimizerParamGroup> groups;
        groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                       torch::optim::AdamWOptions(lr).weight_decay(weight_decay)));
        groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                          torch::optim::AdamWOptions(lr).weight_decay(0)));
        adamw_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lr));
    }

    void step() override
    {
        adamw_->zero_grad();
        loss_ = torch::nn::functional::cross_entropy(model_(tokens_).view({-1, std::int64_t(vocab)}), targets_);
        loss_.backward();
        torch::nn::utils::clip_grad_norm_(model_->parameters(), max_norm);
        adamw_->step();
    }

    double loss() override { return loss_.item<float>(); }

private:
    Gpt model_;
    torch::Tensor tokens_, targets_, loss_;
    std::unique_ptr<torch::optim::AdamW> adamw_;
};

}  // namespace

std::unique_ptr<Trainer> make_gpt_libtorch(const GptInit& init) { return std::make_unique<Libtorch>(init); }

void set_torch_threads(int n) { torch::set_num_threads(n); }
void set_torch_interop_threads(int n) { at::set_num_interop_threads(n); }
std::string torch_version() { return TORCH_VERSION; }

}  // namespace bench::gpt
