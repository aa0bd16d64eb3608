// Bench configuration g: one training step of the character transformer of scripts/demo --gpt
// (examples/char_model.hpp), batch 16, context 64, float32:
//   token embedding [V, 128] + learned positions [64, 128]
//   4 pre-LayerNorm blocks: x + attention(norm1(x)) with 4 causal heads and one fused QKV
//   product; x + linear2(gelu(linear1(norm2(x)))) with width 512
//   final LayerNorm, Linear head to V, cross-entropy over all B*T positions,
//   gradient-norm clipping at 1, AdamW (lr 1e-3, weight decay 0.1 on the weight matrices).
// The same initial weights (this engine's initialisation, by state-dict name) and the same
// tokens feed each library; a Trainer is configs.hpp's. gpt_ours.cpp and gpt_libtorch.cpp build
// the two sides, gpt_bench.cpp times them.
#pragma once

#include "configs.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bench::gpt {

constexpr std::size_t batch = 16, context = 64, vocab = 96, width = 128, heads = 4, blocks = 4;
constexpr float lr = 1e-3f, weight_decay = 0.1f, max_norm = 1.0f;

struct Named {
    std::string name;                 // the state-dict key, e.g. "blocks.0.self_attn.in_proj_weight"
    std::vector<std::int64_t> shape;  // PyTorch's layout
    std::vector<float> values;
};

struct GptInit {
    std::vector<Named> params;
    std::vector<std::int64_t> tokens, targets;  // [batch, context], ids in [0, vocab)
};
GptInit make_gpt_init(std::uint64_t seed = 11);

std::unique_ptr<Trainer> make_gpt_ours(const GptInit& init);
std::unique_ptr<Trainer> make_gpt_libtorch(const GptInit& init);

void set_torch_threads(int n);
void set_torch_interop_threads(int n);
std::string torch_version();

}  // namespace bench::gpt
