// Initialisation: sample moments within statistical bounds of the stated distributions,
// orthogonality, spectral norm checked against an eigen-decomposition, seeding, errors.
#include "nn/init.hpp"
#include "nn/linear.hpp"
#include "nn/sequential.hpp"

#include <catch2/catch.hpp>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

#include <cmath>

using ad::Tensor;
using Catch::Contains;
namespace nn = ad::nn;

namespace {

// For N independent draws with mean 0 and variance sigma2, the mean of x^2 has standard error
// sqrt(Var(x^2) / N), where Var(x^2) = E[x^4] - sigma2^2: 2 sigma2^2 for a normal,
// (4/5) sigma2^2 for a uniform (E x^4 = a^4 / 5 and sigma2 = a^2 / 3). The sample mean has
// standard error sqrt(sigma2 / N). Each check allows 5 standard errors.
void check_moments(const Tensor<double>& w, double sigma2, double var_of_square)
{
    const double N = double(w.size());
    const double mean = xt::mean(w)(), mean_square = xt::mean(xt::square(w))();
    INFO("N = " << N << ", sigma^2 = " << sigma2 << ", mean = " << mean << ", mean of squares = " << mean_square);
    CHECK(std::abs(mean) < 5 * std::sqrt(sigma2 / N));
    CHECK(std::abs(mean_square - sigma2) < 5 * std::sqrt(var_of_square / N));
}

void check_normal(const Tensor<double>& w, double sigma2)
{
    check_moments(w, sigma2, 2 * sigma2 * sigma2);
    // The fourth moment tells a normal (3 sigma^4) from a uniform of the same variance
    // (1.8 sigma^4); Var(x^4) = E x^8 - 9 sigma^8 = 96 sigma^8.
    const double N = double(w.size()), m4 = xt::mean(xt::pow(w, 4))();
    CHECK(std::abs(m4 - 3 * sigma2 * sigma2) < 5 * std::sqrt(96.0 / N) * sigma2 * sigma2);
}

void check_uniform(const Tensor<double>& w, double a)
{
    const double sigma2 = a * a / 3;
    check_moments(w, sigma2, 0.8 * sigma2 * sigma2);
    CHECK(xt::amax(xt::abs(w))() <= a);
}

double largest_eigenvalue_of_gram(const Tensor<double>& W)
{
    const Tensor<double> G = xt::linalg::dot(xt::transpose(W), W);
    const Tensor<double> ev = std::get<0>(xt::linalg::eigh(G));
    return xt::amax(ev)();
}

}  // namespace

TEST_CASE("xavier_normal has variance 2 / (fan_in + fan_out) (seed 001's Xavier)", "[nn][init]")
{
    nn::Rng rng(1);
    const Tensor<double> w = nn::xavier_normal<double>({400, 600}, rng);  // fan_out 400, fan_in 600
    REQUIRE(w.shape() == std::vector<std::size_t>{400, 600});
    check_normal(w, 2.0 / 1000);
}

TEST_CASE("xavier_uniform is U(-a, a) with a = sqrt(6 / (fan_in + fan_out))", "[nn][init]")
{
    nn::Rng rng(2);
    const Tensor<double> w = nn::xavier_uniform<double>({300, 500}, rng);
    check_uniform(w, std::sqrt(6.0 / 800));
}

TEST_CASE("he_normal has variance 2 / fan_in", "[nn][init]")
{
    nn::Rng rng(3);
    check_normal(nn::he_normal<double>({200, 800}, rng), 2.0 / 800);
    // fan_in counts every axis after the first.
    check_normal(nn::he_normal<double>({100, 20, 40}, rng), 2.0 / 800);
}

TEST_CASE("he_normal_seed001 is N(0, 4 / (n_l + n_{l+1})) as seed 001 writes it", "[nn][init][seeds]")
{
    nn::Rng rng(4);
    check_normal(nn::he_normal_seed001<double>({300, 700}, rng), 4.0 / 1000);
    // For a square layer it is the standard He variance 2 / fan_in.
    check_normal(nn::he_normal_seed001<double>({500, 500}, rng), 2.0 / 500);
}

TEST_CASE("Linear's default initialisation is PyTorch's U(-1/sqrt(in), 1/sqrt(in))", "[nn][init][linear]")
{
    nn::Rng rng(5);
    nn::Linear<double> lin(600, 400, rng);
    const double a = 1 / std::sqrt(600.0);
    check_uniform(lin.weight().value(), a);
    check_uniform(lin.bias()->value(), a);
    // With an explicit initialiser the bias starts at zero.
    nn::Linear<double> he(600, 400, rng, nn::he_normal<double>);
    check_normal(he.weight().value(), 2.0 / 600);
    CHECK(xt::all(xt::equal(he.bias()->value(), 0.0)));
}

TEST_CASE("orthogonal gives orthonormal rows (wide), columns (tall) or both (square)", "[nn][init]")
{
    nn::Rng rng(6);
    const ad::Shape shape = GENERATE(ad::Shape{3, 7}, ad::Shape{7, 3}, ad::Shape{5, 5}, ad::Shape{4, 2, 3});
    const Tensor<double> W0 = nn::orthogonal<double>(shape, rng);
    REQUIRE(W0.shape() == shape);
    Tensor<double> W = W0;
    W.reshape({shape[0], W0.size() / shape[0]});
    const std::size_t rows = W.shape()[0], cols = W.shape()[1];
    if (rows <= cols)
        CHECK(xt::allclose(xt::linalg::dot(W, xt::transpose(W)), xt::eye<double>(rows), 0.0, 1e-10));
    if (rows >= cols)
        CHECK(xt::allclose(xt::linalg::dot(xt::transpose(W), W), xt::eye<double>(cols), 0.0, 1e-10));

    const Tensor<double> G = nn::orthogonal<double>({3, 6}, rng, 2.0);
    CHECK(xt::allclose(xt::linalg::dot(G, xt::transpose(G)), 4.0 * xt::eye<double>(3), 0.0, 1e-10));

    nn::Rng rng_f(7);
    const Tensor<float> F = nn::orthogonal<float>({4, 4}, rng_f);
    const Tensor<double> Fd = xt::cast<double>(F);
    CHECK(xt::allclose(xt::linalg::dot(Fd, xt::transpose(Fd)), xt::eye<double>(4), 0.0, 1e-6));
}

TEST_CASE("spectral_normalised has largest singular value 1 (seed 002)", "[nn][init][seeds]")
{
    nn::Rng rng(8);
    const ad::Shape shape = GENERATE(ad::Shape{6, 4}, ad::Shape{3, 9}, ad::Shape{10, 10});
    const Tensor<double> W = nn::spectral_normalised<double>(shape, rng);
    // sigma_max^2 is the largest eigenvalue of W^T W.
    CHECK(largest_eigenvalue_of_gram(W) == Approx(1.0).epsilon(1e-10));
    CHECK(nn::spectral_norm(W) == Approx(1.0).epsilon(1e-12));
    // Not all singular values are 1: it is a scaled Gaussian, not an orthogonal matrix.
    CHECK(std::abs(xt::sum(xt::square(W))() - double(std::min(shape[0], shape[1]))) > 0.1);
}

TEST_CASE("spectral_norm and scale_to_spectral_norm on matrices with known singular values", "[nn][init]")
{
    CHECK(nn::spectral_norm<double>(Tensor<double>{{3, 0, 0}, {0, -5, 0}, {0, 0, 1}}) == Approx(5.0).epsilon(1e-14));
    CHECK(nn::spectral_norm<double>(Tensor<double>{{1, 1}, {0, 0}}) == Approx(std::sqrt(2.0)).epsilon(1e-14));
    nn::Rng rng(9);
    const Tensor<double> W = nn::normal<double>({5, 3}, 0.0, 1.0, rng);
    const Tensor<double> S = nn::scale_to_spectral_norm<double>(W, 2.5);
    CHECK(largest_eigenvalue_of_gram(S) == Approx(6.25).epsilon(1e-10));
    CHECK_THROWS_WITH(nn::scale_to_spectral_norm<double>(Tensor<double>(xt::zeros<double>({2, 2}))), Contains("zero"));
}

TEST_CASE("the same seed gives the same weights, another seed other weights", "[nn][init]")
{
    for (auto scheme : {nn::InitScheme::standard_normal, nn::InitScheme::xavier_normal, nn::InitScheme::xavier_uniform,
                        nn::InitScheme::he_normal, nn::InitScheme::he_normal_seed001, nn::InitScheme::orthogonal,
                        nn::InitScheme::spectral_normalised}) {
        INFO(nn::init_scheme_name(scheme));
        const auto init = nn::weight_init<double>(scheme);
        nn::Rng a(10), b(10), c(11);
        const Tensor<double> wa = init({4, 5}, a), wb = init({4, 5}, b), wc = init({4, 5}, c);
        CHECK(xt::allclose(wa, wb, 0.0, 0.0));
        CHECK_FALSE(xt::allclose(wa, wc, 0.0, 0.0));
    }
    CHECK_FALSE(nn::weight_init<double>(nn::InitScheme::pytorch_default));
}

TEST_CASE("init_linear_layers redraws every Linear weight and zeroes its bias", "[nn][init]")
{
    nn::Rng rng(12);
    nn::MLPOptions o;
    o.sizes = {50, 60, 60, 40};
    o.residual = true;
    o.layer_norm = true;
    auto net = nn::mlp<double>(o, rng);
    nn::init_linear_layers<double>(*net, nn::xavier_normal<double>, rng);
    for (auto& [name, p] : net->named_parameters()) {
        INFO(name);
        if (name.size() >= 11 && name.compare(name.size() - 11, 11, "linear.bias") == 0) CHECK(xt::all(xt::equal(p->value(), 0.0)));
        if (name == "input.bias" || name == "output.bias") CHECK(xt::all(xt::equal(p->value(), 0.0)));
        if (name == "blocks.0.norm.gain") CHECK(xt::all(xt::equal(p->value(), 1.0)));  // not a Linear: untouched
    }
    for (auto* lin : {dynamic_cast<nn::Linear<double>*>(&(*net)[0]), dynamic_cast<nn::Linear<double>*>(&(*net)[4])}) {
        REQUIRE(lin);
        const auto& w = lin->weight().value();
        check_normal(w, 2.0 / double(w.shape()[0] + w.shape()[1]));
    }
}

TEST_CASE("initialisers reject shapes without two axes and bad ranges", "[nn][init][errors]")
{
    nn::Rng rng(13);
    CHECK_THROWS_WITH(nn::xavier_normal<double>({5}, rng), Contains("xavier_normal") && Contains("[5]"));
    CHECK_THROWS_WITH(nn::orthogonal<double>({3, 0}, rng), Contains("orthogonal") && Contains("empty"));
    CHECK_THROWS_WITH(nn::uniform<double>({2, 2}, 1.0, 1.0, rng), Contains("lo < hi"));
    CHECK_THROWS_AS(nn::normal<double>({2, 2}, 0.0, -1.0, rng), ad::Error);
    CHECK_THROWS_WITH(nn::Linear<double>(3, 2, rng, [](const ad::Shape&, nn::Rng&) { return Tensor<double>{1.0}; }),
                      Contains("[2, 3]"));
}
