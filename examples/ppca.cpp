// Probabilistic PCA (seed 003) fitted by gradient ascent on its likelihood, and checked against
// the closed-form maximum-likelihood solution.
//
// The model: a latent code h ~ N(0, I_q) generates x = W h + b + noise, noise ~ N(0, sigma^2 I_m).
// Integrating h out, x ~ N(b, C) with C = W W^T + sigma^2 I, so the average log-likelihood of
// data x_1..x_N is
//
//     l(W, b, sigma^2) = -1/2 [ m log 2 pi + log det C + (1/N) sum_i (x_i - b)^T C^{-1} (x_i - b) ].
//
// The engine evaluates it with the decomposition ops of autodiff/ops_decomp.hpp: logdet(C), and the
// quadratic form as |L^{-1} (x_i - b)|^2 with L = cholesky(C) and a triangular solve. The
// model is fitted twice from the same start, over W, b and log sigma^2 (log keeps sigma^2
// positive): by plain gradient ascent, and by nn::Adam with a cosine learning-rate schedule.
//
// Tipping and Bishop's closed form: b = the sample mean; with S the sample covariance (1/N) and
// its eigenvalues lambda_1 >= ... >= lambda_m, eigenvectors U,
//     sigma^2 = mean of the discarded eigenvalues lambda_{q+1..m},
//     W = U_q (Lambda_q - sigma^2 I)^{1/2} R for any rotation R,
// and at that point the average log-likelihood is -1/2 [m log 2 pi + sum_{j<=q} log lambda_j +
// (m - q) log sigma^2 + m]. W is only determined up to R, so the fit is compared through
// C = W W^T + sigma^2 I (to 1e-4 relative), and R = (Lambda_q - sigma^2 I)^{-1/2} U_q^T W must
// come out orthogonal.
//
// The data are synthetic with a known rank-q structure and a fixed seed. Writes ppca.csv (both
// fits' progress) and ppca.png.
//
// Usage: ppca [--small] [--out DIR] [--no-plot]
//
// ctest-args: --small
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "autodiff/ops_decomp.hpp"
#include "nn/optim.hpp"
#include "nn/schedule.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xview.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using ad::Tensor;
using ad::Var;
using T = double;
namespace nn = ad::nn;

using examples::check;
using examples::failures;
using examples::num;

namespace {

const T log_2pi = std::log(2 * M_PI);

// x_i = W h_i + b + sigma eps_i, one example per row.
Tensor<T> make_data(std::size_t n, std::size_t m, std::size_t q, T sigma, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<T> normal(0, 1);
    Tensor<T> W = Tensor<T>::from_shape({m, q}), b = Tensor<T>::from_shape({m});
    const std::vector<T> scale{3.0, 2.0, 1.5, 1.2, 1.0};
    for (std::size_t i = 0; i < m; ++i) {
        b(i) = 2 * normal(rng);
        for (std::size_t j = 0; j < q; ++j) W(i, j) = scale[j % scale.size()] * normal(rng) / std::sqrt(T(m) / 4);
    }
    Tensor<T> X = Tensor<T>::from_shape({n, m});
    std::vector<T> h(q);
    for (std::size_t k = 0; k < n; ++k) {
        for (auto& v : h) v = normal(rng);
        for (std::size_t i = 0; i < m; ++i) {
            T x = b(i) + sigma * normal(rng);
            for (std::size_t j = 0; j < q; ++j) x += W(i, j) * h[j];
            X(k, i) = x;
        }
    }
    return X;
}

// The average log-likelihood on the tape.
Var<T> log_likelihood(const Var<T>& X, const Var<T>& W, const Var<T>& b, const Var<T>& log_s2)
{
    auto& tape = X.tape();
    const std::size_t n = X.shape()[0], m = X.shape()[1];
    const auto C = ad::matmul(W, W, ad::transpose_b) + tape.constant(xt::eye<T>(m)) * ad::exp(log_s2);
    const auto Z = ad::solve_triangular(ad::cholesky(C), ad::transpose(X - b));  // L^{-1} (x_i - b), [m, n]
    return -0.5 * (ad::logdet(C) + ad::sum(ad::square(Z)) / T(n) + T(m) * log_2pi);
}

struct ClosedForm {
    Tensor<T> b, W, C, lambda;  // lambda: eigenvalues of S, largest first
    T sigma2, loglik;
};

ClosedForm closed_form(const Tensor<T>& X, std::size_t q)
{
    const std::size_t n = X.shape()[0], m = X.shape()[1];
    ClosedForm c;
    c.b = xt::mean(X, {0});
    const Tensor<T> Xc = X - c.b;
    const Tensor<T> S = xt::linalg::dot(xt::transpose(Xc), Xc) / T(n);
    auto [w, U] = xt::linalg::eigh(S);  // ascending
    c.lambda = xt::flip(Tensor<T>(w), 0);
    const Tensor<T> Ud = xt::flip(Tensor<T>(U), 1);
    c.sigma2 = 0;
    for (std::size_t j = q; j < m; ++j) c.sigma2 += c.lambda(j) / T(m - q);
    c.W = Tensor<T>::from_shape({m, q});
    for (std::size_t j = 0; j < q; ++j)
        for (std::size_t i = 0; i < m; ++i) c.W(i, j) = Ud(i, j) * std::sqrt(c.lambda(j) - c.sigma2);
    c.C = xt::linalg::dot(c.W, xt::transpose(c.W)) + c.sigma2 * xt::eye<T>(m);
    T logdet = T(m - q) * std::log(c.sigma2);
    for (std::size_t j = 0; j < q; ++j) logdet += std::log(c.lambda(j));
    c.loglik = -0.5 * (T(m) * log_2pi + logdet + T(m));
    return c;
}

T frobenius(const Tensor<T>& a) { return std::sqrt(xt::sum(xt::square(a))()); }

enum class Method { gradient_ascent, adam };

struct Fit {
    Tensor<T> W, b;
    T sigma2 = 0, loglik = 0, rel = 1;  // rel: ||C - C_ML||_F / ||C_ML||_F
    int steps = 0;
    bool converged = false;
    double seconds = 0;
    std::vector<std::pair<T, T>> trace;  // every 10 steps: (log-likelihood gap, rel)
};

// C = W W^T + sigma^2 I from the parameters' values.
Tensor<T> covariance(const Tensor<T>& W, T sigma2)
{
    return xt::linalg::dot(W, xt::transpose(W)) + sigma2 * xt::eye<T>(W.shape()[0]);
}

// Maximises l over W, b and log sigma^2 (the log keeps sigma^2 positive).
//
// Gradient ascent takes a fixed step. It must stay below 2 / (the largest curvature of -l):
// along b the Hessian is C^{-1}, whose largest eigenvalue is 1/sigma^2 (about 4 here), and near
// the maximum the curvature along log sigma^2 is about (m - q)/2. It then converges linearly,
// at a rate set by the spread of the eigenvalues, and stops when the gradient norm is 1e-10.
// Adam (nn::Adam) rescales each coordinate's step by its running gradient size; with a fixed
// rate it would hover around the maximum, so the rate follows a cosine schedule down to 0 over
// a fixed budget of steps.
Fit fit(const Tensor<T>& X, const ClosedForm& cf, Method method)
{
    const std::size_t m = X.shape()[1], q = cf.W.shape()[1];
    std::mt19937_64 rng(5);
    std::normal_distribution<T> normal(0, 0.1);
    ad::Parameter<T> W(Tensor<T>::from_shape({m, q})), b(Tensor<T>(xt::zeros<T>({m}))), log_s2(Tensor<T>(T(0)));
    for (auto& v : W.mutable_value()) v = normal(rng);
    const std::vector<ad::Parameter<T>*> params{&W, &b, &log_s2};

    const bool adam = method == Method::adam;
    const int max_steps = adam ? 4000 : 20000;
    const T lr = 0.1;
    nn::AdamOptions ao;
    ao.lr = 0.05;
    nn::Adam<T> opt({{"W", &W}, {"b", &b}, {"log_sigma2", &log_s2}}, ao);
    nn::CosineLR<T> schedule(opt, std::uint64_t(max_steps));

    Fit f;
    ad::Tape<T> tape;
    auto evaluate = [&] {
        tape.clear();
        for (auto* p : params) p->zero_grad();
        const auto L = log_likelihood(tape.constant(X), tape.param(W), tape.param(b), tape.param(log_s2));
        f.loglik = L.item();
        f.rel = frobenius(covariance(W.value(), std::exp(log_s2.value()())) - cf.C) / frobenius(cf.C);
        return L;
    };
    const auto t0 = std::chrono::steady_clock::now();
    for (; f.steps < max_steps; ++f.steps) {
        ad::backward(-evaluate());  // the gradient of -l: ascent on l is descent on -l
        if (f.steps % 10 == 0) f.trace.emplace_back(cf.loglik - f.loglik, f.rel);
        if (adam) {
            opt.step();
            schedule.step();
            continue;
        }
        T g2 = 0;
        for (auto* p : params) g2 += xt::sum(xt::square(p->grad))();
        if (std::sqrt(g2) < 1e-10) {
            f.converged = true;
            break;
        }
        for (auto* p : params) p->mutable_value() -= lr * p->grad;
    }
    if (adam) evaluate();  // the values after the last step
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    f.W = W.value();
    f.b = b.value();
    f.sigma2 = std::exp(log_s2.value()());
    return f;
}

// The fit against the closed form.
void report(const Fit& f, const ClosedForm& cf, const std::string& name, bool needs_convergence)
{
    const std::size_t m = f.W.shape()[0], q = f.W.shape()[1];
    std::printf("\n  %s: %d steps in %.2f s; sigma^2 = %.6f, average log-likelihood = %.8f\n", name.c_str(), f.steps,
                f.seconds, f.sigma2, f.loglik);
    if (needs_convergence) check(f.converged, name + " converged (gradient norm below 1e-10)");
    check(f.rel < 1e-4, name + ": fitted W W^T + sigma^2 I equals the closed form (relative Frobenius error " +
                            num("%.1e", f.rel) + ")");
    check(std::abs(f.sigma2 - cf.sigma2) < 1e-4 * cf.sigma2,
          name + ": sigma^2 is the mean of the discarded eigenvalues (" + num("%.6f", f.sigma2) + " vs " +
              num("%.6f", cf.sigma2) + ")");
    check(frobenius(f.b - cf.b) < 1e-4 * frobenius(cf.b), name + ": b is the sample mean");
    check(f.loglik <= cf.loglik + 1e-12 && cf.loglik - f.loglik < 1e-8,
          name + ": the fit's log-likelihood is the maximum, to " + num("%.1e", cf.loglik - f.loglik));
    // W = U_q (Lambda_q - sigma^2)^{1/2} R: recover R = (Lambda_q - sigma^2)^{-1/2} U_q^T W and
    // check that it is a rotation. (cf.W's column j is U_q's column j times sqrt(lambda_j - sigma^2).)
    Tensor<T> scaled = Tensor<T>::from_shape({m, q});
    for (std::size_t j = 0; j < q; ++j) {
        const T d = cf.lambda(j) - cf.sigma2;
        for (std::size_t i = 0; i < m; ++i) scaled(i, j) = cf.W(i, j) / d;
    }
    const Tensor<T> R = xt::linalg::dot(xt::transpose(scaled), f.W);
    const T orth = frobenius(xt::linalg::dot(xt::transpose(R), R) - xt::eye<T>(q));
    check(orth < 1e-3, name + ": the fitted W is the closed form times a rotation R (||R^T R - I||_F = " +
                           num("%.1e", orth) + ")");
}

}  // namespace

int main(int argc, char** argv)
{
    const auto options = examples::parse_lab_options(
        argc, argv, "ppca", "fewer data points",
        "ppca.csv and ppca.png");
    const bool small = options.small, plot = options.plot;
    const std::string& out = options.out;
    const std::size_t m = 10, q = 3, n = small ? 500 : 2000;
    const T sigma_true = 0.5;
    const Tensor<T> X = make_data(n, m, q, sigma_true, 3);
    std::printf("Probabilistic PCA: %zu points in R^%zu from a rank-%zu model with noise sigma = %.2f\n", n, m, q,
                sigma_true);

    const ClosedForm cf = closed_form(X, q);
    std::printf("  eigenvalues of the sample covariance:");
    for (auto l : cf.lambda) std::printf(" %.3f", l);
    std::printf("\n  closed form: sigma^2 = %.6f, average log-likelihood = %.8f\n", cf.sigma2, cf.loglik);

    // The engine's likelihood at the closed-form point must equal the formula.
    {
        ad::Tape<T> tape;
        const T at_cf = log_likelihood(tape.constant(X), tape.constant(cf.W), tape.constant(cf.b),
                                       tape.constant(Tensor<T>(std::log(cf.sigma2))))
                            .item();
        check(std::abs(at_cf - cf.loglik) < 1e-10 * std::abs(cf.loglik),
              "the engine's log-likelihood at the closed-form solution equals Tipping and Bishop's formula (" +
                  num("%.10f", at_cf) + ")");
    }

    // Both fits start from the same small random W, b = 0, sigma^2 = 1.
    const Fit ga = fit(X, cf, Method::gradient_ascent);
    report(ga, cf, "gradient ascent", true);
    const Fit adam = fit(X, cf, Method::adam);
    report(adam, cf, "Adam", false);
    std::ofstream csv = examples::open_output(out + "/ppca.csv", "ppca");
    csv << "step,loglik_gap_gradient_ascent,C_rel_error_gradient_ascent,loglik_gap_adam,C_rel_error_adam\n";
    for (std::size_t i = 0; i < std::max(ga.trace.size(), adam.trace.size()); ++i) {
        csv << 10 * i;
        for (const Fit* f : {&ga, &adam}) {
            if (i < f->trace.size()) csv << ',' << f->trace[i].first << ',' << f->trace[i].second;
            else csv << ",,";
        }
        csv << '\n';
    }
    csv.close();

    if (plot) {
        std::ofstream gp = examples::open_output(out + "/ppca.gp", "ppca");
        gp << "# Plots ppca.csv. Run from its directory: gnuplot ppca.gp\n"
              "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1000,400 font 'sans,10' } "
              "else { set terminal png size 1000,400 }\n"
              "set output 'ppca.png'\n"
              "set datafile separator ','\n"
              "set multiplot layout 1,2 title 'Probabilistic PCA by gradient ascent on the log-likelihood'\n"
              "set logscale y\nset format y '10^{%L}'\nset grid\nset xlabel 'step'\n"
              "set title 'log-likelihood below the closed-form maximum (per point)'\n"
              "set key top right\n"
              "plot 'ppca.csv' skip 1 using 1:($2 > 0 ? $2 : NaN) with lines lw 2 title 'gradient ascent', "
              "'' skip 1 using 1:($4 > 0 ? $4 : NaN) with lines lw 2 title 'Adam, cosine schedule'\n"
              "set title '||C - C_{ML}||_F / ||C_{ML}||_F,  C = W W^T + {/Symbol s}^2 I'\n"
              "plot 'ppca.csv' skip 1 using 1:3 with lines lw 2 title 'gradient ascent', "
              "'' skip 1 using 1:5 with lines lw 2 title 'Adam, cosine schedule', "
              "1e-4 with lines dt 2 lc 'gray' title 'required'\n"
              "unset multiplot\n";
        gp.close();
        if (examples::run_gnuplot(out, "ppca.gp")) std::printf("plot: %s/ppca.png\n", out.c_str());
        else std::printf("plot: gnuplot failed; the data are in %s/ppca.csv\n", out.c_str());
    }

    if (failures) {
        std::printf("%d check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
