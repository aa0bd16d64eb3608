// Newton's method with the engine's Hessian: logistic regression on synthetic data.
//
// What it teaches: ad::hessian(f, w) differentiates the gradient a second time (the gradient is
// recorded with create_graph, then swept once per weight), so Newton's step H^{-1} g needs no
// hand-derived second derivative. For the mean logistic loss
//     L(w) = mean_i [ softplus(x_i . w) - y_i x_i . w ]
// the gradient is X^T (p - y) / n and the Hessian X^T S X / n with S = diag(p (1 - p)),
// p = sigmoid(X w); the example checks the engine's gradient and Hessian against these closed
// forms at every Newton iterate, then compares convergence: Newton reaches a gradient norm below
// 1e-10 in a handful of steps, gradient descent (step 1/L, L a bound on the largest Hessian
// eigenvalue) needs hundreds. The picture: L(w_k) - L* against k for both, log scale.
//
// Full run: n = 2000, 5 features and a bias. --small: n = 300 (same checks).
//
// ctest-args: --small --out newton_logistic_ci
#include "autodiff/autodiff.hpp"
#include "lab.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

using ad::Tensor;
using ad::Var;

struct Data {
    Tensor<double> X;  // n x d, last column all ones (the bias)
    Tensor<double> y;  // n, labels in {0, 1}
};

// Features with different scales and a correlation, labels drawn from the logistic model itself,
// so the classes overlap and the loss has a finite minimiser.
Data make_data(std::size_t n, std::uint64_t seed)
{
    const std::size_t d = 6;
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const double scale[5] = {1.0, 2.0, 0.5, 1.5, 1.0};
    const double w_true[6] = {1.0, -0.5, 2.0, 0.3, -1.0, 0.2};
    Data data{Tensor<double>::from_shape({n, d}), Tensor<double>::from_shape({n})};
    for (std::size_t i = 0; i < n; ++i) {
        double z = w_true[5];
        for (std::size_t j = 0; j < 5; ++j) data.X(i, j) = scale[j] * normal(rng);
        data.X(i, 4) = 0.6 * data.X(i, 0) + 0.8 * data.X(i, 4);  // correlated with feature 0
        data.X(i, 5) = 1.0;
        for (std::size_t j = 0; j < 5; ++j) z += w_true[j] * data.X(i, j);
        data.y(i) = uniform(rng) < 1.0 / (1.0 + std::exp(-z)) ? 1.0 : 0.0;
    }
    return data;
}

Var<double> logistic_loss(const Data& data, const Var<double>& w)
{
    auto& tape = w.tape();
    const auto z = ad::matmul(tape.constant(data.X), w);
    return ad::mean(ad::softplus(z) - tape.constant(data.y) * z);
}

double loss_value(const Data& data, const Tensor<double>& w)
{
    ad::Tape<double> tape;
    return logistic_loss(data, tape.variable(w)).value()();
}

Tensor<double> gradient(const Data& data, const Tensor<double>& w)
{
    ad::Tape<double> tape;
    const auto wv = tape.variable(w);
    return ad::grad(logistic_loss(data, wv), {wv})[0];
}

double max_abs(const Tensor<double>& a)
{
    double m = 0;
    for (double v : a) m = std::max(m, std::abs(v));
    return m;
}

double norm2(const Tensor<double>& a) { return std::sqrt(xt::sum(a * a)()); }

}  // namespace

int main(int argc, char** argv)
{
    using examples::check;
    using examples::num;
    const auto o = examples::parse_lab_options(argc, argv, "newton_logistic", "300 examples instead of 2000",
                                               "the CSV files, the gnuplot script and the PNG");
    try {
        const std::size_t n = o.small ? 300 : 2000;
        const Data data = make_data(n, 7);
        const std::size_t d = data.X.shape()[1];
        std::printf("logistic regression: %zu examples, %zu weights (5 features and a bias)\n", n, d);
        const ad::Fn<double> f = [&](const Var<double>& w) { return logistic_loss(data, w); };
        const double tol = 1e-10;

        // Newton: w <- w - H^{-1} g, H from the engine, checked against X^T S X / n.
        std::vector<double> newton_loss;
        std::vector<Tensor<double>> newton_w;
        Tensor<double> w = xt::zeros<double>({d});
        int newton_steps = -1;
        double worst_hessian = 0, worst_gradient = 0;
        for (int k = 0; k <= 50; ++k) {
            newton_loss.push_back(loss_value(data, w));
            newton_w.push_back(w);
            const Tensor<double> g = gradient(data, w);
            const Tensor<double> z = xt::linalg::dot(data.X, w);
            const Tensor<double> p = 1.0 / (1.0 + xt::exp(-z));
            const Tensor<double> g_closed = xt::linalg::dot(xt::transpose(data.X), p - data.y) / double(n);
            worst_gradient = std::max(worst_gradient, max_abs(g - g_closed));
            std::printf("  newton %2d  loss %.15f  |g| %.3e\n", k, newton_loss.back(), norm2(g));
            if (norm2(g) < tol) {
                newton_steps = k;
                break;
            }
            const Tensor<double> H = ad::hessian(f, w);
            const Tensor<double> s = p * (1.0 - p);
            const Tensor<double> SX = data.X * xt::view(s, xt::all(), xt::newaxis());
            const Tensor<double> H_closed = xt::linalg::dot(xt::transpose(data.X), SX) / double(n);
            worst_hessian = std::max(worst_hessian, max_abs(H - H_closed));
            w = w - xt::linalg::solve(H, g);
        }
        check(worst_gradient < 1e-12, "the engine's gradient equals X^T (p - y) / n at every iterate (max diff " +
                                          num("%.1e", worst_gradient) + ")");
        check(worst_hessian < 1e-10, "ad::hessian equals X^T S X / n at every iterate (max diff " +
                                         num("%.1e", worst_hessian) + ")");
        check(newton_steps >= 0 && newton_steps <= 10,
              "Newton reaches |g| < 1e-10 in a handful of steps: " + std::to_string(newton_steps));
        const double best = newton_loss.back();

        // Gradient descent with step 1/L, L = lambda_max(X^T X) / (4 n) >= lambda_max(H) since
        // p (1 - p) <= 1/4: the textbook step that guarantees descent.
        const Tensor<double> XtX = xt::linalg::dot(xt::transpose(data.X), data.X);
        const auto eig = xt::linalg::eigvalsh(XtX);
        const double L = xt::amax(eig)() / (4.0 * double(n));
        std::vector<double> gd_loss;
        w = xt::zeros<double>({d});
        int gd_steps = -1;
        const int gd_cap = 100000;
        for (int k = 0; k <= gd_cap; ++k) {
            const Tensor<double> g = gradient(data, w);
            if (k % 10 == 0) gd_loss.push_back(loss_value(data, w));
            if (norm2(g) < tol) {
                gd_steps = k;
                break;
            }
            w = w - g / L;
        }
        std::printf("gradient descent (step 1/L, L = %.4f): |g| < 1e-10 after %d steps\n", L, gd_steps);
        std::printf("Newton: %d steps; gradient descent: %d steps\n", newton_steps, gd_steps);
        check(gd_steps > 0, "gradient descent converges too (within " + std::to_string(gd_cap) + " steps)");
        check(gd_steps >= 100 && gd_steps > 10 * newton_steps,
              "gradient descent needs hundreds of steps where Newton needs a handful (" + std::to_string(gd_steps) +
                  " vs " + std::to_string(newton_steps) + ")");
        check(std::abs(loss_value(data, w) - best) < 1e-12, "both reach the same minimum");

        // L(w_k) - L* for both (L* the last Newton loss); zeros are plotted at 1e-17.
        {
            auto csv = examples::open_output(o.out + "/newton_logistic.csv", "newton_logistic");
            csv << "# method iteration loss_minus_best\n";
            for (std::size_t k = 0; k < newton_loss.size(); ++k)
                csv << "newton " << k << ' ' << std::max(newton_loss[k] - best, 1e-17) << '\n';
            csv << "\n\n";
            for (std::size_t k = 0; k < gd_loss.size(); ++k)
                csv << "gd " << 10 * k << ' ' << std::max(gd_loss[k] - best, 1e-17) << '\n';
            auto gp = examples::open_output(o.out + "/newton_logistic.gp", "newton_logistic");
            gp << "# Plots newton_logistic.csv. Run from its directory: gnuplot newton_logistic.gp\n"
                  "set terminal pngcairo size 800,500\n"
                  "set output 'newton_logistic.png'\n"
                  "set title 'Logistic regression: Newton (engine Hessian) vs gradient descent'\n"
                  "set logscale y\nset format y '10^{%L}'\nset logscale x\n"
                  "set xlabel 'iteration + 1 (log scale)'\nset ylabel 'L(w_k) - L*'\nset grid\n"
                  "plot 'newton_logistic.csv' index 0 using ($2+1):3 with linespoints lw 2 title 'Newton',"
                  " '' index 1 using ($2+1):3 with lines lw 2 title 'gradient descent (step 1/L)'\n";
        }
        if (o.plot) {
            if (examples::run_gnuplot(o.out, "newton_logistic.gp"))
                std::printf("plot: %s/newton_logistic.png\n", o.out.c_str());
            else
                std::printf("plot: gnuplot failed; the data are in %s/newton_logistic.csv\n", o.out.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "newton_logistic: %s\n", e.what());
        return 1;
    }
    if (examples::failures) std::printf("%d check(s) FAILED\n", examples::failures);
    return examples::failures ? 1 : 0;
}
