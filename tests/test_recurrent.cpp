// nn::RNN, nn::LSTM and nn::GRU against PyTorch (tests/fixtures/make_recurrent_fixtures.py: the
// state dict, an input, a random initial state, PyTorch's output and final state, and the
// gradients of a scalar loss from torch.autograd), against finite differences (gradcheck through
// the parameters, the input and the initial state), truncated BPTT against one pass, and the
// errors.
//
// Tolerance against PyTorch: |ours - PyTorch| <= 1e-10 max(1, |PyTorch|) per element, in float64.
// Every value is O(1) and comes from at most 2 layers x 5 steps of sums of a few products and
// tanh/sigmoid, each rounded to a unit roundoff of 1.1e-16, in another order (another BLAS); the
// differences expected are ~1e-15. A wrong gate order, bias or formula moves values by ~1e-2, so
// 1e-10 separates the two by far and leaves room for other BLAS builds.
#include "gradcheck_helpers.hpp"

#include "nn/gradcheck_module.hpp"
#include "nn/npz.hpp"
#include "nn/recurrent.hpp"
#include "nn/serialize.hpp"

#include <catch2/catch.hpp>

#include <xtensor/xview.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>

using namespace adtest;
using ad::Tape;
using Catch::Contains;
namespace nn = ad::nn;

namespace {

const std::string fixtures = std::string(AD_SOURCE_DIR) + "/tests/fixtures/recurrent/";

std::map<std::string, Tensor<double>> read_io(const std::string& name)
{
    std::map<std::string, Tensor<double>> m;
    for (auto& [k, v] : nn::load_npz<double>(fixtures + name + "_io.npz")) m[k] = std::move(v);
    return m;
}

// The largest |a - b| / max(1, |b|); a shape mismatch fails outright.
double worst(const Tensor<double>& ours, const Tensor<double>& ref)
{
    if (ours.shape() != ref.shape()) return INFINITY;
    double w = 0;
    for (std::size_t i = 0; i < ref.size(); ++i)
        w = std::max(w, std::abs(ours.data()[i] - ref.data()[i]) / std::max(1.0, std::abs(ref.data()[i])));
    return w;
}

std::shared_ptr<nn::RecurrentBase<double>> make(const std::string& kind, std::size_t layers, bool bias,
                                                std::size_t in = 3, std::size_t hidden = 4, std::uint64_t seed = 1)
{
    nn::Rng rng(seed);
    nn::RecurrentOptions o;
    o.num_layers = layers;
    o.bias = bias;
    if (kind == "rnn") return std::make_shared<nn::RNN<double>>(in, hidden, rng, o);
    if (kind == "lstm") return std::make_shared<nn::LSTM<double>>(in, hidden, rng, o);
    return std::make_shared<nn::GRU<double>>(in, hidden, rng, o);
}

void check_against_pytorch(const std::string& name, nn::RecurrentBase<double>& model, bool lstm)
{
    nn::load(model, fixtures + name + ".npz");
    auto io = read_io(name);
    Tape<double> tape;
    const auto x = tape.variable(io.at("input"));
    const auto h0 = tape.variable(io.at("h0"));
    const auto c0 = lstm ? tape.variable(io.at("c0")) : Var<double>();
    const auto r = model.forward(x, {h0, c0});
    CHECK(worst(r.output.value(), io.at("output")) <= 1e-10);
    CHECK(worst(r.h_n.value(), io.at("h_n")) <= 1e-10);
    Var<double> loss = ad::sum(r.output * tape.constant(io.at("w_output"))) + ad::sum(r.h_n * tape.constant(io.at("w_h")));
    if (lstm) {
        CHECK(worst(r.c_n.value(), io.at("c_n")) <= 1e-10);
        loss = loss + ad::sum(r.c_n * tape.constant(io.at("w_c")));
    }
    model.zero_grad();
    std::vector<Var<double>> wrt{x, h0};
    if (lstm) wrt.push_back(c0);
    const auto g = ad::grad(loss, wrt);
    CHECK(worst(g[0], io.at("grad_input")) <= 1e-10);
    CHECK(worst(g[1], io.at("grad_h0")) <= 1e-10);
    if (lstm) CHECK(worst(g[2], io.at("grad_c0")) <= 1e-10);
    ad::backward(loss);
    std::size_t compared = 0;
    for (auto& [key, p] : model.named_parameters()) {
        INFO(name << ": the gradient of " << key);
        CHECK(worst(p->grad, io.at("grad." + key)) <= 1e-10);
        ++compared;
    }
    // Every parameter PyTorch has, and no other.
    std::size_t in_fixture = 0;
    for (const auto& [key, v] : io) in_fixture += key.rfind("grad.", 0) == 0;
    CHECK(compared == in_fixture);
}

}  // namespace

TEST_CASE("RNN, LSTM and GRU match PyTorch's outputs, final states and gradients", "[nn][recurrent]")
{
    SECTION("RNN (tanh), one layer") { check_against_pytorch("rnn_l1", *make("rnn", 1, true), false); }
    SECTION("RNN (tanh), two layers, no bias") { check_against_pytorch("rnn_l2_nobias", *make("rnn", 2, false), false); }
    SECTION("LSTM, two layers") { check_against_pytorch("lstm_l2", *make("lstm", 2, true), true); }
    SECTION("GRU, two layers") { check_against_pytorch("gru_l2", *make("gru", 2, true), false); }
}

TEST_CASE("recurrent layers have PyTorch's parameter names, shapes and initial interval", "[nn][recurrent]")
{
    auto lstm = make("lstm", 2, true, 3, 5);
    const std::vector<std::pair<std::string, Shape>> want{
        {"weight_ih_l0", {20, 3}}, {"weight_hh_l0", {20, 5}}, {"bias_ih_l0", {20}}, {"bias_hh_l0", {20}},
        {"weight_ih_l1", {20, 5}}, {"weight_hh_l1", {20, 5}}, {"bias_ih_l1", {20}}, {"bias_hh_l1", {20}}};
    const auto got = lstm->named_parameters();
    REQUIRE(got.size() == want.size());
    const double bound = 1 / std::sqrt(5.0);
    for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(got[i].first == want[i].first);
        CHECK(got[i].second->value().shape() == want[i].second);
        CHECK(xt::amax(xt::abs(got[i].second->value()))() <= bound);
    }
    CHECK(make("gru", 1, true, 3, 5)->named_parameters()[0].second->value().shape() == Shape{15, 3});
    CHECK(make("rnn", 3, false, 3, 5)->named_parameters().size() == 6);
    CHECK(make("rnn", 3, false)->named_parameters()[5].first == "weight_hh_l2");
}

TEST_CASE("recurrent layers are gradchecked through parameters, input and initial state", "[nn][recurrent][gradcheck]")
{
    const std::size_t B = 2, T = 4, I = 3, H = 4, L = 2;
    const Tensor<double> x = randn({B, T, I}, 11), h0 = randn({L, B, H}, 12, 0.5), c0 = randn({L, B, H}, 13, 0.5);
    const Tensor<double> w = randn({B, T, H}, 14), wh = randn({L, B, H}, 15), wc = randn({L, B, H}, 16);
    for (const std::string kind : {"rnn", "lstm", "gru"}) {
        INFO(kind);
        auto model = make(kind, L, true);
        const bool lstm = kind == "lstm";
        auto loss = [&](const Var<double>& xv, const Var<double>& hv, const Var<double>& cv) {
            auto& tape = xv.tape();
            const auto r = model->forward(xv, {hv, cv});
            Var<double> l = ad::sum(r.output * tape.constant(w)) + ad::sum(r.h_n * tape.constant(wh));
            if (lstm) l = l + ad::sum(r.c_n * tape.constant(wc));
            return l;
        };
        const auto params = nn::gradcheck_module<double>(*model, [&](nn::Module<double>&, Tape<double>& tape) {
            return loss(tape.constant(x), tape.constant(h0), lstm ? tape.constant(c0) : Var<double>());
        });
        INFO(params.report());
        CHECK(params.ok);
        CHECK(params.warnings.empty());
        std::vector<Tensor<double>> inputs{x, h0};
        if (lstm) inputs.push_back(c0);
        const auto through_state = ad::gradcheck<double>(
            [&](const Vars& v) { return loss(v[0], v[1], lstm ? v[2] : Var<double>()); }, inputs);
        INFO(through_state.report());
        CHECK(through_state.ok);
        CHECK(through_state.warnings.empty());
    }
}

TEST_CASE("truncated BPTT over two chunks gives one pass's values, and on one tape its gradients", "[nn][recurrent]")
{
    const std::size_t B = 2, T = 6, I = 3, L = 2;
    const Tensor<double> x = randn({B, T, I}, 21);
    const Tensor<double> first = xt::view(x, xt::all(), xt::range(0, 3), xt::all());
    const Tensor<double> second = xt::view(x, xt::all(), xt::range(3, 6), xt::all());
    for (const std::string kind : {"rnn", "lstm", "gru"}) {
        INFO(kind);
        auto model = make(kind, L, true);
        const bool lstm = kind == "lstm";
        Tape<double> whole;
        const auto xv = whole.variable(x);
        const auto full = model->forward(xv, {});

        // Chunk by chunk, the state carried as a constant to a fresh tape: the same values.
        Tensor<double> h, c, out1;
        {
            Tape<double> tape;
            const auto r = model->forward(tape.constant(first), {});
            h = r.h_n.value();
            if (lstm) c = r.c_n.value();
            out1 = r.output.value();
        }
        Tape<double> tape;
        const auto r2 = model->forward(tape.constant(second), {tape.constant(h), lstm ? tape.constant(c) : Var<double>()});
        const Tensor<double> joined = xt::concatenate(xt::xtuple(out1, r2.output.value()), 1);
        CHECK(worst(joined, full.output.value()) <= 1e-12);
        CHECK(worst(r2.h_n.value(), full.h_n.value()) <= 1e-12);
        if (lstm) CHECK(worst(r2.c_n.value(), full.c_n.value()) <= 1e-12);

        // The state passed on as the Var itself keeps the graph: the gradient reaches the first
        // chunk as in one pass.
        Tape<double> same;
        const auto a = same.variable(first), b = same.variable(second);
        const auto s1 = model->forward(a, {});
        const auto s2 = model->forward(b, {s1.h_n, s1.c_n});
        const auto g_chunks = ad::grad(ad::sum(s2.h_n), {a, b});
        const auto g_full = ad::grad(ad::sum(full.h_n), {xv});
        CHECK(worst(xt::concatenate(xt::xtuple(g_chunks[0], g_chunks[1]), 1), g_full[0]) <= 1e-12);
        CHECK(xt::amax(xt::abs(g_chunks[0]))() > 0);
    }
}

TEST_CASE("recurrent layers refuse wrong inputs and states with the module and shapes named", "[nn][recurrent][errors]")
{
    nn::Rng rng(3);
    nn::RecurrentOptions two;
    two.num_layers = 2;
    nn::LSTM<double> lstm(3, 4, rng, two);
    nn::GRU<double> gru(3, 4, rng);
    Tape<double> tape;
    const auto x = tape.constant(randn({2, 5, 3}, 1));

    CHECK_THROWS_AS(lstm(tape.constant(randn({5, 3}, 1))), ad::Error);
    CHECK_THROWS_WITH(lstm(tape.constant(randn({5, 3}, 1))),
                      Contains("LSTM: input has shape [5, 3]") && Contains("[batch, seq_len, input_size]") &&
                          Contains("input_size = 3"));
    CHECK_THROWS_WITH(gru(tape.constant(randn({2, 5, 4}, 1))), Contains("GRU: input has shape [2, 5, 4]"));
    CHECK_THROWS_WITH(gru(tape.constant(Tensor<double>(xt::zeros<double>({2, 0, 3})))),
                      Contains("GRU") && Contains("non-empty"));
    CHECK_THROWS_WITH(lstm.forward(x, {tape.constant(randn({1, 2, 4}, 2)), {}}),
                      Contains("LSTM: the initial state h has shape [1, 2, 4]") && Contains("[2, 2, 4]"));
    const auto good_h = tape.constant(randn({2, 2, 4}, 2)), bad_c = tape.constant(randn({2, 3, 4}, 2));
    const std::size_t records = tape.size();
    CHECK_THROWS_WITH(lstm.forward(x, {good_h, bad_c}),
                      Contains("LSTM: the initial state c has shape [2, 3, 4]") && Contains("[2, 2, 4]"));
    CHECK(tape.size() == records);  // checked before anything was recorded
    CHECK_THROWS_WITH(gru.forward(x, {{}, tape.constant(randn({1, 2, 4}, 2))}),
                      Contains("GRU") && Contains("only an LSTM"));
    Tape<double> other;
    CHECK_THROWS_WITH(gru.forward(x, {other.constant(randn({1, 2, 4}, 2)), {}}),
                      Contains("GRU: the initial state h") && Contains("another tape"));
    CHECK_THROWS_WITH(nn::RNN<double>(0, 4, rng), Contains("RNN") && Contains("must be positive"));
    nn::RecurrentOptions none;
    none.num_layers = 0;
    CHECK_THROWS_WITH(nn::LSTM<double>(3, 4, rng, none), Contains("LSTM") && Contains("must be positive"));
    CHECK_THROWS_WITH(lstm.weight_ih(2), Contains("LSTM: layer 2 does not exist"));
}

TEST_CASE("recurrent layers describe themselves in libtorch's words", "[nn][recurrent][summary]")
{
    CHECK(make("lstm", 2, true)->describe() ==
          "LSTM(input_size=3, hidden_size=4, num_layers=2, bias=true, batch_first=true, dropout=0, bidirectional=false)");
    CHECK(make("gru", 1, false, 8, 16)->describe() ==
          "GRU(input_size=8, hidden_size=16, num_layers=1, bias=false, batch_first=true, dropout=0, bidirectional=false)");
    CHECK(make("rnn", 1, true)->describe().rfind("RNN(input_size=3, hidden_size=4,", 0) == 0);
}

TEST_CASE("recurrent layers run in float and agree with double", "[nn][recurrent]")
{
    nn::Rng rng(5);
    nn::LSTM<float> f(3, 4, rng);
    nn::LSTM<double> d(3, 4, rng);
    const auto fp = f.parameters();
    const auto dp = d.parameters();
    for (std::size_t i = 0; i < fp.size(); ++i) fp[i]->set_value(Tensor<float>(xt::cast<float>(dp[i]->value())));
    const Tensor<double> x = randn({2, 5, 3}, 7);
    Tape<float> tf;
    Tape<double> td;
    const Tensor<float> yf = f(tf.constant(Tensor<float>(xt::cast<float>(x)))).value();
    const Tensor<double> yd = d(td.constant(x)).value();
    // float's unit roundoff is 6e-8; five steps of O(1) values stay well inside 1e-5.
    CHECK(worst(Tensor<double>(xt::cast<double>(yf)), yd) <= 1e-5);
}
