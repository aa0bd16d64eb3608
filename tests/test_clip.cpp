// Gradient clipping and the weight constraints of seed 002, against their definitions: the
// spectral projection against an exact SVD (xtensor-blas), the surrogates against the seed's
// chain norm(W)_2 <= norm(W)_F <= c.
#include "nn/clip.hpp"
#include "nn/conv_layers.hpp"
#include "nn/linear.hpp"
#include "nn/sequential.hpp"

#include <catch2/catch.hpp>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xbuilder.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

using ad::Parameter;
using ad::Tensor;
using Catch::Contains;
namespace nn = ad::nn;

namespace {

Tensor<double> gaussian(std::size_t m, std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal;
    Tensor<double> a = Tensor<double>::from_shape({m, n});
    for (double& x : a) x = normal(gen);
    return a;
}

Tensor<double> orthonormal_columns(std::size_t m, std::size_t n, std::uint64_t seed)
{
    return std::get<0>(xt::linalg::qr(gaussian(m, n, seed)));
}

struct Svd {
    Tensor<double> U, s, Vt;
};

Svd svd(const Tensor<double>& W)
{
    auto r = xt::linalg::svd(W, false);
    return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

// U diag(s) V^T.
Tensor<double> compose(const Svd& d) { return xt::linalg::dot(Tensor<double>(d.U * d.s), d.Vt); }

// The exact projection onto norm(W)_2 <= c: singular values clipped at c.
Tensor<double> exact_spectral_projection(const Tensor<double>& W, double c)
{
    Svd d = svd(W);
    for (double& x : d.s) x = std::min(x, c);
    return compose(d);
}

double max_abs_diff(const Tensor<double>& a, const Tensor<double>& b)
{
    REQUIRE(a.shape() == b.shape());
    return xt::amax(xt::abs(a - b))();
}

double frobenius(const Tensor<double>& a) { return std::sqrt(xt::sum(xt::square(a))()); }

}  // namespace

TEST_CASE("clip_grad_norm scales all gradients by max_norm / (N + 1e-6) when their norm N is larger", "[clip]")
{
    Parameter<double> a(Tensor<double>{0.0, 0.0}), b(Tensor<double>{{0.0, 0.0}});
    auto reset = [&] {
        a.grad = Tensor<double>{3.0, 4.0};
        b.grad = Tensor<double>{{12.0, 0.0}};
    };  // together: sqrt(9 + 16 + 144) = 13
    const std::vector<Parameter<double>*> params{&a, &b};

    SECTION("above the bound: scaled, and the norm before clipping returned")
    {
        reset();
        CHECK(nn::clip_grad_norm(params, 6.5) == Approx(13.0).epsilon(1e-15));
        const double coef = 6.5 / (13.0 + 1e-6);
        CHECK(a.grad(0) == Approx(3.0 * coef).epsilon(1e-15));
        CHECK(a.grad(1) == Approx(4.0 * coef).epsilon(1e-15));
        CHECK(b.grad(0, 0) == Approx(12.0 * coef).epsilon(1e-15));
    }
    SECTION("below the bound: untouched")
    {
        reset();
        CHECK(nn::clip_grad_norm(params, 20.0) == Approx(13.0).epsilon(1e-15));
        CHECK((a.grad == Tensor<double>{3.0, 4.0}));
        CHECK(b.grad(0, 0) == 12.0);
    }
    SECTION("a model's gradients, by name, in float")
    {
        nn::Linear<float> layer(Tensor<float>{{0.f, 0.f}}, Tensor<float>{0.f});
        layer.weight().grad = Tensor<float>{{6.f, 0.f}};
        layer.bias()->grad = Tensor<float>{8.f};
        CHECK(nn::clip_grad_norm(layer, 1.0) == Approx(10.0).epsilon(1e-7));
        CHECK(layer.weight().grad(0, 0) == Approx(0.6f).epsilon(1e-6));
        CHECK(layer.bias()->grad(0) == Approx(0.8f).epsilon(1e-6));
    }
    SECTION("non-finite gradients: an error on request, otherwise PyTorch's NaN propagation")
    {
        reset();
        a.grad(0) = std::numeric_limits<double>::quiet_NaN();
        CHECK_THROWS_WITH(nn::clip_grad_norm(params, 1.0, nn::ClipGradNormOptions().error_if_nonfinite(true)),
                          Contains("clip_grad_norm") && Contains("NaN"));
        CHECK(b.grad(0, 0) == 12.0);  // nothing scaled
        CHECK(std::isnan(nn::clip_grad_norm(params, 1.0)));
    }
    SECTION("bad arguments")
    {
        reset();
        CHECK_THROWS_WITH(nn::clip_grad_norm(params, -1.0), Contains("max_norm"));
        CHECK_THROWS_WITH(nn::clip_grad_norm(params, std::nan("")), Contains("max_norm"));
        b.grad = Tensor<double>{1.0, 2.0};
        CHECK_THROWS_WITH(nn::clip_grad_norm(params, 1.0), Contains("[2]") && Contains("[1, 2]"));
        CHECK((a.grad == Tensor<double>{3.0, 4.0}));  // checked before anything is scaled
    }
}

TEST_CASE("the clips leave out a parameter without a gradient, and refuse one of the wrong shape", "[clip]")
{
    Parameter<double> a(Tensor<double>{0.0, 0.0}), none(Tensor<double>{1.0, 1.0, 1.0});
    a.grad = Tensor<double>{3.0, 4.0};
    const std::vector<Parameter<double>*> both{&a, &none};
    CHECK(nn::clip_grad_norm(both, 1.0) == Approx(5.0).epsilon(1e-15));  // sqrt(3^2 + 4^2): none adds nothing
    CHECK(a.grad(0) == Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-15));
    CHECK(a.grad(1) == Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-15));
    nn::clip_grad_value(both, 0.5);
    CHECK_FALSE(none.has_grad());
    none.grad = Tensor<double>{1.0, 2.0};
    CHECK_THROWS_WITH(nn::clip_grad_norm(both, 1.0), Contains("clip_grad_norm") && Contains("[3]") && Contains("[2]"));
    CHECK_THROWS_WITH(nn::clip_grad_value(both, 1.0), Contains("clip_grad_value") && Contains("[3]") && Contains("[2]"));
}

TEST_CASE("clip_grad_value clamps every gradient element to [-c, c]", "[clip]")
{
    Parameter<double> a(Tensor<double>{0.0, 0.0, 0.0, 0.0});
    a.grad = Tensor<double>{-3.0, -0.5, 0.25, 7.0};
    nn::clip_grad_value(std::vector<Parameter<double>*>{&a}, 1.0);
    CHECK((a.grad == Tensor<double>{-1.0, -0.5, 0.25, 1.0}));
    CHECK_THROWS_WITH(nn::clip_grad_value(std::vector<Parameter<double>*>{&a}, -0.1), Contains("clip_value"));
}

TEST_CASE("spectral projection lowers the singular values above c to c and keeps the rest", "[clip][spectral]")
{
    // W = U diag(5, 2.5, 0.8) V^T with orthonormal U (5 x 3) and V (3 x 3); with c = 1 the
    // projection is U diag(1, 1, 0.8) V^T. Power iteration on the deflated matrix converges like
    // (sigma_{k+1} / sigma_k)^(2 i): 0.5^400 and 0.32^400 after 200 iterations.
    Svd d{orthonormal_columns(5, 3, 1), Tensor<double>{5.0, 2.5, 0.8}, xt::transpose(orthonormal_columns(3, 3, 2))};
    const Tensor<double> W = compose(d);
    Svd want = d;
    want.s = Tensor<double>{1.0, 1.0, 0.8};

    Parameter<double> p(W);
    CHECK(nn::project_spectral_norm(p, 1.0, 200));
    CHECK(max_abs_diff(p.value(), compose(want)) < 1e-12);
    CHECK(max_abs_diff(p.value(), exact_spectral_projection(W, 1.0)) < 1e-12);
    CHECK(p.version() == 1);
    const Tensor<double> s_after = svd(p.value()).s;
    CHECK(s_after(0) == Approx(1.0).epsilon(1e-12));
    CHECK(s_after(1) == Approx(1.0).epsilon(1e-12));
    CHECK(s_after(2) == Approx(0.8).epsilon(1e-12));
}

TEST_CASE("spectral projection of random matrices agrees with the exact SVD projection", "[clip][spectral]")
{
    const auto shape = GENERATE(std::make_pair(6, 4), std::make_pair(4, 6), std::make_pair(5, 5), std::make_pair(8, 1));
    const double c = GENERATE(0.5, 1.5);
    const Tensor<double> W = gaussian(std::size_t(shape.first), std::size_t(shape.second), 42 + shape.first);
    const Tensor<double> s = svd(W).s;
    // Power iteration needs gaps: sigma_{k+1} / sigma_k < 0.95 for each value above c and the
    // first below gives an error of order 0.95^1000 after 500 iterations.
    for (std::size_t k = 0; k + 1 < s.size() && s(k) > c; ++k) REQUIRE(s(k + 1) / s(k) < 0.95);
    INFO("shape " << shape.first << " x " << shape.second << ", c = " << c);

    Parameter<double> p(W);
    nn::project_spectral_norm(p, c, 500);
    CHECK(max_abs_diff(p.value(), exact_spectral_projection(W, c)) < 1e-10);
    CHECK(svd(p.value()).s(0) <= c * (1 + 1e-12));

    SECTION("the iteration count is used: two iterations are much further from the SVD")
    {
        if (shape.first == 1 || shape.second == 1) return;  // rank one: exact after one iteration
        Parameter<double> q(W);
        nn::project_spectral_norm(q, c, 2);
        CHECK(max_abs_diff(q.value(), exact_spectral_projection(W, c)) > 1e3 * max_abs_diff(p.value(), exact_spectral_projection(W, c)));
    }
    SECTION("in float, to float accuracy")
    {
        Parameter<float> f{Tensor<float>(W)};
        nn::project_spectral_norm(f, c, 500);
        CHECK(max_abs_diff(Tensor<double>(f.value()), exact_spectral_projection(W, c)) < 1e-6);
    }
}

TEST_CASE("spectral projection leaves a matrix inside the ball alone", "[clip][spectral]")
{
    // The identity has Frobenius norm 2 > 1.5 but spectral norm 1 <= 1.5.
    Parameter<double> p(xt::eye<double>(4));
    CHECK_FALSE(nn::project_spectral_norm(p, 1.5));
    CHECK((p.value() == Tensor<double>(xt::eye<double>(4))));
    CHECK(p.version() == 0);
    Parameter<double> small(Tensor<double>{{0.1, 0.2}, {0.0, 0.1}});  // Frobenius norm below c: no iteration
    CHECK_FALSE(nn::project_spectral_norm(small, 1.0));
    CHECK(small.version() == 0);
}

TEST_CASE("spectral_norm_estimate is the largest singular value", "[clip][spectral]")
{
    const Tensor<double> W = gaussian(7, 3, 9);
    CHECK(nn::spectral_norm_estimate(W, 500) == Approx(svd(W).s(0)).epsilon(1e-12));
    CHECK(nn::spectral_norm_estimate(Tensor<double>(xt::zeros<double>({3, 2}))) == 0.0);
}

TEST_CASE("Frobenius projection scales W by c / norm(W)_F when that is below one", "[clip]")
{
    Parameter<double> p(Tensor<double>{{3.0, 0.0}, {0.0, 4.0}});
    CHECK(nn::project_frobenius_norm(p, 1.0));
    CHECK(p.value()(0, 0) == Approx(0.6).epsilon(1e-15));
    CHECK(p.value()(1, 1) == Approx(0.8).epsilon(1e-15));
    CHECK(p.version() == 1);
    CHECK_FALSE(nn::project_frobenius_norm(p, 2.0));
    CHECK(p.version() == 1);
    CHECK_THROWS_WITH(nn::project_frobenius_norm(p, -1.0), Contains("project_frobenius_norm"));
}

TEST_CASE("elementwise projection: |W_lk| <= c / sqrt(n_{j+1} n_j), hence norm(W)_2 <= norm(W)_F <= c", "[clip]")
{
    const Tensor<double> W = 3.0 * gaussian(4, 9, 5);
    const double c = 2.0, b = c / std::sqrt(4.0 * 9.0);
    Parameter<double> p(W);
    CHECK(nn::project_elementwise(p, c));
    for (std::size_t k = 0; k < W.size(); ++k)
        CHECK(p.value().flat(k) == std::clamp(W.flat(k), -b, b));
    CHECK(frobenius(p.value()) <= c);
    CHECK(svd(p.value()).s(0) <= frobenius(p.value()) * (1 + 1e-12));
    CHECK(p.version() == 1);
    CHECK_FALSE(nn::project_elementwise(p, c));  // already inside
    CHECK(p.version() == 1);

    Parameter<double> v(Tensor<double>{1.0, 2.0});
    CHECK_THROWS_WITH(nn::project_elementwise(v), Contains("project_elementwise") && Contains("[2]"));
    CHECK_THROWS_WITH(nn::project_spectral_norm(v), Contains("project_spectral_norm") && Contains("[2]"));
    Parameter<double> m(W);
    CHECK_THROWS_WITH(nn::project_spectral_norm(m, 1.0, 0), Contains("iterations"));
    CHECK_THROWS_WITH(nn::project_spectral_norm(m, -1.0), Contains("c must be"));
}

TEST_CASE("projections of a model act on every weight matrix and on no bias", "[clip]")
{
    nn::Sequential<double> model;
    model.add(std::make_shared<nn::Linear<double>>(Tensor<double>(3.0 * gaussian(4, 3, 11)), Tensor<double>{9.0, 9.0, 9.0, 9.0}));
    model.add(std::make_shared<nn::Linear<double>>(Tensor<double>(3.0 * gaussian(2, 4, 12)), Tensor<double>{9.0, 9.0}));
    SECTION("spectral")
    {
        nn::project_spectral_norm(model, 1.0, 500);
        for (auto& [name, p] : model.named_parameters()) {
            INFO(name);
            if (p->value().dimension() == 2)
                CHECK(svd(p->value()).s(0) <= 1.0 + 1e-12);
            else
                CHECK(p->value()(0) == 9.0);
        }
    }
    SECTION("Frobenius")
    {
        nn::project_frobenius_norm(model, 1.0);
        for (auto& [name, p] : model.named_parameters())
            CHECK((p->value().dimension() == 2 ? frobenius(p->value()) <= 1.0 + 1e-12 : p->value()(0) == 9.0));
    }
    SECTION("elementwise")
    {
        nn::project_elementwise(model, 1.0);
        for (auto& [name, p] : model.named_parameters()) {
            if (p->value().dimension() != 2) {
                CHECK(p->value()(0) == 9.0);
                continue;
            }
            const double b = 1.0 / std::sqrt(double(p->value().size()));
            CHECK(xt::amax(xt::abs(p->value()))() <= b);
        }
    }
}

TEST_CASE("a convolution kernel is constrained as the matrix [out, in kh kw], its bias is left alone", "[clip][spectral]")
{
    // Kernel [2, 1, 2, 2] whose matrix [2, 4] is U diag(3, 0.5) V^T: with c = 1 the projection is
    // U diag(1, 0.5) V^T, reshaped back.
    Svd d{orthonormal_columns(2, 2, 21), Tensor<double>{3.0, 0.5}, xt::transpose(orthonormal_columns(4, 2, 22))};
    const Tensor<double> M = compose(d);
    Svd want = d;
    want.s = Tensor<double>{1.0, 0.5};
    nn::Rng rng(1);
    nn::Sequential<double> model;
    auto conv = std::make_shared<nn::Conv2d<double>>(1, 2, 2, rng);
    model.add(conv);
    Tensor<double> kernel = M;
    kernel.reshape({2, 1, 2, 2});
    conv->weight().mutable_value() = kernel;
    conv->bias()->mutable_value() = Tensor<double>{9.0, 9.0};
    CHECK(nn::is_weight_matrix<double>("0.weight", conv->weight()));
    CHECK_FALSE(nn::is_weight_matrix<double>("0.bias", *conv->bias()));

    SECTION("spectral")
    {
        nn::project_spectral_norm(model, 1.0, 300);
        Tensor<double> after = conv->weight().value();
        REQUIRE(after.shape() == std::vector<std::size_t>{2, 1, 2, 2});
        after.reshape({2, 4});
        CHECK(max_abs_diff(after, compose(want)) < 1e-12);
        CHECK((conv->bias()->value() == Tensor<double>{9.0, 9.0}));
        CHECK(nn::spectral_norm_estimate(conv->weight().value(), 300) == Approx(1.0).epsilon(1e-12));
    }
    SECTION("Frobenius and elementwise")
    {
        nn::project_elementwise(model, 1.0);
        const double b = 1.0 / std::sqrt(2.0 * 4.0);
        for (std::size_t k = 0; k < M.size(); ++k)
            CHECK(conv->weight().value().flat(k) == std::clamp(M.flat(k), -b, b));
        nn::project_frobenius_norm(model, 0.5);
        CHECK(frobenius(conv->weight().value()) == Approx(0.5).epsilon(1e-14));
        CHECK((conv->bias()->value() == Tensor<double>{9.0, 9.0}));
    }
}

TEST_CASE("each clip and projection takes a model, named parameters, a list or one parameter", "[clip]")
{
    // Gradients (3, 4) and (12): total norm 13, as above, whichever way the parameters come.
    Parameter<double> w(Tensor<double>{{0.0, 0.0}}), b(Tensor<double>{0.0});
    auto reset = [&] {
        w.grad = Tensor<double>{{3.0, 4.0}};
        b.grad = Tensor<double>{12.0};
    };
    const nn::NamedParameters<double> named{{"layer.weight", &w}, {"layer.bias", &b}};
    reset();
    CHECK(nn::clip_grad_norm(named, 1e9) == Approx(13.0).epsilon(1e-15));
    CHECK(nn::clip_grad_norm(std::vector<Parameter<double>*>{&w, &b}, 1e9) == Approx(13.0).epsilon(1e-15));
    CHECK(nn::clip_grad_norm(w, 1e9) == Approx(5.0).epsilon(1e-15));  // one tensor, as in PyTorch
    CHECK(nn::clip_grad_norm(w, 1.0) == Approx(5.0).epsilon(1e-15));
    CHECK(w.grad(0, 0) == Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-15));
    CHECK(b.grad(0) == 12.0);
    nn::clip_grad_value(b, 2.0);
    CHECK(b.grad(0) == 2.0);

    // Projections: a collection constrains its weight matrices only and says whether any moved;
    // a parameter given alone is constrained whatever its name.
    w.mutable_value() = Tensor<double>{{3.0, 4.0}};
    b.mutable_value() = Tensor<double>{12.0};
    CHECK_FALSE(nn::project_frobenius_norm(named, 10.0));
    CHECK(nn::project_frobenius_norm(named, 1.0));
    CHECK(w.value()(0, 1) == Approx(0.8).epsilon(1e-15));
    CHECK(b.value()(0) == 12.0);
    CHECK(nn::project_frobenius_norm(b, 1.0));  // alone: constrained although named nothing
    CHECK(b.value()(0) == Approx(1.0).epsilon(1e-15));

    const nn::NamedParameters<double> with_null{{"layer.weight", &w}, {"head.weight", nullptr}};
    CHECK_THROWS_WITH(nn::project_spectral_norm(with_null), Contains("project_spectral_norm") && Contains("head.weight") &&
                                                                 Contains("null"));
    CHECK_THROWS_WITH(nn::clip_grad_norm(std::vector<Parameter<double>*>{&w, nullptr}, 1.0), Contains("#1") && Contains("null"));
}
