// Optimisers and learning-rate schedules: PyTorch's trajectories replayed (fixtures from
// tests/fixtures/make_optim_fixtures.py), the weight-decay rules worked out by hand, and errors.
#include "nn/linear.hpp"
#include "nn/optim.hpp"
#include "nn/schedule.hpp"

#include "autodiff/backward.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xbuilder.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>

using ad::Parameter;
using ad::Tensor;
using Catch::Contains;
namespace nn = ad::nn;

namespace {

// --- the fixture file ---

struct Fixture {
    std::string name, optimizer, decay;
    std::map<std::string, double> options;
    std::vector<std::string> schedule;
    int steps = 0;
    std::vector<std::pair<std::string, ad::Shape>> shapes;
    std::map<std::string, std::vector<double>> initial;
    std::map<int, double> lr;
    std::map<int, std::map<std::string, std::vector<double>>> grad, expect;
};

struct LrFixture {
    std::string kind;
    double base = 0, b = 0;
    std::uint64_t a = 0;
    std::vector<double> lrs;
};

std::vector<double> read_values(std::istringstream& in)
{
    std::vector<double> v;
    std::string tok;
    while (in >> tok) v.push_back(std::strtod(tok.c_str(), nullptr));  // strtod: exact for repr() output
    return v;
}

void read_fixtures(std::vector<Fixture>& cases, std::vector<LrFixture>& schedules)
{
    const std::string path = std::string(AD_SOURCE_DIR) + "/tests/fixtures/optim_fixtures.txt";
    std::ifstream file(path);
    REQUIRE(file.good());
    std::string line;
    Fixture* c = nullptr;
    while (std::getline(file, line)) {
        std::istringstream in(line);
        std::string kind;
        in >> kind;
        if (kind.empty() || kind[0] == '#') continue;
        if (kind == "case") {
            cases.emplace_back();
            c = &cases.back();
            in >> c->name;
        } else if (kind == "optimizer") {
            in >> c->optimizer;
        } else if (kind == "option") {
            std::string key, value;
            in >> key >> value;
            c->options[key] = std::strtod(value.c_str(), nullptr);
        } else if (kind == "decay") {
            in >> c->decay;
        } else if (kind == "schedule") {
            std::string s;
            while (in >> s) c->schedule.push_back(s);
        } else if (kind == "steps") {
            in >> c->steps;
        } else if (kind == "param") {
            std::string name;
            std::size_t rank;
            in >> name >> rank;
            ad::Shape shape(rank);
            for (auto& d : shape) in >> d;
            c->shapes.emplace_back(name, shape);
            c->initial[name] = read_values(in);
        } else if (kind == "lr") {
            int k;
            in >> k >> c->lr[k];
        } else if (kind == "grad" || kind == "expect") {
            int k;
            std::string name;
            in >> k >> name;
            (kind == "grad" ? c->grad : c->expect)[k][name] = read_values(in);
        } else if (kind == "end") {
            c = nullptr;
        } else if (kind == "lrs") {
            LrFixture s;
            std::size_t epochs;
            in >> s.kind >> s.base >> s.a >> s.b >> epochs;
            s.lrs = read_values(in);
            REQUIRE(s.lrs.size() == epochs);
            schedules.push_back(s);
        } else {
            FAIL("unknown fixture line: " << line);
        }
    }
    REQUIRE(!cases.empty());
    REQUIRE(!schedules.empty());
}

template <class T>
Tensor<T> tensor_of(const ad::Shape& shape, const std::vector<double>& values)
{
    Tensor<T> t = Tensor<T>::from_shape(shape);
    REQUIRE(t.size() == values.size());
    std::size_t k = 0;
    for (T& x : t) x = T(values[k++]);
    return t;
}

double option(const Fixture& c, const std::string& key, double fallback)
{
    const auto it = c.options.find(key);
    return it == c.options.end() ? fallback : it->second;
}

template <class T>
std::unique_ptr<nn::Optimizer<T>> make_optimizer(const Fixture& c, const nn::NamedParameters<T>& params)
{
    const nn::DecaySelector<T> decay = c.decay == "all" ? nn::decay_all<T> : nn::is_weight_matrix<T>;
    if (c.optimizer == "SGD") {
        nn::SGDOptions o;
        o.lr = option(c, "lr", o.lr);
        o.momentum = option(c, "momentum", 0);
        o.dampening = option(c, "dampening", 0);
        o.nesterov = option(c, "nesterov", 0) != 0;
        o.weight_decay = option(c, "weight_decay", 0);
        return std::make_unique<nn::SGD<T>>(params, o, decay);
    }
    nn::AdamOptions o;
    o.lr = option(c, "lr", o.lr);
    o.beta1 = option(c, "beta1", o.beta1);
    o.beta2 = option(c, "beta2", o.beta2);
    o.eps = option(c, "eps", o.eps);
    o.weight_decay = option(c, "weight_decay", c.optimizer == "AdamW" ? 1e-2 : 0);
    o.amsgrad = option(c, "amsgrad", 0) != 0;
    if (c.optimizer == "Adam") return std::make_unique<nn::Adam<T>>(params, o, decay);
    REQUIRE(c.optimizer == "AdamW");
    nn::AdamWOptions w;
    static_cast<nn::AdamOptions&>(w) = o;
    return std::make_unique<nn::AdamW<T>>(params, w, decay);
}

// Runs one fixture in type T; every parameter after every step must be within
// tol * max(1, |expected|) of PyTorch's.
template <class T>
void replay(const Fixture& c, double tol)
{
    std::vector<std::unique_ptr<Parameter<T>>> storage;
    nn::NamedParameters<T> params;
    for (const auto& [name, shape] : c.shapes) {
        storage.push_back(std::make_unique<Parameter<T>>(tensor_of<T>(shape, c.initial.at(name))));
        params.emplace_back(name, storage.back().get());
    }
    auto opt = make_optimizer<T>(c, params);
    std::unique_ptr<nn::LRScheduler<T>> sched;
    if (c.schedule[0] == "step")
        sched = std::make_unique<nn::StepLR<T>>(*opt, std::stoull(c.schedule[1]), std::stod(c.schedule[2]));
    else if (c.schedule[0] == "cosine")
        sched = std::make_unique<nn::CosineLR<T>>(*opt, std::stoull(c.schedule[1]), std::stod(c.schedule[2]));

    double worst = 0;
    for (int k = 1; k <= c.steps; ++k) {
        CHECK(opt->lr() == Approx(c.lr.at(k)).epsilon(1e-12).margin(0));
        for (std::size_t i = 0; i < params.size(); ++i)
            params[i].second->grad = tensor_of<T>(c.shapes[i].second, c.grad.at(k).at(params[i].first));
        opt->step();
        if (sched) sched->step();
        for (const auto& [name, p] : params) {
            const auto& want = c.expect.at(k).at(name);
            std::size_t e = 0;
            for (const T& got : p->value()) {
                const double err = std::abs(double(got) - want[e]) / std::max(1.0, std::abs(want[e]));
                worst = std::max(worst, err);
                if (err > tol)
                    FAIL_CHECK(c.name << ": step " << k << ", " << name << "[" << e << "] = " << double(got)
                                      << ", PyTorch " << want[e]);
                ++e;
            }
        }
    }
    INFO(c.name << ": largest relative difference from PyTorch " << worst);
    CHECK(worst <= tol);
}

bool all_close(const Tensor<double>& a, const Tensor<double>& b, double rel)
{
    if (a.shape() != b.shape()) return false;
    for (std::size_t k = 0; k < a.size(); ++k)
        if (std::abs(a.flat(k) - b.flat(k)) > rel * std::abs(b.flat(k))) return false;
    return true;
}

template <class T>
struct Model2 {  // two parameters with hand-picked values and zero gradients
    Parameter<T> w{Tensor<T>{{1.0, -2.0}, {0.5, 4.0}}};
    Parameter<T> b{Tensor<T>{3.0, -1.0}};
    Model2()
    {
        w.zero_grad(ad::fill_zeros);
        b.zero_grad(ad::fill_zeros);
    }
    nn::NamedParameters<T> named() { return {{"layer.weight", &w}, {"layer.bias", &b}}; }
};

}  // namespace

TEST_CASE("optimisers reproduce PyTorch's parameter trajectories to 1e-12 in double", "[optim]")
{
    std::vector<Fixture> cases;
    std::vector<LrFixture> schedules;
    read_fixtures(cases, schedules);
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { replay<double>(c, 1e-12); }
    }
}

TEST_CASE("optimisers in float follow the same trajectories to float rounding", "[optim]")
{
    std::vector<Fixture> cases;
    std::vector<LrFixture> schedules;
    read_fixtures(cases, schedules);
    // Float rounds at 6e-8 relative; some tens of operations per element over six steps stay
    // well inside 1e-5.
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) { replay<float>(c, 1e-5); }
    }
}

TEST_CASE("learning-rate schedules match PyTorch's StepLR and CosineAnnealingLR", "[optim][schedule]")
{
    std::vector<Fixture> cases;
    std::vector<LrFixture> schedules;
    read_fixtures(cases, schedules);
    for (const auto& s : schedules) {
        DYNAMIC_SECTION(s.kind << " base " << s.base << " " << s.a << " " << s.b)
        {
            Parameter<double> p(Tensor<double>{0.0});
            nn::SGD<double> opt({{"p", &p}}, [&] { nn::SGDOptions o; o.lr = s.base; return o; }());
            std::unique_ptr<nn::LRScheduler<double>> sched;
            if (s.kind == "step")
                sched = std::make_unique<nn::StepLR<double>>(opt, s.a, s.b);
            else
                sched = std::make_unique<nn::CosineLR<double>>(opt, s.a, s.b);
            for (std::size_t e = 0; e < s.lrs.size(); ++e) {
                INFO("epoch " << e);
                CHECK(opt.lr() == Approx(s.lrs[e]).epsilon(1e-12).margin(1e-15));
                CHECK(sched->lr_at(e) == Approx(s.lrs[e]).epsilon(1e-12).margin(1e-15));
                sched->step();
            }
        }
    }
}

TEST_CASE("schedules: closed forms at their landmarks, set_epoch and bad arguments", "[optim][schedule]")
{
    CHECK(nn::step_lr(0.1, 0, 3, 0.5) == 0.1);
    CHECK(nn::step_lr(0.1, 2, 3, 0.5) == 0.1);
    CHECK(nn::step_lr(0.1, 3, 3, 0.5) == Approx(0.05).epsilon(1e-15));
    CHECK(nn::step_lr(0.1, 7, 3, 0.5) == Approx(0.025).epsilon(1e-15));
    CHECK(nn::cosine_lr(0.1, 0, 10, 0.001) == Approx(0.1).epsilon(1e-15));
    CHECK(nn::cosine_lr(0.1, 5, 10, 0.001) == Approx(0.0505).epsilon(1e-14));  // half way: the mean
    CHECK(nn::cosine_lr(0.1, 10, 10, 0.001) == Approx(0.001).epsilon(1e-14));
    CHECK(nn::cosine_lr(0.1, 20, 10, 0.001) == Approx(0.1).epsilon(1e-14));  // a full period later

    Parameter<double> p(Tensor<double>{1.0});
    nn::SGD<double> opt({{"p", &p}}, nn::SGDOptions{});
    nn::CosineLR<double> cosine(opt, 10, 0.0);
    cosine.set_epoch(5);
    CHECK(cosine.epoch() == 5);
    CHECK(opt.lr() == Approx(0.005).epsilon(1e-14));

    CHECK_THROWS_WITH(nn::StepLR<double>(opt, 0, 0.5), Contains("step_size"));
    CHECK_THROWS_WITH(nn::StepLR<double>(opt, 2, -0.5), Contains("gamma"));
    CHECK_THROWS_WITH(nn::StepLR<double>(opt, 2, std::nan("")), Contains("gamma"));
    CHECK_THROWS_WITH(nn::CosineLR<double>(opt, 0, 0.0), Contains("t_max"));
    CHECK_THROWS_WITH(nn::CosineLR<double>(opt, 5, -1.0), Contains("eta_min"));
}

TEST_CASE("warm-up then cosine: the closed form at its landmarks, the scheduler and bad arguments", "[optim][schedule]")
{
    // base 0.1, 10 warm-up steps of 110: a linear ramp 0.01, 0.02, ..., 0.1, then half a cosine
    // period over the remaining 100 steps, then eta_min for good.
    CHECK(nn::warmup_cosine_lr(0.1, 0, 10, 110, 0) == Approx(0.01).epsilon(1e-15));
    CHECK(nn::warmup_cosine_lr(0.1, 4, 10, 110, 0) == Approx(0.05).epsilon(1e-15));
    CHECK(nn::warmup_cosine_lr(0.1, 9, 10, 110, 0) == Approx(0.1).epsilon(1e-15));
    CHECK(nn::warmup_cosine_lr(0.1, 10, 10, 110, 0) == Approx(0.1).epsilon(1e-15));
    CHECK(nn::warmup_cosine_lr(0.1, 35, 10, 110, 0) == Approx(0.05 * (1 + std::sqrt(0.5))).epsilon(1e-14));
    CHECK(nn::warmup_cosine_lr(0.1, 60, 10, 110, 0.001) == Approx(0.0505).epsilon(1e-14));  // half way: the mean
    CHECK(nn::warmup_cosine_lr(0.1, 110, 10, 110, 0.001) == Approx(0.001).epsilon(1e-14));
    CHECK(nn::warmup_cosine_lr(0.1, 500, 10, 110, 0.001) == 0.001);  // stays at the floor, no second period
    CHECK(nn::warmup_cosine_lr(0.1, 0, 0, 10, 0) == Approx(0.1).epsilon(1e-15));  // no warm-up: the cosine

    Parameter<double> p(Tensor<double>{1.0});
    nn::SGD<double> opt({{"p", &p}}, [] { nn::SGDOptions o; o.lr = 0.1; return o; }());
    nn::WarmupCosineLR<double> sched(opt, 10, 110);
    CHECK(opt.lr() == Approx(0.01).epsilon(1e-15));  // the first step's rate, set when made
    for (int i = 0; i < 60; ++i) sched.step();
    CHECK(opt.lr() == Approx(0.05).epsilon(1e-14));
    CHECK(sched.base_lr() == 0.1);

    CHECK_THROWS_WITH(nn::warmup_cosine_lr(0.1, 0, 10, 10, 0), Contains("warmup_cosine_lr") && Contains("shorter"));
    CHECK_THROWS_WITH(nn::WarmupCosineLR<double>(opt, 20, 5), Contains("WarmupCosineLR") && Contains("20 steps"));
    CHECK_THROWS_WITH(nn::WarmupCosineLR<double>(opt, 2, 5, -1.0), Contains("eta_min"));
}

TEST_CASE("weight decay skips biases by default (seed 001) and follows a selector", "[optim]")
{
    using P = Parameter<double>;
    P matrix(Tensor<double>{{1.0, 2.0}});
    P vector(Tensor<double>{1.0, 2.0});
    P bias_matrix(Tensor<double>{{1.0, 2.0}});
    CHECK(nn::is_weight_matrix<double>("0.weight", matrix));
    CHECK(nn::is_weight_matrix<double>("w", matrix));
    CHECK_FALSE(nn::is_weight_matrix<double>("0.bias", vector));
    CHECK_FALSE(nn::is_weight_matrix<double>("bias", vector));
    CHECK_FALSE(nn::is_weight_matrix<double>("blocks.3.norm.weight", vector));  // rank 1
    CHECK_FALSE(nn::is_weight_matrix<double>("head.bias", bias_matrix));       // named bias
    CHECK(nn::is_weight_matrix<double>("unbias", matrix));                     // only the last component counts
    CHECK(nn::decay_all<double>("0.bias", vector));

    // With zero gradients, plain SGD with L2 decay wd does p <- p - lr wd p on decayed
    // parameters and nothing to the rest.
    const double lr = 0.1, wd = 0.5;
    nn::SGDOptions o;
    o.lr = lr;
    o.weight_decay = wd;
    SECTION("default: the weight decays, the bias does not")
    {
        Model2<double> m;
        const Tensor<double> w0 = m.w.value(), b0 = m.b.value();
        nn::SGD<double> opt(m.named(), o);
        CHECK(opt.decays(0));
        CHECK_FALSE(opt.decays(1));
        opt.step();
        CHECK(all_close(m.w.value(), w0 * (1 - lr * wd), 1e-15));
        CHECK((m.b.value() == b0));
    }
    SECTION("default: a convolution kernel [out, in, kh, kw] decays, its bias does not")
    {
        Parameter<double> kernel(Tensor<double>(xt::arange<double>(1.0, 17.0).reshape({2, 2, 2, 2})));
        Parameter<double> bias(Tensor<double>{1.0, 2.0});
        kernel.grad = xt::zeros<double>({2, 2, 2, 2});
        bias.grad = xt::zeros<double>({2});
        CHECK(nn::is_weight_matrix<double>("conv.weight", kernel));
        CHECK_FALSE(nn::is_weight_matrix<double>("conv.bias", bias));
        const Tensor<double> k0 = kernel.value();
        nn::SGD<double> opt(nn::NamedParameters<double>{{"conv.weight", &kernel}, {"conv.bias", &bias}}, o);
        opt.step();
        CHECK(all_close(kernel.value(), k0 * (1 - lr * wd), 1e-15));
        CHECK((bias.value() == Tensor<double>{1.0, 2.0}));
    }
    SECTION("a selector on the name picks the bias instead")
    {
        Model2<double> m;
        const Tensor<double> w0 = m.w.value(), b0 = m.b.value();
        nn::SGD<double> opt(m.named(), o, [](const std::string& name, const Parameter<double>&) {
            return name == "layer.bias";
        });
        opt.step();
        CHECK((m.w.value() == w0));
        CHECK(all_close(m.b.value(), b0 * (1 - lr * wd), 1e-15));
    }
    SECTION("from a Module: Linear's weight decays, its bias does not")
    {
        nn::Linear<double> layer(Tensor<double>{{1.0, 2.0, 3.0}, {-1.0, 0.5, 2.0}}, Tensor<double>{1.0, -1.0});
        nn::SGD<double> opt(layer, o);
        REQUIRE(opt.parameters().size() == 2);
        CHECK(opt.parameters()[0].first == "weight");
        CHECK(opt.decays(0));
        CHECK_FALSE(opt.decays(1));
    }
}

TEST_CASE("AdamW decays the weights themselves, Adam's L2 term goes through the moments", "[optim]")
{
    // Zero gradients, one step. AdamW: m = v = 0, so the update is 0 / (0 + eps) = 0 and only
    // the decay p <- (1 - lr wd) p acts. Adam with L2: g = wd p, m_hat = g, sqrt(v_hat) = |g|,
    // so p <- p - lr g / (|g| + eps), a step of about lr against the sign of p, whatever wd is.
    const double lr = 0.01, wd = 0.1, eps = 1e-8;
    Model2<double> a, b;
    const Tensor<double> w0 = a.w.value(), b0 = a.b.value();
    nn::AdamWOptions wo;
    wo.lr = lr;
    wo.weight_decay = wd;
    wo.eps = eps;
    nn::AdamW<double> adamw(a.named(), wo);
    adamw.step();
    CHECK((a.w.value() == Tensor<double>(w0 * (1 - lr * wd))));
    CHECK((a.b.value() == b0));

    nn::AdamOptions ao;
    ao.lr = lr;
    ao.weight_decay = wd;
    ao.eps = eps;
    nn::Adam<double> adam(b.named(), ao);
    adam.step();
    for (std::size_t k = 0; k < w0.size(); ++k) {
        const double g = wd * w0.flat(k);
        // m / (1 - beta1) and sqrt(v) / sqrt(1 - beta2) against g and |g|: ~11 ulps of a step of lr,
        // 100 times smaller than w, and the last subtraction: 3e-16 apart at most
        CHECK(b.w.value().flat(k) == Approx(w0.flat(k) - lr * g / (std::abs(g) + eps)).epsilon(1e-15));
    }
    CHECK((b.b.value() == b0));
}

TEST_CASE("step() marks each parameter modified, so a tape recorded before it is refused", "[optim]")
{
    Parameter<double> p(Tensor<double>{1.0, 2.0});
    ad::Tape<double> tape;
    auto y = ad::sum(ad::square(tape.param(p)));
    nn::SGD<double> opt({{"p", &p}}, nn::SGDOptions{});
    p.zero_grad(ad::fill_zeros);  // a parameter without a gradient would be skipped
    const auto before = p.version();
    opt.step();
    CHECK(p.version() == before + 1);
    CHECK(opt.step_count() == 1);
    CHECK_THROWS_AS(ad::backward(y), ad::Error);
}

TEST_CASE("momentum and Adam state are named after their parameters", "[optim]")
{
    Model2<double> m;
    nn::SGDOptions so;
    so.momentum = 0.9;
    nn::SGD<double> sgd(m.named(), so);
    auto s = sgd.named_state();
    REQUIRE(s.size() == 2);
    CHECK(s[0].first == "momentum_buffer.layer.weight");
    CHECK(nn::SGD<double>(m.named(), nn::SGDOptions{}).named_state().empty());  // no momentum, no state

    nn::AdamOptions ao;
    ao.amsgrad = true;
    nn::Adam<double> adam(m.named(), ao);
    std::vector<std::string> names;
    for (auto& e : adam.named_state()) names.push_back(e.first);
    CHECK(names == std::vector<std::string>{"exp_avg.layer.weight", "exp_avg.layer.bias", "exp_avg_sq.layer.weight",
                                            "exp_avg_sq.layer.bias", "max_exp_avg_sq.layer.weight",
                                            "max_exp_avg_sq.layer.bias"});
}

TEST_CASE("optimisers reject bad learning rates, hyperparameters, parameters and gradients", "[optim][errors]")
{
    Model2<double> m;
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    for (double bad : {nan, inf, -inf, -1e-3}) {
        INFO("lr " << bad);
        nn::SGDOptions so;
        so.lr = bad;
        CHECK_THROWS_WITH(nn::SGD<double>(m.named(), so), Contains("SGD") && Contains("learning rate"));
        nn::AdamOptions ao;
        ao.lr = bad;
        CHECK_THROWS_WITH(nn::Adam<double>(m.named(), ao), Contains("Adam") && Contains("learning rate"));
        nn::AdamW<double> w(m.named());
        CHECK_THROWS_WITH(w.set_lr(bad), Contains("AdamW") && Contains("learning rate"));
        CHECK(w.lr() == 1e-3);  // unchanged
    }
    nn::SGDOptions nesterov;
    nesterov.nesterov = true;
    CHECK_THROWS_WITH(nn::SGD<double>(m.named(), nesterov), Contains("Nesterov"));
    nn::SGDOptions neg_momentum;
    neg_momentum.momentum = -0.5;
    CHECK_THROWS_WITH(nn::SGD<double>(m.named(), neg_momentum), Contains("momentum"));
    nn::AdamOptions beta;
    beta.beta2 = 1.0;
    CHECK_THROWS_WITH(nn::Adam<double>(m.named(), beta), Contains("beta2"));
    nn::AdamOptions decay;
    decay.weight_decay = nan;
    CHECK_THROWS_WITH(nn::Adam<double>(m.named(), decay), Contains("weight_decay"));

    CHECK_THROWS_WITH(nn::SGD<double>({{"a", &m.w}, {"b", &m.w}}, nn::SGDOptions{}), Contains("listed twice"));
    CHECK_THROWS_WITH(nn::SGD<double>({{"a", &m.w}, {"a", &m.b}}, nn::SGDOptions{}), Contains("two parameters"));
    CHECK_THROWS_WITH(nn::SGD<double>({{"a", nullptr}}, nn::SGDOptions{}), Contains("null"));

    SECTION("a gradient of the wrong shape stops the step before any parameter changes")
    {
        nn::SGD<double> opt(m.named(), nn::SGDOptions{});
        m.w.grad = Tensor<double>{1.0, 1.0, 1.0, 1.0};  // the right size, wrong shape
        m.b.grad = Tensor<double>{1.0, 1.0};
        const Tensor<double> w0 = m.w.value(), b0 = m.b.value();
        CHECK_THROWS_WITH(opt.step(), Contains("layer.weight") && Contains("[4]") && Contains("[2, 2]"));
        CHECK((m.w.value() == w0));
        CHECK((m.b.value() == b0));
        CHECK(opt.step_count() == 0);
    }
}

TEST_CASE("zero_grad clears every gradient the optimiser holds", "[optim]")
{
    Model2<float> m;
    m.w.grad.fill(3.f);
    m.b.grad.fill(-1.f);
    nn::Adam<float> opt(m.named(), nn::AdamOptions{});
    opt.zero_grad();
    CHECK_FALSE(m.w.has_grad());
    CHECK_FALSE(m.b.has_grad());
    opt.zero_grad(ad::fill_zeros);
    CHECK((m.w.grad == Tensor<float>(xt::zeros<float>({2, 2}))));
    CHECK((m.b.grad == Tensor<float>(xt::zeros<float>({2}))));
}

TEST_CASE("step() skips a parameter without a gradient, and each parameter counts its own updates", "[optim]")
{
    // Adam's first update of a parameter is lr g / (|g| + eps), since m_hat = g and v_hat = g^2,
    // whichever step of the optimiser it comes in (its t is 1), as PyTorch counts 'step' per
    // parameter. With a t of 2 the bias corrections would not cancel. Tolerance: a few ulps of a
    // step 10 times smaller than the values.
    const double lr = 0.1, wd = 0.5, eps = 1e-8;
    auto first_update = [&](double p, double grad, double decay) {
        const double g = grad + decay * p;  // Adam's coupled L2 term
        return p - lr * g / (std::abs(g) + eps);
    };
    Model2<double> m;
    const Tensor<double> w0 = m.w.value(), b0 = m.b.value();
    nn::AdamOptions o;
    o.lr = lr;
    o.weight_decay = wd;  // on the weight matrix only (the default selector); skipped with the rest without a gradient
    o.eps = eps;
    nn::Adam<double> opt(m.named(), o);
    m.w.zero_grad();  // only b has a gradient
    m.b.grad = Tensor<double>{2.0, -4.0};
    opt.step();
    CHECK(opt.step_count() == 1);
    CHECK((m.w.value() == w0));
    const Tensor<double> b1 = m.b.value();
    CHECK(b1(0) == Approx(first_update(b0(0), 2.0, 0)).epsilon(1e-15));
    CHECK(b1(1) == Approx(first_update(b0(1), -4.0, 0)).epsilon(1e-15));

    m.w.grad = xt::full_like(w0, 0.25);
    m.b.zero_grad();
    opt.step();  // w's first update, at the optimiser's second step
    CHECK((m.b.value() == b1));
    for (std::size_t k = 0; k < 4; ++k)
        CHECK(m.w.value().flat(k) == Approx(first_update(w0.flat(k), 0.25, wd)).epsilon(1e-15));
}

TEST_CASE("a parameter resized after the optimiser was built is refused by name, both shapes given", "[optim][errors]")
{
    // Without the check, SGD's momentum and Adam's moments are indexed by the new value's size:
    // a grown parameter runs past its state (a heap overflow), a shrunk one is stepped with
    // another element's state.
    Model2<double> m;
    const auto grow = GENERATE(true, false);
    const Tensor<double> resized = xt::ones<double>({grow ? std::size_t(3) : std::size_t(1), grow ? std::size_t(4) : std::size_t(1)});
    const std::string new_shape = grow ? "[3, 4]" : "[1, 1]";
    INFO((grow ? "grown" : "shrunk"));

    auto resize_and_step = [&](nn::Optimizer<double>& opt, const char* state) {
        m.w.grad.fill(1.0);
        m.b.grad.fill(1.0);
        opt.step();  // state now holds values
        m.w.set_value(resized);
        m.w.grad = resized;  // a gradient that matches the new value: only the state is stale
        const Tensor<double> b0 = m.b.value();
        CHECK_THROWS_WITH(opt.step(), Contains(std::string(opt.name()) + "::step") && Contains("parameter 0") &&
                                          Contains("'layer.weight'") && Contains(new_shape) &&
                                          Contains("[2, 2]") && Contains(state));
        CHECK((m.w.value() == resized));  // nothing was stepped
        CHECK((m.b.value() == b0));
        CHECK(opt.step_count() == 1);
    };
    SECTION("SGD with momentum")
    {
        nn::SGDOptions o;
        o.momentum = 0.9;
        nn::SGD<double> opt(m.named(), o);
        resize_and_step(opt, "momentum_buffer");
    }
    SECTION("Adam")
    {
        nn::Adam<double> opt(m.named(), nn::AdamOptions{});
        resize_and_step(opt, "exp_avg");
    }
    SECTION("AdamW with AMSGrad")
    {
        nn::AdamWOptions o;
        o.amsgrad = true;
        nn::AdamW<double> opt(m.named(), o);
        resize_and_step(opt, "exp_avg");
    }
    SECTION("SGD without momentum has no state: the new shape is simply stepped")
    {
        nn::SGD<double> opt(m.named(), nn::SGDOptions{});
        m.w.set_value(resized);
        m.w.grad = resized;
        opt.step();
        CHECK(m.w.value()(0, 0) == Approx(1.0 - 1e-2));
    }
}
