// The functional API over several tensors (argnums), its forms that take any xtensor expression,
// and the same over a module's named weights: functional_call, nn::jacobian/hessian/hvp, and
// MAML's differentiation through an inner gradient step. Expected values are closed forms or
// central differences of plain double code.
#include "gradcheck_helpers.hpp"

#include "autodiff/checkpoint.hpp"

#include "nn/activation.hpp"
#include "nn/functional.hpp"
#include "nn/linear.hpp"
#include "nn/sequential.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xtensor.hpp>

#include <cmath>

using namespace adtest;
using ad::Tape;
using Catch::Matchers::Contains;
namespace nn = ad::nn;

namespace {

using TL = std::vector<Tensor<double>>;

void require_close(const Tensor<double>& a, const Tensor<double>& b, double tol = 1e-12)
{
    REQUIRE(a.shape() == b.shape());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("element " << i << ": " << a.flat(i) << " vs " << b.flat(i));
        REQUIRE(std::abs(a.flat(i) - b.flat(i)) <= tol * (1 + std::abs(b.flat(i))));
    }
}

Tensor<double> diag(const Tensor<double>& d)
{
    Tensor<double> m = xt::zeros<double>({d.size(), d.size()});
    for (std::size_t i = 0; i < d.size(); ++i) m(i, i) = d(i);
    return m;
}

}  // namespace

TEST_CASE("jacobian over several inputs: one block per output and chosen input", "[functional]")
{
    const Tensor<double> x = randn({3}, 1), y = randn({3}, 2);
    // outputs x sin y (shape [3]) and sum(x^2 y) (shape [])
    auto f = [](const Vars& v) { return Vars{v[0] * ad::sin(v[1]), ad::sum(v[0] * v[0] * v[1])}; };
    const auto J = ad::jacobian<double>(f, {x, y});
    REQUIRE(J.size() == 2);
    REQUIRE(J[0].size() == 2);
    require_close(J[0][0], diag(xt::sin(y)));
    require_close(J[0][1], diag(x * xt::cos(y)));
    require_close(J[1][0], 2.0 * x * y);
    require_close(J[1][1], x * x);

    SECTION("argnums picks inputs, in its order; the others are constants")
    {
        const auto Jy = ad::jacobian<double>(f, {x, y}, {1});
        REQUIRE(Jy[0].size() == 1);
        require_close(Jy[0][0], diag(x * xt::cos(y)));
        require_close(Jy[1][0], x * x);
        const auto Jyx = ad::jacobian<double>(f, {x, y}, {1, 0});
        require_close(Jyx[0][0], diag(x * xt::cos(y)));
        require_close(Jyx[0][1], diag(xt::sin(y)));
    }
    SECTION("a matrix input: the block's shape is out.shape ++ in.shape")
    {
        const Tensor<double> A = randn({2, 3}, 3);
        auto g = [](const Vars& v) { return ad::matmul(v[0], v[1]); };  // [2, 3] x [3] -> [2]
        const auto Jg = ad::jacobian<double>(g, {A, x});
        Tensor<double> dA = xt::zeros<double>({2, 2, 3});
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t b = 0; b < 3; ++b) dA(i, i, b) = x(b);
        require_close(Jg[0][0], dA);
        require_close(Jg[0][1], A);
    }
    SECTION("an output larger than the chosen inputs goes forward mode, with the same result")
    {
        const Tensor<double> s = {0.7}, c = randn({5}, 4);
        auto g = [](const Vars& v) { return ad::exp(v[0] * v[1]); };  // [1] * [5] -> [5]
        const auto Js = ad::jacobian<double>(g, {s, c}, {0});
        Tensor<double> expected = xt::zeros<double>({5, 1});
        for (std::size_t i = 0; i < 5; ++i) expected(i, 0) = c(i) * std::exp(s(0) * c(i));
        require_close(Js[0][0], expected);
    }
    SECTION("an output that depends on no chosen input has zero blocks")
    {
        auto g = [](const Vars& v) { return ad::exp(v[1]); };
        const auto Jg = ad::jacobian<double>(g, {x, y}, {0});
        require_close(Jg[0][0], xt::zeros<double>({3, 3}));
    }
}

TEST_CASE("hessian, hvp and jvp over several inputs against closed forms", "[functional]")
{
    const Tensor<double> x = randn({3}, 5), y = randn({3}, 6), u = randn({3}, 7), w = randn({3}, 8);
    auto f = [](const Vars& v) { return ad::sum(v[0] * v[0] * v[1]); };  // sum x^2 y
    const auto H = ad::hessian<double>(f, {x, y});
    require_close(H[0][0], diag(2.0 * y));
    require_close(H[0][1], diag(2.0 * x));
    require_close(H[1][0], diag(2.0 * x));
    require_close(H[1][1], xt::zeros<double>({3, 3}));
    const auto Hy = ad::hessian<double>(f, {x, y}, {1, 0});
    require_close(Hy[0][0], xt::zeros<double>({3, 3}));
    require_close(Hy[0][1], diag(2.0 * x));
    require_close(Hy[1][1], diag(2.0 * y));

    const auto Hv = ad::hvp<double>(f, {x, y}, {u, w});
    require_close(Hv[0], 2.0 * y * u + 2.0 * x * w);
    require_close(Hv[1], 2.0 * x * u);

    auto g = [](const Vars& v) { return Vars{v[0] * ad::sin(v[1]), ad::sum(v[0] * v[0] * v[1])}; };
    const auto [values, tangents] = ad::jvp<double>(g, {x, y}, {u, w});
    require_close(values[0], x * xt::sin(y));
    require_close(tangents[0], xt::sin(y) * u + x * xt::cos(y) * w);
    require_close(tangents[1], Tensor<double>(xt::sum(2.0 * x * y * u + x * x * w)));
    const auto [v1, t1] = ad::jvp<double>(g, {x, y}, {w}, {1});
    require_close(t1[0], x * xt::cos(y) * w);
}

TEST_CASE("the functional API over several inputs refuses bad argnums and vectors", "[functional][errors]")
{
    const Tensor<double> x = randn({3}, 1), y = randn({2}, 2);
    auto f = [](const Vars& v) { return ad::sum(v[0]) * ad::sum(v[1]); };
    CHECK_THROWS_AS(ad::jacobian<double>(f, {x, y}, {2}), ad::Error);
    CHECK_THROWS_WITH(ad::jacobian<double>(f, {x, y}, {2}), Contains("jacobian") && Contains("argnums[0] = 2") &&
                                                                Contains("2 inputs"));
    CHECK_THROWS_WITH(ad::hessian<double>(f, {x, y}, {1, 1}), Contains("hessian") && Contains("twice"));
    CHECK_THROWS_WITH(ad::hvp<double>(f, {x, y}, {x}), Contains("hvp") && Contains("1 vectors") &&
                                                            Contains("2 differentiated inputs"));
    CHECK_THROWS_WITH(ad::hvp<double>(f, {x, y}, {x, x}), Contains("hvp") && Contains("vector 1 has shape [3]") &&
                                                               Contains("[2]"));
    CHECK_THROWS_WITH(ad::jvp<double>(f, {x, y}, {y}, {0}), Contains("jvp") && Contains("vector 0 has shape [2]"));
    auto vec = [](const Vars& v) { return v[0] * 2.0; };
    CHECK_THROWS_WITH(ad::hessian<double>(vec, {x}), Contains("hessian") && Contains("one element") &&
                                                         Contains("[3]"));
    auto none = [](const Vars&) { return Vars{}; };
    CHECK_THROWS_WITH(ad::jacobian<double>(none, {x}), Contains("jacobian") && Contains("no output"));
}

TEST_CASE("the one-tensor forms take any xtensor expression, T from its value_type", "[functional]")
{
    auto cube = [](const Var<double>& x) { return ad::sum(x * x * x); };  // H = diag(6x)
    const auto H0 = ad::hessian(cube, xt::zeros<double>({2}));
    require_close(H0, xt::zeros<double>({2, 2}));
    const auto H1 = ad::hessian(cube, 2.0 * xt::ones<double>({2}));
    require_close(H1, diag(Tensor<double>{12.0, 12.0}));

    const Tensor<double> a = {1.0, -2.0}, b = {0.5, 3.0};
    auto sq = [](const Var<double>& x) { return x * x; };
    const auto J = ad::jacobian(sq, a + 2.0 * b);  // diag(2 (a + 2b))
    require_close(J, diag(Tensor<double>{4.0, 8.0}));
    const auto Ja = ad::jacobian(sq, Tensor<double>{1.0, 3.0});
    require_close(Ja, diag(Tensor<double>{2.0, 6.0}));

    const auto Hv = ad::hvp(cube, a + b, a - b);  // 6 (a + b) (a - b)
    require_close(Hv, 6.0 * (a + b) * (a - b));
    const auto jv = ad::jvp(sq, a, xt::ones<double>({2}));
    require_close(jv.first, a * a);
    require_close(jv.second, 2.0 * a);

    // float from the expression's value_type
    const xt::xtensor<float, 1> xf = {1.0f, 2.0f};
    auto cube_f = [](const Var<float>& x) { return ad::sum(x * x * x); };
    const ad::Tensor<float> Hf = ad::hessian(cube_f, xf * 1.0f);
    CHECK(Hf(0, 0) == Approx(6.0f));
    CHECK(Hf(1, 1) == Approx(12.0f));
    CHECK(Hf(0, 1) == 0.0f);
}

// --- over a module's named weights ---

namespace {

// A linear layer with given weights on a batch, and its mean squared error against targets.
struct Regression {
    Tensor<double> W = randn({2, 3}, 11), b = randn({2}, 12), x = randn({4, 3}, 13), y = randn({4, 2}, 14);
    nn::Linear<double> model{W, b};

    Var<double> loss(const nn::VarMap<double>& w)
    {
        const Var<double> out = nn::functional_call(model, w, x);
        return ad::mse(out, out.tape().constant(y));
    }
};

}  // namespace

TEST_CASE("functional_call runs the forward pass with the given weights", "[functional][nn]")
{
    Regression r;
    Tape<double> tape;
    const Tensor<double> W2 = randn({2, 3}, 21);
    const nn::VarMap<double> w{{"weight", tape.variable(W2)}};  // bias: the module's own
    const Var<double> out = nn::functional_call(r.model, w, tape.constant(r.x));
    const Tensor<double> expected = xt::linalg::dot(r.x, xt::transpose(W2)) + r.b;
    require_close(out.value(), expected);
    // the gradient reaches the substitute, not the parameter
    const auto g = ad::grad(ad::sum(out), {w.at("weight")});
    Tensor<double> colsum = xt::zeros<double>({2, 3});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t n = 0; n < 4; ++n) colsum(i, j) += r.x(n, j);
    require_close(g[0], colsum);
    // after the call, the module reads its own parameters again
    require_close(r.model(tape.constant(r.x)).value(), xt::linalg::dot(r.x, xt::transpose(r.W)) + r.b);
}

TEST_CASE("functional_call scopes nest, and end on an exception", "[functional][nn]")
{
    Regression r;
    Tape<double> tape;
    const Tensor<double> W2 = randn({2, 3}, 22), W3 = randn({2, 3}, 23);
    const Var<double> x = tape.constant(r.x);
    {
        const nn::ParameterSubstitution<double> outer(r.model, {{"weight", tape.variable(W2)}});
        {
            const nn::ParameterSubstitution<double> inner(r.model, {{"weight", tape.variable(W3)}});
            require_close(r.model(x).value(), xt::linalg::dot(r.x, xt::transpose(W3)) + r.b);
        }
        require_close(r.model(x).value(), xt::linalg::dot(r.x, xt::transpose(W2)) + r.b);
    }
    // an exception inside the forward pass (a wrong input width) leaves no substitution behind
    CHECK_THROWS_AS(nn::functional_call(r.model, {{"weight", tape.variable(W2)}}, tape.constant(randn({4, 5}, 1))),
                    ad::Error);
    require_close(r.model(x).value(), xt::linalg::dot(r.x, xt::transpose(r.W)) + r.b);
}

TEST_CASE("functional_call refuses unknown names, wrong shapes and weights on another tape", "[functional][nn][errors]")
{
    Regression r;
    Tape<double> tape, other;
    const Var<double> x = tape.constant(r.x);
    CHECK_THROWS_WITH(nn::functional_call(r.model, {{"wieght", tape.variable(r.W)}}, x),
                      Contains("functional_call") && Contains("'wieght'") && Contains("weight, bias"));
    CHECK_THROWS_WITH(nn::functional_call(r.model, {{"bias", tape.variable(randn({3}, 1))}}, x),
                      Contains("functional_call") && Contains("'bias'") && Contains("shape [3]") &&
                          Contains("parameter has shape [2]"));
    CHECK_THROWS_WITH(nn::functional_call(r.model, {{"weight", other.variable(r.W)}}, x),
                      Contains("functional_call") && Contains("'weight'") && Contains("tape"));
    CHECK_THROWS_WITH(nn::functional_call(r.model, {{"weight", Var<double>()}}, x),
                      Contains("functional_call") && Contains("'weight'") && Contains("empty handle"));
    CHECK_THROWS_WITH(nn::functional_call(r.model, nn::VarMap<double>{}, r.x),
                      Contains("functional_call") && Contains("at least one weight"));
}

// The block records on a scratch tape and reruns during backward(), after the substitution has
// ended: reading the weights there would otherwise lose their gradient.
TEST_CASE("functional_call's weights cannot be read inside ad::checkpoint", "[functional][nn][errors]")
{
    Regression r;
    Tape<double> tape;
    const Var<double> x = tape.variable(r.x);
    const nn::VarMap<double> w{{"weight", tape.variable(r.W)}};
    auto block = [&](const std::vector<Var<double>>& in) { return nn::functional_call(r.model, w, in[0]); };
    CHECK_THROWS_WITH(ad::checkpoint(block, {x}), Contains("functional_call") && Contains("'weight'") && Contains("tape"));
}

TEST_CASE("nn::jacobian, hessian and hvp over named weights against closed forms", "[functional][nn]")
{
    Regression r;
    const auto w = nn::parameter_values(r.model);
    REQUIRE(w.size() == 2);
    const std::size_t N = 4, m = 2, d = 3;
    const double c = 2.0 / double(N * m);  // L = 1/(N m) sum (W x + b - y)^2
    auto loss = [&](const nn::VarMap<double>& v) { return r.loss(v); };

    // H[W_ij][W_kl] = c d_ik sum_n x_nj x_nl; H[W_ij][b_k] = c d_ik sum_n x_nj; H[b_i][b_k] = c d_ik N
    Tensor<double> HWW = xt::zeros<double>({m, d, m, d}), HWb = xt::zeros<double>({m, d, m}),
                   Hbb = xt::zeros<double>({m, m});
    for (std::size_t i = 0; i < m; ++i) {
        Hbb(i, i) = c * double(N);
        for (std::size_t j = 0; j < d; ++j)
            for (std::size_t n = 0; n < N; ++n) {
                HWb(i, j, i) += c * r.x(n, j);
                for (std::size_t l = 0; l < d; ++l) HWW(i, j, i, l) += c * r.x(n, j) * r.x(n, l);
            }
    }
    const auto H = nn::hessian(loss, w);
    require_close(H.at("weight").at("weight"), HWW);
    require_close(H.at("weight").at("bias"), HWb);
    require_close(H.at("bias").at("bias"), Hbb);
    Tensor<double> HbW = xt::zeros<double>({m, m, d});
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < d; ++j) HbW(i, i, j) = HWb(i, j, i);
    require_close(H.at("bias").at("weight"), HbW);

    const nn::TensorMap<double> v{{"weight", randn({m, d}, 31)}, {"bias", randn({m}, 32)}};
    const auto Hv = nn::hvp(loss, w, v);
    Tensor<double> HvW = xt::zeros<double>({m, d}), Hvb = xt::zeros<double>({m});
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < d; ++j) {
            for (std::size_t l = 0; l < d; ++l) HvW(i, j) += HWW(i, j, i, l) * v.at("weight")(i, l);
            HvW(i, j) += HWb(i, j, i) * v.at("bias")(i);
            Hvb(i) += HWb(i, j, i) * v.at("weight")(i, j);
        }
    for (std::size_t i = 0; i < m; ++i) Hvb(i) += Hbb(i, i) * v.at("bias")(i);
    require_close(Hv.at("weight"), HvW);
    require_close(Hv.at("bias"), Hvb);
    CHECK_THROWS_WITH(nn::hvp(loss, w, nn::TensorMap<double>{{"weight", v.at("weight")}}),
                      Contains("hvp") && Contains("'bias'"));

    // the model's Jacobian: d out[n, i] / d W[k, j] = d_ik x[n, j], d out[n, i] / d b[k] = d_ik
    const auto J = nn::jacobian(r.model, w, r.x);
    Tensor<double> JW = xt::zeros<double>({N, m, m, d}), Jb = xt::zeros<double>({N, m, m});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t i = 0; i < m; ++i) {
            Jb(n, i, i) = 1;
            for (std::size_t j = 0; j < d; ++j) JW(n, i, i, j) = r.x(n, j);
        }
    require_close(J.at("weight"), JW);
    require_close(J.at("bias"), Jb);
}

namespace {

// A two-layer tanh network in plain doubles, for the MAML reference: out = V tanh(W x + b) + c.
struct PlainNet {
    Tensor<double> W, b, V, c;

    // mean squared error over the batch, and (if asked) its gradient with respect to each weight
    double loss(const Tensor<double>& X, const Tensor<double>& Y, PlainNet* grad = nullptr) const
    {
        const std::size_t N = X.shape()[0], h = W.shape()[0], d = W.shape()[1], o = V.shape()[0];
        if (grad) {
            grad->W = xt::zeros<double>(W.shape());
            grad->b = xt::zeros<double>(b.shape());
            grad->V = xt::zeros<double>(V.shape());
            grad->c = xt::zeros<double>(c.shape());
        }
        double L = 0;
        for (std::size_t n = 0; n < N; ++n) {
            std::vector<double> a(h);
            for (std::size_t k = 0; k < h; ++k) {
                double z = b(k);
                for (std::size_t j = 0; j < d; ++j) z += W(k, j) * X(n, j);
                a[k] = std::tanh(z);
            }
            std::vector<double> da(h, 0.0);
            for (std::size_t i = 0; i < o; ++i) {
                double out = c(i);
                for (std::size_t k = 0; k < h; ++k) out += V(i, k) * a[k];
                const double e = out - Y(n, i);
                L += e * e / double(N * o);
                if (!grad) continue;
                const double g = 2 * e / double(N * o);
                grad->c(i) += g;
                for (std::size_t k = 0; k < h; ++k) {
                    grad->V(i, k) += g * a[k];
                    da[k] += g * V(i, k);
                }
            }
            if (!grad) continue;
            for (std::size_t k = 0; k < h; ++k) {
                const double dz = da[k] * (1 - a[k] * a[k]);
                grad->b(k) += dz;
                for (std::size_t j = 0; j < d; ++j) grad->W(k, j) += dz * X(n, j);
            }
        }
        return L;
    }
    Tensor<double>& at(const std::string& name)
    {
        return name == "0.weight" ? W : name == "0.bias" ? b : name == "2.weight" ? V : c;
    }
};

}  // namespace

TEST_CASE("MAML: the gradient through one inner SGD step matches central differences", "[functional][nn][higher]")
{
    nn::Rng rng(5);
    nn::Sequential<double> model;
    model.add(std::make_shared<nn::Linear<double>>(2, 3, rng));
    model.add(std::make_shared<nn::Tanh<double>>());
    model.add(std::make_shared<nn::Linear<double>>(3, 1, rng));
    const Tensor<double> Xtr = randn({5, 2}, 41), Ytr = randn({5, 1}, 42), Xq = randn({4, 2}, 43), Yq = randn({4, 1}, 44);
    const double alpha = 0.3;

    // L_query(w - alpha grad L_train(w)) as a function of w
    auto maml = [&](const nn::VarMap<double>& w) {
        const Var<double> out = nn::functional_call(model, w, Xtr);
        const Var<double> inner = ad::mse(out, out.tape().constant(Ytr));
        std::vector<Var<double>> vars;
        for (const auto& e : w) vars.push_back(e.second);
        const auto g = ad::grad(inner, vars, ad::create_graph);
        nn::VarMap<double> adapted;
        std::size_t k = 0;
        for (const auto& e : w) adapted.emplace(e.first, e.second - alpha * g[k++]);
        const Var<double> q = nn::functional_call(model, adapted, Xq);
        return ad::mse(q, q.tape().constant(Yq));
    };
    const auto w = nn::parameter_values(model);
    REQUIRE(w.size() == 4);
    const auto grads = nn::jacobian(maml, w);

    // reference: the same objective in plain doubles, the inner gradient by hand
    PlainNet net{w.at("0.weight"), w.at("0.bias"), w.at("2.weight"), w.at("2.bias")};
    auto objective = [&](const PlainNet& p) {
        PlainNet g;
        p.loss(Xtr, Ytr, &g);
        PlainNet adapted{p.W - alpha * g.W, p.b - alpha * g.b, p.V - alpha * g.V, p.c - alpha * g.c};
        return adapted.loss(Xq, Yq);
    };
    {
        Tape<double> tape;
        nn::VarMap<double> vars;
        for (const auto& [name, value] : w) vars.emplace(name, tape.variable(value));
        CHECK(maml(vars).item() == Approx(objective(net)).epsilon(1e-12));
    }
    const double h = 1e-5;
    for (const auto& [name, value] : w) {
        Tensor<double> fd = xt::zeros<double>(value.shape());
        for (std::size_t i = 0; i < value.size(); ++i) {
            PlainNet plus = net, minus = net;
            plus.at(name).flat(i) += h;
            minus.at(name).flat(i) -= h;
            fd.flat(i) = (objective(plus) - objective(minus)) / (2 * h);
        }
        INFO(name);
        require_close(grads.at(name), fd, 1e-7);
    }
}
