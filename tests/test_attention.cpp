// Sequence modules: Embedding, PositionalEmbedding, MultiheadAttention and TransformerBlock.
// Outputs and gradients against PyTorch (tests/fixtures/make_attention_fixtures.py), causality,
// gradchecks of each module, the lookup's scatter-add by hand, errors, and the Hessian-vector
// product of a tiny transformer language model against differences of its gradient.
#include "gradcheck_helpers.hpp"

#include "nn/nn.hpp"

#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace adtest;
using ad::Tape;
using Catch::Matchers::Contains;
namespace nn = ad::nn;

namespace {

const std::string fixtures = std::string(AD_SOURCE_DIR) + "/tests/fixtures/attention/";
using Names = std::vector<std::string>;

Names parameter_names(nn::Module<double>& m)
{
    Names out;
    for (auto& e : m.named_parameters()) out.push_back(e.first);
    return out;
}

std::map<std::string, Tensor<double>> read_io(const std::string& path)
{
    std::map<std::string, Tensor<double>> out;
    for (const auto& [name, a] : nn::read_npz(path)) out.emplace(name, a.to_tensor<double>());
    return out;
}

// The largest |ours - ref| / max(1, |ref|), elementwise.
double rel_error(const Tensor<double>& ours, const Tensor<double>& ref)
{
    REQUIRE(ours.shape() == ref.shape());
    double m = 0;
    for (std::size_t i = 0; i < ref.size(); ++i)
        m = std::max(m, std::abs(ours.flat(i) - ref.flat(i)) / std::max(1.0, std::abs(ref.flat(i))));
    return m;
}

// PyTorch and this library evaluate the same float64 formulas in different orders (BLAS blocking,
// q scaled before rather than after q k^T, their softmax and layer norm kernels): rounding
// differences of a few ulps, amplified by at most a few hundred through these small well-scaled
// layers, so ~1e-13. Any error in the maths (a bias left out, a wrong scale, heads split the
// wrong way, a mask off by one) moves the values by 1e-3 or more.
constexpr double pytorch_tolerance = 1e-10;

// Loads NAME.npz into the module, runs NAME_io.npz's input through run(x), and compares the output
// and the gradients of sum(out * R) with respect to the input and every parameter.
template <class Run>
void match_pytorch(nn::Module<double>& m, const std::string& name, Run run)
{
    std::set<std::string> file_keys, model_keys;
    for (const auto& e : nn::read_npz(fixtures + name + ".npz")) file_keys.insert(e.first);
    for (const auto& n : parameter_names(m)) model_keys.insert(n);
    CHECK(file_keys == model_keys);
    nn::load(m, fixtures + name + ".npz");
    m.eval();
    const auto io = read_io(fixtures + name + "_io.npz");
    Tape<double> tape;
    const Var<double> x = tape.variable(io.at("input"));
    const Var<double> out = run(m, x);
    CHECK(rel_error(out.value(), io.at("output")) < pytorch_tolerance);
    const Var<double> loss = ad::sum(out * tape.constant(io.at("R")));
    m.zero_grad();
    const Tensor<double> gx = ad::grad(loss, {x})[0];
    ad::backward(loss);
    CHECK(rel_error(gx, io.at("grad.input")) < pytorch_tolerance);
    for (auto& [key, p] : m.named_parameters()) {
        INFO(key);
        CHECK(rel_error(p->grad, io.at("grad." + key)) < pytorch_tolerance);
    }
}

xt::xarray<bool> causal_mask(std::size_t T)
{
    xt::xarray<bool> m = xt::zeros<bool>({T, T});
    for (std::size_t q = 0; q < T; ++q)
        for (std::size_t k = q + 1; k < T; ++k) m(q, k) = true;
    return m;
}

ad::GradcheckResult check_module(nn::Module<double>& m, const Tensor<double>& x,
                                 const std::function<Var<double>(nn::Module<double>&, const Var<double>&)>& run,
                                 const std::function<void()>& reset = {})
{
    const Tensor<double> c = randn(run(m, Tape<double>().constant(x)).shape(), 77);
    auto loss = [&](nn::Module<double>& model, Tape<double>& tape) {
        if (reset) reset();
        return ad::sum(run(model, tape.constant(x)) * tape.constant(c));
    };
    auto res = nn::gradcheck_module<double>(m, loss);
    INFO(res.report());
    CHECK(res.ok);
    return res;
}

Var<double> call(nn::Module<double>& m, const Var<double>& x) { return m(x); }

// Bit-for-bit equality of two expressions of one shape.
template <class A, class B>
bool same(const A& a, const B& b)
{
    return bool(a == b);
}

}  // namespace

// --- PyTorch ---

TEST_CASE("MultiheadAttention output and gradients match PyTorch", "[nn][attention][pytorch]")
{
    nn::Rng rng(1);
    SECTION("no mask")
    {
        nn::MultiheadAttention<double> mha(8, 2, rng);
        match_pytorch(mha, "mha", call);
    }
    SECTION("the causal option is PyTorch's upper-triangular attn_mask")
    {
        nn::MultiheadAttention<double> mha(8, 2, rng, nn::MultiheadAttentionOptions().causal(true));
        match_pytorch(mha, "mha_causal", call);
    }
    SECTION("the same mask given as an argument")
    {
        nn::MultiheadAttention<double> mha(8, 2, rng);
        match_pytorch(mha, "mha_causal", [](nn::Module<double>& m, const Var<double>& x) {
            return static_cast<nn::MultiheadAttention<double>&>(m)(x, causal_mask(5));
        });
    }
}

// The twin is torch.nn.TransformerEncoderLayer(norm_first=True, activation='gelu').
TEST_CASE("TransformerBlock output and gradients match PyTorch's encoder layer", "[nn][transformer][pytorch]")
{
    nn::Rng rng(2);
    nn::TransformerBlock<double> block(8, 2, rng, nn::TransformerBlockOptions().causal(true));
    // TransformerEncoderLayer(8, 2, dim_feedforward=32, batch_first=True, norm_first=True).state_dict().keys()
    CHECK(parameter_names(block) ==
          Names{"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"});
    CHECK(block.dim_feedforward() == 32);
    match_pytorch(block, "block_causal", call);
}

// --- causality and masks ---

TEST_CASE("causal attention leaves outputs before a changed time step exactly equal", "[nn][attention][transformer]")
{
    nn::Rng rng(3);
    nn::MultiheadAttention<double> mha(8, 2, rng, nn::MultiheadAttentionOptions().causal(true));
    nn::TransformerBlock<double> block(8, 4, rng, nn::TransformerBlockOptions().causal(true).dim_feedforward(12));
    nn::Module<double>* modules[] = {&mha, &block};
    const std::size_t T = 6;
    const Tensor<double> x = randn({2, T, 8}, 4);
    for (auto* m : modules) {
        Tape<double> tape;
        const Tensor<double> before = (*m)(tape.constant(x)).value();
        for (std::size_t t = 0; t < T; ++t) {
            INFO("module " << m->describe() << ", t = " << t);
            Tensor<double> changed = x;
            xt::view(changed, xt::all(), t, xt::all()) += randn({2, 8}, 5 + t);
            const Tensor<double> after = (*m)(tape.constant(changed)).value();
            // Hidden keys are replaced by -inf, whatever their scores: weight exactly 0.
            CHECK(same(xt::view(after, xt::all(), xt::range(0, t), xt::all()),
                       xt::view(before, xt::all(), xt::range(0, t), xt::all())));
            CHECK(xt::amax(xt::abs(xt::view(after, xt::all(), t, xt::all()) -
                                   xt::view(before, xt::all(), t, xt::all())))() > 1e-3);
        }
    }
    // Without the option the first position sees the last.
    nn::MultiheadAttention<double> full(8, 2, rng);
    Tape<double> tape;
    Tensor<double> changed = x;
    xt::view(changed, xt::all(), T - 1, xt::all()) += 1.0;
    CHECK(xt::amax(xt::abs(xt::view(full(tape.constant(changed)).value() - full(tape.constant(x)).value(),
                                    xt::all(), 0, xt::all())))() > 1e-6);
}

TEST_CASE("a [B, T, T] or [B, H, T, T] attention mask hides keys per batch and head", "[nn][attention]")
{
    // Hiding key k from every query of batch 0 makes batch 0 blind to x[0, k]; batch 1 is unmasked.
    nn::Rng rng(6);
    nn::MultiheadAttention<double> mha(6, 3, rng);
    const std::size_t T = 4, k = 2;
    xt::xarray<bool> m3 = xt::zeros<bool>({std::size_t(2), T, T});
    for (std::size_t q = 0; q < T; ++q) m3(0, q, k) = true;
    const xt::xarray<bool> m4 = xt::broadcast(xt::view(m3, xt::all(), xt::newaxis(), xt::all(), xt::all()),
                                              {std::size_t(2), std::size_t(3), T, T});
    const Tensor<double> x = randn({2, T, 6}, 7);
    Tensor<double> changed = x;
    xt::view(changed, xt::all(), k, xt::all()) += 1.0;
    const xt::xarray<bool>* masks[] = {&m3, &m4};
    for (const auto* m : masks) {
        Tape<double> tape;
        const Tensor<double> a = mha(tape.constant(x), *m).value(), b = mha(tape.constant(changed), *m).value();
        // batch 0: x[0, k] reaches the other positions only as key and value k, which are hidden
        // (its own output still depends on it through its query)
        for (std::size_t t = 0; t < T; ++t)
            if (t != k) CHECK(same(xt::view(a, 0, t, xt::all()), xt::view(b, 0, t, xt::all())));
        CHECK(xt::amax(xt::abs(xt::view(a, 1, 0, xt::all()) - xt::view(b, 1, 0, xt::all())))() > 1e-6);
    }
}

// --- gradchecks ---

TEST_CASE("MultiheadAttention gradchecks over its input and every parameter", "[nn][attention][gradcheck]")
{
    nn::Rng rng(8);
    const Tensor<double> x = randn({2, 4, 6}, 9);
    SECTION("no mask")
    {
        nn::MultiheadAttention<double> m(6, 2, rng);
        for (auto& [n, p] : m.named_parameters()) p->set_value(randn(p->value().shape(), 10 + n.size(), 0.5));  // biases nonzero
        check_module(m, x, call);
    }
    SECTION("causal")
    {
        nn::MultiheadAttention<double> m(6, 3, rng, nn::MultiheadAttentionOptions().causal(true));
        for (auto& [n, p] : m.named_parameters()) p->set_value(randn(p->value().shape(), 20 + n.size(), 0.5));
        check_module(m, x, call);
    }
    SECTION("no bias, a user mask and the causal one")
    {
        nn::MultiheadAttention<double> m(6, 1, rng, nn::MultiheadAttentionOptions().bias(false).causal(true));
        CHECK(parameter_names(m) == Names{"in_proj_weight", "out_proj.weight"});
        xt::xarray<bool> mask = xt::zeros<bool>({std::size_t(4), std::size_t(4)});
        mask(3, 1) = mask(2, 0) = true;
        check_module(m, x, [&](nn::Module<double>& mm, const Var<double>& v) {
            return static_cast<nn::MultiheadAttention<double>&>(mm)(v, mask);
        });
    }
    SECTION("dropout on the attention weights, the mask fixed by reseeding")
    {
        nn::MultiheadAttention<double> m(6, 2, rng, nn::MultiheadAttentionOptions().dropout(0.4).causal(true));
        m.train();
        check_module(m, x, call, [&] { m.seed(11); });
        const Tensor<double> mask = m.last_mask();
        REQUIRE(mask.shape() == Shape{2, 2, 4, 4});
        CHECK(xt::any(xt::equal(mask, 0.0)));
        CHECK(xt::any(xt::equal(mask, 1.0)));
        // eval: no dropout, so the output is that of the same module with p = 0
        m.eval();
        Tape<double> tape;
        const Tensor<double> with = m(tape.constant(x)).value();
        m.train();
        m.seed(11);
        const Tensor<double> dropped = m(tape.constant(x)).value();
        CHECK(xt::amax(xt::abs(with - dropped))() > 1e-6);
    }
}

TEST_CASE("TransformerBlock gradchecks over its input and every parameter", "[nn][transformer][gradcheck]")
{
    nn::Rng rng(12);
    const Tensor<double> x = randn({2, 3, 4}, 13);
    SECTION("causal")
    {
        nn::TransformerBlock<double> b(4, 2, rng, nn::TransformerBlockOptions().causal(true).dim_feedforward(6));
        // biases and LayerNorm's shift away from zero, the scales away from one
        std::uint64_t seed = 30;
        for (auto& [n, p] : b.named_parameters()) {
            const bool scale = n.rfind("norm", 0) == 0 && n.find("weight") != std::string::npos;
            p->set_value(randn(p->value().shape(), seed++, 0.5) + (scale ? 1.0 : 0.0));
        }
        check_module(b, x, call);
    }
    SECTION("dropout everywhere, the masks fixed by reseeding")
    {
        nn::TransformerBlock<double> b(4, 2, rng, nn::TransformerBlockOptions().dropout(0.3));
        Names modules;
        for (auto& [n, m] : b.named_modules()) modules.push_back(n);
        CHECK(modules == Names{"self_attn", "self_attn.out_proj", "linear1", "dropout", "linear2", "norm1", "norm2",
                               "dropout1", "dropout2"});
        b.train();
        auto reset = [&] {
            b.self_attn().seed(1);
            std::uint64_t s = 2;
            for (auto& [n, m] : b.named_modules())
                if (auto* d = dynamic_cast<nn::Dropout<double>*>(m)) d->seed(s++);
        };
        check_module(b, x, call, reset);
    }
}

// --- initialisation ---

TEST_CASE("MultiheadAttention initialises as PyTorch's _reset_parameters", "[nn][attention]")
{
    nn::Rng rng(14);
    const std::size_t E = 32;
    nn::MultiheadAttention<double> m(E, 4, rng);
    CHECK(parameter_names(m) == Names{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
    const auto& w = m.in_proj_weight().value();
    REQUIRE(w.shape() == Shape{3 * E, E});
    const double bound = std::sqrt(6.0 / double(E + 3 * E));  // fan_in E, fan_out 3E
    CHECK(xt::amax(xt::abs(w))() <= bound);
    CHECK(xt::amax(xt::abs(w))() > 0.95 * bound);
    const auto& wo = m.out_proj().weight().value();
    CHECK(xt::amax(xt::abs(wo))() <= 1 / std::sqrt(double(E)));
    CHECK(xt::amax(xt::abs(wo))() > 0.9 / std::sqrt(double(E)));
    CHECK(xt::all(xt::equal(m.in_proj_bias()->value(), 0.0)));
    CHECK(xt::all(xt::equal(m.out_proj().bias()->value(), 0.0)));
    CHECK(m.describe() == "MultiheadAttention(embed_dim=32, num_heads=4, dropout=0, bias=true, causal=false)");
}

// --- Embedding and PositionalEmbedding ---

TEST_CASE("Embedding gives table rows, and repeated ids add their gradients", "[nn][embedding]")
{
    nn::Rng rng(15);
    nn::Embedding<double> emb(5, 3, rng);
    CHECK(parameter_names(emb) == Names{"weight"});
    CHECK(emb.describe() == "Embedding(num_embeddings=5, embedding_dim=3)");
    const Tensor<double> W = emb.weight().value();
    const xt::xarray<std::int64_t> ids{{1, 3, 1}, {0, 1, 4}};
    Tape<double> tape;
    const Var<double> out = emb(ids, tape);
    REQUIRE(out.shape() == Shape{2, 3, 3});
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t t = 0; t < 3; ++t)
            CHECK(same(xt::view(out.value(), b, t, xt::all()), xt::view(W, ids(b, t), xt::all())));
    // L = sum(c * out): dL/dW[r] = sum of c[b, t] over the positions with ids[b, t] = r
    const Tensor<double> c = randn({2, 3, 3}, 16);
    emb.zero_grad();
    ad::backward(ad::sum(out * tape.constant(c)));
    Tensor<double> expected = xt::zeros<double>({5, 3});
    for (std::size_t j = 0; j < 3; ++j) {
        expected(1, j) = c(0, 0, j) + c(0, 2, j) + c(1, 1, j);  // id 1, three times
        expected(3, j) = c(0, 1, j);
        expected(0, j) = c(1, 0, j);
        expected(4, j) = c(1, 2, j);
    }  // id 2 never occurs: zero
    CHECK(xt::allclose(emb.weight().grad, expected, 1e-15, 0.0));

    // The Module form reads the ids from the values and gives the same rows; no gradient flows to x.
    const Var<double> as_values = emb(tape.variable(xt::cast<double>(ids)));
    CHECK(same(as_values.value(), out.value()));
    // any shape of ids: a scalar id gives one row [dim]
    const Var<double> one = emb(xt::xarray<std::int64_t>(2), tape);
    CHECK(one.shape() == Shape{3});
    CHECK(same(one.value(), xt::view(W, 2, xt::all())));
}

TEST_CASE("Embedding and PositionalEmbedding draw N(0, 1) and N(0, 0.02)", "[nn][embedding]")
{
    nn::Rng rng(17);
    nn::Embedding<double> emb(200, 50, rng);
    nn::PositionalEmbedding<double> pos(200, 50, rng);
    const auto& a = emb.weight().value();
    const auto& b = pos.weight().value();
    REQUIRE(b.shape() == Shape{200, 50});
    // 10,000 draws: the sample deviation is within 3% of the true one with overwhelming probability.
    CHECK(std::sqrt(xt::mean(a * a)()) == Approx(1.0).epsilon(0.03));
    CHECK(std::abs(xt::mean(a)()) < 0.04);
    CHECK(std::sqrt(xt::mean(b * b)()) == Approx(0.02).epsilon(0.03));
    CHECK(pos.describe() == "PositionalEmbedding(max_len=200, embedding_dim=50)");
}

TEST_CASE("PositionalEmbedding adds weight[:T], and its gradient sums over the batch", "[nn][embedding]")
{
    nn::Rng rng(18);
    nn::PositionalEmbedding<double> pos(6, 4, rng);
    const Tensor<double> W = pos.weight().value();
    const Tensor<double> x = randn({3, 4, 4}, 19), c = randn({3, 4, 4}, 20);
    Tape<double> tape;
    const Var<double> y = pos(tape.constant(x));
    for (std::size_t b = 0; b < 3; ++b)
        for (std::size_t t = 0; t < 4; ++t)
            for (std::size_t j = 0; j < 4; ++j) CHECK(y.value()(b, t, j) == x(b, t, j) + W(t, j));
    pos.zero_grad();
    ad::backward(ad::sum(y * tape.constant(c)));
    Tensor<double> expected = xt::zeros<double>({6, 4});
    xt::view(expected, xt::range(0, 4), xt::all()) = xt::sum(c, {0});  // rows 4, 5 unused
    CHECK(xt::allclose(pos.weight().grad, expected, 1e-15, 0.0));
    check_module(pos, x, call);
    check_module(pos, randn({6, 4}, 21), call);  // [T, D]: no batch axis
}

// --- errors ---

TEST_CASE("sequence modules refuse bad sizes, shapes, ids and masks", "[nn][attention][embedding][errors]")
{
    nn::Rng rng(22);
    CHECK_THROWS_AS(nn::MultiheadAttention<double>(10, 3, rng), ad::Error);
    CHECK_THROWS_WITH(nn::MultiheadAttention<double>(10, 3, rng),
                      Contains("MultiheadAttention") && Contains("embed_dim = 10") && Contains("num_heads = 3"));
    CHECK_THROWS_WITH(nn::MultiheadAttention<double>(8, 2, rng, nn::MultiheadAttentionOptions().dropout(1.0)),
                      Contains("dropout") && Contains("[0, 1)"));
    CHECK_THROWS_WITH(nn::TransformerBlock<double>(8, 2, rng, nn::TransformerBlockOptions().dropout(-0.1)),
                      Contains("TransformerBlock") && Contains("[0, 1)"));

    nn::MultiheadAttention<double> mha(8, 2, rng);
    Tape<double> tape;
    CHECK_THROWS_WITH(mha(tape.constant(randn({5, 8}, 1))),
                      Contains("MultiheadAttention") && Contains("[5, 8]") && Contains("[batch, time, 8]"));
    CHECK_THROWS_WITH(mha(tape.constant(randn({2, 5, 6}, 1))), Contains("[2, 5, 6]") && Contains("[batch, time, 8]"));
    const Var<double> x = tape.constant(randn({2, 5, 8}, 2));
    CHECK_THROWS_WITH(mha(x, xt::xarray<bool>(xt::zeros<bool>({std::size_t(4), std::size_t(4)}))),
                      Contains("mask has shape [4, 4]") && Contains("[2, 2, 5, 5]"));
    CHECK_THROWS_WITH(mha(x, xt::xarray<bool>(xt::zeros<bool>({std::size_t(3), std::size_t(5), std::size_t(5)}))),
                      Contains("mask has shape [3, 5, 5]"));
    xt::xarray<bool> blind = causal_mask(5);
    blind(3, 0) = blind(3, 1) = blind(3, 2) = blind(3, 3) = true;  // query 3 sees nothing
    CHECK_THROWS_WITH(mha(x, blind), Contains("hides every key from query position 3") && Contains("NaN"));
    nn::MultiheadAttention<double> causal(8, 2, rng, nn::MultiheadAttentionOptions().causal(true));
    xt::xarray<bool> diag = xt::zeros<bool>({std::size_t(5), std::size_t(5)});
    diag(0, 0) = true;  // with the causal mask, query 0 sees only key 0
    CHECK_THROWS_WITH(causal(x, diag), Contains("query position 0"));

    nn::TransformerBlock<double> block(8, 2, rng);
    CHECK_THROWS_WITH(block(tape.constant(randn({2, 5, 4}, 3))),
                      Contains("TransformerBlock") && Contains("[2, 5, 4]") && Contains("[batch, time, 8]"));

    nn::Embedding<double> emb(4, 3, rng);
    CHECK_THROWS_WITH(emb(xt::xarray<std::int64_t>{0, 4}, tape),
                      Contains("Embedding") && Contains("id 4 at flat position 1") && Contains("[0, 4)"));
    CHECK_THROWS_WITH(emb(xt::xarray<std::int64_t>{-1}, tape), Contains("id -1"));
    CHECK_THROWS_WITH(emb(tape.constant(Tensor<double>{0, 1.5})), Contains("value 1.5") && Contains("[0, 4)"));
    CHECK_THROWS_WITH(emb(tape.constant(Tensor<double>{std::nan("")})), Contains("value nan"));
    CHECK_THROWS_WITH(nn::Embedding<double>(0, 3, rng), Contains("Embedding") && Contains("positive"));

    nn::PositionalEmbedding<double> pos(4, 3, rng);
    CHECK_THROWS_WITH(pos(tape.constant(randn({2, 5, 3}, 4))),
                      Contains("PositionalEmbedding") && Contains("5 positions exceed max_len = 4"));
    CHECK_THROWS_WITH(pos(tape.constant(randn({2, 4, 2}, 4))), Contains("[2, 4, 2]") && Contains("[..., T, 3]"));
    CHECK_THROWS_WITH(pos(tape.constant(randn({3}, 4))), Contains("rank 2 or more"));
}

// --- second order ---

namespace {

// A one-block causal language model: tokens -> embedding + positions -> block -> LayerNorm ->
// Linear head -> logits [B, T, V]. Its input holds the token ids as values (Embedding's Module
// form), so functional_call can run it.
class TinyTransformer : public nn::Module<double> {
public:
    TinyTransformer(std::size_t vocab, std::size_t dim, std::size_t heads, std::size_t max_len, nn::Rng& rng)
        : vocab_(vocab), dim_(dim)
    {
        tok_ = &register_module("tok", std::make_shared<nn::Embedding<double>>(vocab, dim, rng));
        pos_ = &register_module("pos", std::make_shared<nn::PositionalEmbedding<double>>(max_len, dim, rng));
        block_ = &register_module("block", std::make_shared<nn::TransformerBlock<double>>(
                                               dim, heads, rng, nn::TransformerBlockOptions().causal(true).dim_feedforward(2 * dim)));
        norm_ = &register_module("norm", std::make_shared<nn::LayerNorm<double>>(dim));
        head_ = &register_module("head", std::make_shared<nn::Linear<double>>(dim, vocab, rng));
    }
    Var<double> forward(const Var<double>& ids) override
    {
        const std::size_t B = ids.shape()[0], T = ids.shape()[1];
        const Var<double> h = (*block_)((*pos_)((*tok_)(ids)));
        return ad::reshape((*head_)((*norm_)(ad::reshape(h, {B * T, dim_}))), {B, T, vocab_});
    }

private:
    std::size_t vocab_, dim_;
    nn::Module<double>* tok_;
    nn::Module<double>* pos_;
    nn::Module<double>* block_;
    nn::Module<double>* norm_;
    nn::Module<double>* head_;
};

}  // namespace

TEST_CASE("hvp of a tiny transformer's loss matches differences of its gradient", "[nn][transformer][higher]")
{
    const std::size_t V = 5, E = 4;
    nn::Rng rng(23);
    TinyTransformer model(V, E, 2, 4, rng);
    // Every parameter away from its initial zeros and ones, so every second-order term is live.
    std::uint64_t seed = 40;
    for (auto& [n, p] : model.named_parameters()) p->set_value(p->value() + randn(p->value().shape(), seed++, 0.3));
    const Tensor<double> ids{{1, 4, 0}, {3, 3, 2}};
    const xt::xarray<std::int64_t> labels{{4, 0, 2}, {3, 2, 1}};  // the next tokens
    auto loss = [&](const nn::VarMap<double>& w) {
        const Var<double> logits = nn::functional_call(model, w, ids);  // [B, T, V]
        return ad::cross_entropy(logits, labels);
    };
    const nn::TensorMap<double> w = nn::parameter_values(model);
    nn::TensorMap<double> v;
    std::size_t count = 0;
    for (const auto& [n, t] : w) {
        v.emplace(n, randn(t.shape(), seed++));
        count += t.size();
    }
    CHECK(count == 20 + 16 + (48 + 12 + 16 + 4 + 32 + 8 + 32 + 4 + 16) + 8 + 25);
    auto gradient = [&](double step) {
        nn::TensorMap<double> at;
        for (const auto& [n, t] : w) at.emplace(n, t + step * v.at(n));
        return nn::jacobian(loss, at);  // a one-element loss: its gradient
    };
    const double eps = 1e-6;
    const auto plus = gradient(eps), minus = gradient(-eps);
    const auto Hv = nn::hvp(loss, w, v);
    REQUIRE(Hv.size() == w.size());
    double largest = 0;
    for (const auto& [n, h] : Hv) {
        INFO(n);
        const Tensor<double> numeric = (plus.at(n) - minus.at(n)) / (2 * eps);
        REQUIRE(h.shape() == numeric.shape());
        // central differences: error O(eps^2 |third derivative|) + O(rounding / eps) ~ 1e-9
        CHECK(xt::amax(xt::abs(h - numeric))() < 1e-8);
        largest = std::max(largest, double(xt::amax(xt::abs(h))()));
    }
    CHECK(largest > 1e-2);  // not a comparison of zeros
}
