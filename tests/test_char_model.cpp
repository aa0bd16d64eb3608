// The character-level GPT of examples/char_model.hpp: PyTorch's state-dict keys, its loss, and
// the shapes it refuses.
#include "examples/char_model.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using Catch::Matchers::Contains;

namespace {
examples::CharModelConfig tiny()
{
    examples::CharModelConfig c;
    c.vocab = 5;
    c.context = 4;
    c.width = 8;
    c.heads = 2;
    c.blocks = 2;
    return c;
}
}  // namespace

TEST_CASE("char model: the parameters are the state-dict keys of the PyTorch twin", "[examples][char_model]")
{
    ad::nn::Rng rng(1);
    examples::CharTransformer<double> model(tiny(), rng);
    std::vector<std::string> expected = {"tok_emb.weight", "pos_emb.weight"};
    for (const char* block : {"blocks.0.", "blocks.1."})
        for (const char* key : {"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                                "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                                "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"})
            expected.push_back(std::string(block) + key);
    for (const char* key : {"ln_f.weight", "ln_f.bias", "head.weight", "head.bias"}) expected.push_back(key);
    std::vector<std::string> names;
    for (const auto& [name, p] : model.named_parameters()) names.push_back(name);
    std::sort(names.begin(), names.end());
    std::sort(expected.begin(), expected.end());
    CHECK(names == expected);
    // Per block (width 8, MLP 32): attention 3*8*8 + 3*8 + 8*8 + 8 = 288, MLP 8*32 + 32 + 32*8 + 8 = 552,
    // two norms 32: 872.
    CHECK(model.parameter_count() == 5 * 8 + 4 * 8 + 2 * 872 + 16 + 8 * 5 + 5);
}

TEST_CASE("char model: the loss is the mean cross-entropy over every position", "[examples][char_model]")
{
    // logits [1, 2, 3]: positions (0, 1, 2) and (1, 1, 1), labels 2 and 0.
    ad::Tape<double> tape;
    const auto logits = tape.constant(ad::Tensor<double>{{{0.0, 1.0, 2.0}, {1.0, 1.0, 1.0}}});
    const xt::xarray<std::int64_t> labels{{2, 0}};
    const double first = std::log(1 + std::exp(1.0) + std::exp(2.0)) - 2, second = std::log(3.0);
    CHECK(examples::CharTransformer<double>::loss(logits, labels).item() == Approx((first + second) / 2).epsilon(1e-14));
}

TEST_CASE("char model: ids and labels of the wrong shape are an ad::Error naming both", "[examples][char_model][errors]")
{
    ad::nn::Rng rng(1);
    examples::CharTransformer<double> model(tiny(), rng);
    ad::Tape<double> tape;
    const xt::xarray<std::int64_t> too_long = xt::zeros<std::int64_t>({2, 5});
    CHECK_THROWS_AS(model.logits(too_long, tape), ad::Error);
    CHECK_THROWS_WITH(model.logits(too_long, tape), Contains("CharTransformer") && Contains("[2, 5]") &&
                                                        Contains("1 <= length <= 4"));
    const xt::xarray<std::int64_t> flat = xt::zeros<std::int64_t>({3});
    CHECK_THROWS_WITH(model.logits(flat, tape), Contains("[batch, length]") && Contains("[3]"));
    CHECK_THROWS_WITH(model(tape.constant(ad::Tensor<double>{0.0, 1.0})), Contains("CharTransformer") && Contains("[2]"));

    const auto logits = model.logits(xt::zeros<std::int64_t>({2, 3}), tape);
    CHECK_THROWS_WITH(examples::CharTransformer<double>::loss(logits, xt::zeros<std::int64_t>({3, 2})),
                      Contains("CharTransformer::loss") && Contains("[2, 3]") && Contains("[3, 2]"));
}
