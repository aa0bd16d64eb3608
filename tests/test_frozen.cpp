// Frozen parameters (requires_grad_(false)): no gradient flows to them, backward() leaves their
// .grad alone, optimisers and clipping skip them, and grad() with respect to one is refused.
// The reference for the rest of the model is the same model with nothing frozen.
#include "gradcheck_helpers.hpp"

#include "nn/activation.hpp"
#include "nn/clip.hpp"
#include "nn/gradcheck_module.hpp"
#include "nn/linear.hpp"
#include "nn/optim.hpp"
#include "nn/sequential.hpp"

#include <xtensor/xbuilder.hpp>

#include <cmath>
#include <memory>

using namespace adtest;
using ad::Parameter;
using ad::Tape;
using Catch::Matchers::Contains;
namespace nn = ad::nn;

namespace {

// Linear(3, 4) - tanh - Linear(4, 2), the same weights for the same seed.
std::shared_ptr<nn::Sequential<double>> make_model()
{
    nn::Rng rng(17);
    auto m = std::make_shared<nn::Sequential<double>>();
    m->add(std::make_shared<nn::Linear<double>>(3, 4, rng));
    m->add(std::make_shared<nn::Tanh<double>>());
    m->add(std::make_shared<nn::Linear<double>>(4, 2, rng));
    return m;
}

Var<double> loss_of(nn::Module<double>& m, Tape<double>& tape)
{
    const Var<double> out = m(tape.constant(randn({5, 3}, 3)));
    return ad::mse(out, tape.constant(randn({5, 2}, 4)));
}

bool same(const Tensor<double>& a, const Tensor<double>& b)
{
    if (a.shape() != b.shape()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a.flat(i) != b.flat(i)) return false;
    return true;
}

Parameter<double>& param(nn::Module<double>& m, const std::string& name)
{
    for (auto& [n, p] : m.named_parameters())
        if (n == name) return *p;
    FAIL("no parameter " << name);
    return *m.parameters().front();
}

}  // namespace

TEST_CASE("a frozen parameter gets no gradient and the others get the unfrozen ones", "[frozen]")
{
    auto frozen = make_model(), reference = make_model();
    CHECK(param(*frozen, "2.weight").requires_grad());
    param(*frozen, "2.weight").requires_grad_(false);  // in the middle of the path to layer 0
    CHECK_FALSE(param(*frozen, "2.weight").requires_grad());
    frozen->zero_grad();
    reference->zero_grad();
    param(*frozen, "2.weight").grad.fill(7.0);  // must survive backward()

    Tape<double> t1, t2;
    ad::backward(loss_of(*frozen, t1));
    ad::backward(loss_of(*reference, t2));
    CHECK(same(param(*frozen, "2.weight").grad, xt::full_like(param(*frozen, "2.weight").grad, 7.0)));
    for (const char* name : {"0.weight", "0.bias", "2.bias"}) {
        INFO(name);
        CHECK(same(param(*frozen, name).grad, param(*reference, name).grad));
    }

    SECTION("a grad-ready hook is not called for it")
    {
        std::vector<const Parameter<double>*> ready;
        Tape<double> t3;
        ad::backward<double>(loss_of(*frozen, t3), [&](Parameter<double>& p) { ready.push_back(&p); });
        CHECK(ready.size() == 3);
        for (const auto* p : ready) CHECK(p != &param(*frozen, "2.weight"));
    }
}

TEST_CASE("optimisers skip a frozen parameter", "[frozen][optim]")
{
    auto frozen = make_model(), reference = make_model();
    frozen->requires_grad_(true);
    param(*frozen, "0.weight").requires_grad_(false);
    const Tensor<double> before = param(*frozen, "0.weight").value();
    std::unique_ptr<nn::Optimizer<double>> opt_f, opt_r;
    SECTION("SGD with momentum and weight decay")
    {
        opt_f = std::make_unique<nn::SGD<double>>(frozen->named_parameters(), nn::SGDOptions{0.1, 0.9, 0, false, 0.01});
        opt_r = std::make_unique<nn::SGD<double>>(reference->named_parameters(), nn::SGDOptions{0.1, 0.9, 0, false, 0.01});
    }
    SECTION("Adam with weight decay")
    {
        opt_f = std::make_unique<nn::Adam<double>>(frozen->named_parameters(), nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.01});
        opt_r = std::make_unique<nn::Adam<double>>(reference->named_parameters(), nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.01});
    }
    // the reference keeps layer 0 fixed by hand: its gradient zeroed and its weight put back
    Parameter<double>& ref_w = param(*reference, "0.weight");
    for (int step = 0; step < 3; ++step) {
        Tape<double> t1, t2;
        opt_f->zero_grad();
        opt_r->zero_grad();
        ad::backward(loss_of(*frozen, t1));
        ad::backward(loss_of(*reference, t2));
        for (const char* name : {"0.bias", "2.weight", "2.bias"}) CHECK(same(param(*frozen, name).grad, param(*reference, name).grad));
        opt_f->step();
        opt_r->step();
        ref_w.set_value(before);
    }
    CHECK(same(param(*frozen, "0.weight").value(), before));
    for (const char* name : {"0.bias", "2.weight", "2.bias"}) {
        INFO(name);
        CHECK_FALSE(same(param(*frozen, name).value(), param(*make_model(), name).value()));  // trained
        CHECK(same(param(*frozen, name).value(), param(*reference, name).value()));
    }
}

TEST_CASE("gradient clipping skips a frozen parameter", "[frozen][clip]")
{
    Parameter<double> a(Tensor<double>{1.0, 2.0}), b(Tensor<double>{3.0});
    a.grad = Tensor<double>{3.0, 4.0};
    b.grad = Tensor<double>{100.0};
    b.requires_grad_(false);
    const std::vector<Parameter<double>*> both{&a, &b};
    const double total = nn::clip_grad_norm(both, 1.0);
    CHECK(total == Approx(5.0));  // |(3, 4)|, b left out
    CHECK(a.grad(0) == Approx(3.0 / (5.0 + 1e-6)));
    CHECK(b.grad(0) == 100.0);
    nn::clip_grad_value(both, 0.5);
    CHECK(b.grad(0) == 100.0);
    CHECK(a.grad(0) == 0.5);
}

TEST_CASE("grad() with respect to a frozen parameter is refused, or zeros with allow_unused", "[frozen][errors]")
{
    Parameter<double> w(Tensor<double>{1.0, 2.0}), f(Tensor<double>{3.0, 4.0});
    f.requires_grad_(false);
    Tape<double> tape;
    const Var<double> y = ad::sum(tape.param(w) * tape.param(f));
    CHECK_FALSE(tape.param(f).requires_grad());
    const std::vector<Parameter<double>*> both{&w, &f};
    CHECK_THROWS_WITH(ad::grad(y, both, ad::create_graph),
                      Contains("grad") && Contains("parameter 1") && Contains("frozen") && Contains("[2]"));
    const auto g = ad::grad(y, both, ad::create_graph, ad::allow_unused);
    CHECK_THAT(g[0].value(), Equals({3.0, 4.0}));
    CHECK_THAT(g[1].value(), Equals({0.0, 0.0}));
}

TEST_CASE("freezing a parameter between the forward pass and backward() is refused", "[frozen][errors]")
{
    Parameter<double> w(Tensor<double>{1.0, 2.0});
    Tape<double> tape;
    const Var<double> y = ad::sum(tape.param(w) * tape.param(w));
    w.requires_grad_(false);
    CHECK_THROWS_WITH(ad::backward(y), Contains("backward") && Contains("frozen") && Contains("[2]"));
    CHECK_FALSE(w.has_grad());
}

TEST_CASE("gradcheck_module checks the trainable parameters and leaves the frozen ones out", "[frozen][gradcheck]")
{
    auto model = make_model();
    param(*model, "0.weight").requires_grad_(false);
    const auto r = nn::gradcheck_module<double>(*model, [](nn::Module<double>& m, Tape<double>& t) { return loss_of(m, t); });
    CHECK(r.ok);
    model->requires_grad_(false);
    CHECK_THROWS_WITH(nn::gradcheck_module<double>(*model, [](nn::Module<double>& m, Tape<double>& t) { return loss_of(m, t); }),
                      Contains("gradcheck_module") && Contains("no trainable parameters"));
}

TEST_CASE("data in a frozen parameter is read in place and a change to it is refused", "[frozen][errors]")
{
    // y = sum(w * x): dy/dw = x, whether x is copied onto the tape or read from a frozen parameter.
    Parameter<double> w(Tensor<double>{1.0, 2.0}), x(Tensor<double>{3.0, 4.0});
    x.requires_grad_(false);
    Tape<double> tape;
    const Var<double> xv = tape.param(x);
    CHECK(&xv.value() == &x.value());  // no copy
    ad::backward(ad::sum(tape.param(w) * xv));
    CHECK_THAT(w.grad, Equals({3.0, 4.0}));
    CHECK_FALSE(x.has_grad());

    w.zero_grad();
    tape.clear();
    const Var<double> y = ad::sum(tape.param(w) * tape.param(x));
    x.mutable_value()(0) = 5.0;  // the batch changed after the forward pass read it
    CHECK_THROWS_WITH(ad::backward(y), Contains("backward") && Contains("modified"));
    CHECK_FALSE(w.has_grad());
}
