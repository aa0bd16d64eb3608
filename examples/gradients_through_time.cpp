// Gradients through time lab (seeds 000, 004).
//
// Unrolled over T steps, a recurrent network is a T-layer deep network whose layers share one
// weight matrix, so seed 000's chain of layer Jacobians applies with every factor the same
// kind: for the tanh RNN h_t = tanh(W_ih x_t + W_hh h_{t-1} + b),
//     dh_t/dh_{t-1} = diag(1 - h_t^2) W_hh,   ||dh_t/dh_{t-1}||_2 <= ||diag tanh'||_2 ||W_hh||_2 <= ||W_hh||_2
// (seed 000: the layer Jacobian's 2-norm is at most ||diag A'|| ||W||, and tanh' <= 1), and
//     dh_t/dx_t = diag(1 - h_t^2) W_ih,     ||dh_t/dx_t||_2 <= ||W_ih||_2.
// For a loss L on the last output h_T, dL/dx_t = dL/dh_T (prod of T - t recurrent Jacobians)
// dh_t/dx_t, hence
//     ||dL/dx_t|| <= ||dL/dh_T|| ||W_hh||_2^(T-t) ||W_ih||_2.
// With sigmoid instead of tanh every diag(A') is at most 1/4 (seed 000's sigmoid bound, the
// factor behind seed 004's (3/4)^L with ||W||_2 <= 3), so
//     ||dL/dx_t|| <= ||dL/dh_T|| (||W_hh||_2 / 4)^(T-t) ||W_ih||_2 / 4.
// The lab measures ||dL/dx_t|| against the lag T - t for
//   - nn::RNN (tanh), nn::LSTM and nn::GRU, one layer, and a sigmoid RNN unrolled by hand,
//   - at PyTorch's default initialisation and with each H x H recurrent block of W_hh (one per
//     gate) scaled to spectral norm 0.5, 1 and 2,
// prints the norms at a few lags and the mean decay factor per step (the geometric mean of
// ||dL/dx_{t-1}|| / ||dL/dx_t|| over the lags before underflow; reported, not bounded: the
// bound caps each norm, not the ratio of two), writes gradients_through_time.dat and plots it, and checks both
// RNN bounds at every lag. The LSTM and GRU have no such bound from these seeds: their cell
// (or interpolated) state passes gradients on through f_t (or z_t) elementwise, with no W_hh
// factor, so their decay depends much less on ||W_hh||_2; at PyTorch's default the gates start
// near sigmoid(0) = 1/2, and so does the factor per step.
//
// Usage: gradients_through_time [--small] [--out DIR] [--no-plot]
//
// ctest-args: --small --no-plot
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/init.hpp"
#include "nn/recurrent.hpp"

#include <xtensor-blas/xlinalg.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
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

struct Sizes {
    std::size_t input, hidden, steps;
};

// The largest singular value by power iteration on W^T W, from a fixed start vector, until the
// estimate stops changing; the bounds use the exact value (nn::spectral_norm, an SVD), which
// the estimate must reproduce.
T power_iteration(const Tensor<T>& W)
{
    Tensor<T> v = xt::ones<T>({W.shape()[1]});
    v /= std::sqrt(T(v.size()));
    T sigma = 0;
    for (int i = 0; i < 100000; ++i) {
        Tensor<T> u = xt::linalg::dot(W, v);
        Tensor<T> w = xt::linalg::dot(xt::transpose(W), u);
        const T n = std::sqrt(xt::sum(xt::square(w))());
        if (n == 0) return 0;
        v = w / n;
        const T next = std::sqrt(n);  // ||W^T W v|| -> sigma^2 for the top singular vector v
        if (std::abs(next - sigma) <= 1e-15 * next) return next;
        sigma = next;
    }
    return sigma;
}

struct Init {
    std::string name;
    T scale;  // spectral norm of every recurrent block; 0: PyTorch's default
};

struct Curve {
    std::string model, init;
    std::vector<T> norms;  // ||dL/dx_t|| at lag T - t, index = lag
    T w_hh = 0, w_ih = 0;  // spectral norms (of W_hh's largest block and of W_ih)
    T decay = 0;           // mean factor per step
};

// Scales each H x H gate block of W_hh to spectral norm s.
void scale_recurrent(ad::Parameter<T>& W_hh, std::size_t hidden, T s)
{
    Tensor<T> W = W_hh.value();
    for (std::size_t g = 0; g < W.shape()[0] / hidden; ++g) {
        auto block = xt::view(W, xt::range(g * hidden, (g + 1) * hidden), xt::all());
        const Tensor<T> scaled = nn::scale_to_spectral_norm<T>(Tensor<T>(block), s);
        block = scaled;
    }
    W_hh.set_value(W);
}

T largest_block_norm(const Tensor<T>& W, std::size_t hidden)
{
    T m = 0;
    for (std::size_t g = 0; g < W.shape()[0] / hidden; ++g)
        m = std::max(m, nn::spectral_norm<T>(Tensor<T>(xt::view(W, xt::range(g * hidden, (g + 1) * hidden), xt::all()))));
    return m;
}

// The geometric mean of norms[k+1] / norms[k] over the lags where both are above the smallest
// normal double (past that the gradient has underflowed).
T decay_rate(const std::vector<T>& norms)
{
    T log_sum = 0;
    std::size_t n = 0;
    for (std::size_t k = 0; k + 1 < norms.size(); ++k)
        if (norms[k] > 1e-300 && norms[k + 1] > 1e-300) {
            log_sum += std::log(norms[k + 1] / norms[k]);
            ++n;
        }
    return n ? std::exp(log_sum / T(n)) : T(0);
}

// ||dL/dx_t|| per lag for L = w . h_T, x one sequence [1, T, I]; `run` maps x to the hidden
// states [1, T, H].
template <class Run>
std::vector<T> gradient_by_lag(const Tensor<T>& x, const Tensor<T>& w, Run run)
{
    ad::Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> out = run(xv);
    const std::size_t steps = x.shape()[1];
    const Var<T> last = ad::select(out, 1, static_cast<std::ptrdiff_t>(steps - 1));  // [1, H]
    const Tensor<T> g = ad::grad(ad::sum(last * tape.constant(w)), {xv})[0];
    std::vector<T> norms(steps);
    for (std::size_t t = 0; t < steps; ++t)
        norms[steps - 1 - t] = std::sqrt(xt::sum(xt::square(xt::view(g, 0, t, xt::all())))());
    return norms;
}

// The checks of one RNN curve against its bound C r^lag (r = ||W_hh||_2 times the activation's
// largest derivative, C = ||w|| ||W_ih||_2 times it too). Returns the largest ratio to the bound.
T check_bound(const Curve& c, T act_max, T w_norm, std::size_t& violations)
{
    T worst = 0;
    for (std::size_t lag = 0; lag < c.norms.size(); ++lag) {
        const T bound = w_norm * std::pow(act_max * c.w_hh, T(lag)) * act_max * c.w_ih;
        if (c.norms[lag] > bound * (1 + 1e-12)) ++violations;
        if (bound > 0 && std::isfinite(bound)) worst = std::max(worst, c.norms[lag] / bound);
    }
    return worst;
}

void write_plot(const std::string& out, const std::vector<Curve>& curves, const std::vector<Init>& inits)
{
    std::ofstream gp = examples::open_output(out + "/gradients_through_time.gp", "gradients_through_time");
    gp << "# Plots gradients_through_time.dat. Run from its directory: gnuplot gradients_through_time.gp\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1200,800 font 'sans,10' } "
          "else { set terminal png size 1200,800 }\n"
          "set output 'gradients_through_time.png'\n"
          "set logscale y\nset format y '10^{%L}'\nset grid\nset yrange [1e-60:1e5]\n"
          "set xlabel 'lag T - t'\nset ylabel '||dL/dx_t||'\nset key bottom left font ',8'\n"
          "set multiplot layout 2,2 title 'Gradient reaching the input t steps before the loss (loss on the last output)'\n";
    const std::vector<std::string> models{"RNN (tanh)", "RNN (sigmoid)", "LSTM", "GRU"};
    std::size_t block = 0;
    for (const auto& m : models) {
        gp << "set title '" << m << "'\nplot ";
        for (std::size_t i = 0; i < inits.size(); ++i)
            gp << (i ? ", " : "") << "'gradients_through_time.dat' index " << block + i
               << " using 1:2 with lines lw 2 lc " << i + 1 << " title '" << inits[i].name << "' noenhanced";
        gp << "\n";
        block += inits.size();
    }
    gp << "unset multiplot\n";
    gp.close();
    (void)curves;
    if (examples::run_gnuplot(out, "gradients_through_time.gp"))
        std::printf("plot: %s/gradients_through_time.png\n", out.c_str());
    else
        std::printf("plot: gnuplot failed; the data are in %s/gradients_through_time.dat\n", out.c_str());
}

}  // namespace

int main(int argc, char** argv)
{
    const auto options = examples::parse_lab_options(argc, argv, "gradients_through_time",
                                                     "hidden size 16 and 30 steps", "the .dat file and the plot");
    const Sizes s = options.small ? Sizes{4, 16, 30} : Sizes{8, 32, 100};
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<Init> inits{{"PyTorch default", 0}, {"||W_hh||=0.5", 0.5}, {"||W_hh||=1", 1}, {"||W_hh||=2", 2}};

    nn::Rng data_rng(7);
    const Tensor<T> x = nn::normal<T>({1, s.steps, s.input}, 0, 1, data_rng);
    const Tensor<T> w = nn::normal<T>({1, s.hidden}, 0, 1, data_rng);  // dL/dh_T
    const T w_norm = std::sqrt(xt::sum(xt::square(w))());

    std::printf("Gradient of L = w . h_T with respect to each input x_t, one sequence of %zu steps, input size %zu, "
                "hidden size %zu\n\n", s.steps, s.input, s.hidden);
    std::vector<Curve> curves;
    std::size_t violations = 0, checked = 0;
    T worst_tanh = 0, worst_sigmoid = 0, worst_power = 0;

    for (const std::string model : {"RNN (tanh)", "RNN (sigmoid)", "LSTM", "GRU"})
        for (const auto& init : inits) {
            nn::Rng rng(11);
            std::shared_ptr<nn::RecurrentBase<T>> net;
            // The sigmoid RNN reads the parameters of an nn::RNN and unrolls its own cell.
            if (model == "LSTM") net = std::make_shared<nn::LSTM<T>>(s.input, s.hidden, rng);
            else if (model == "GRU") net = std::make_shared<nn::GRU<T>>(s.input, s.hidden, rng);
            else net = std::make_shared<nn::RNN<T>>(s.input, s.hidden, rng);
            if (init.scale > 0) scale_recurrent(net->weight_hh(0), s.hidden, init.scale);

            Curve c{model, init.name, {}, 0, 0, 0};
            const Tensor<T>& W_hh = net->weight_hh(0).value();
            c.w_hh = model.rfind("RNN", 0) == 0 ? nn::spectral_norm<T>(W_hh) : largest_block_norm(W_hh, s.hidden);
            c.w_ih = nn::spectral_norm<T>(net->weight_ih(0).value());
            worst_power = std::max({worst_power, std::abs(power_iteration(net->weight_ih(0).value()) / c.w_ih - 1)});
            if (model.rfind("RNN", 0) == 0)
                worst_power = std::max(worst_power, std::abs(power_iteration(W_hh) / c.w_hh - 1));

            if (model == "RNN (sigmoid)") {
                auto& rnn = *net;
                c.norms = gradient_by_lag(x, w, [&](const Var<T>& xv) {
                    auto& tape = xv.tape();
                    const Var<T> W_ih = tape.param(rnn.weight_ih(0)), W_hh_v = tape.param(rnn.weight_hh(0));
                    const Var<T> b = tape.param(*rnn.bias_ih(0)) + tape.param(*rnn.bias_hh(0));
                    Var<T> h = tape.constant(Tensor<T>(xt::zeros<T>({std::size_t(1), s.hidden})));
                    std::vector<Var<T>> hs;
                    for (std::size_t t = 0; t < s.steps; ++t) {
                        const Var<T> xt_ = ad::select(xv, 1, static_cast<std::ptrdiff_t>(t));
                        h = ad::sigmoid(ad::affine(xt_, W_ih, b) + ad::matmul(h, W_hh_v, ad::transpose_b));
                        hs.push_back(ad::reshape(h, ad::Shape{1, 1, s.hidden}));
                    }
                    return ad::concat(hs, 1);
                });
            } else {
                c.norms = gradient_by_lag(x, w, [&](const Var<T>& xv) { return (*net)(xv); });
            }
            c.decay = decay_rate(c.norms);
            if (model == "RNN (tanh)") worst_tanh = std::max(worst_tanh, check_bound(c, 1, w_norm, violations));
            if (model == "RNN (sigmoid)") worst_sigmoid = std::max(worst_sigmoid, check_bound(c, 0.25, w_norm, violations));
            if (model.rfind("RNN", 0) == 0) checked += c.norms.size();
            curves.push_back(c);
        }

    const std::vector<std::size_t> lags{0, 1, 5, 10, 25, 50, s.steps - 1};
    std::printf("%-14s %-16s %8s %8s %9s", "model", "init", "||W_hh||", "||W_ih||", "decay/step");
    for (auto lag : lags)
        if (lag < s.steps) std::printf(" %9s", ("lag " + std::to_string(lag)).c_str());
    std::printf("\n");
    for (const auto& c : curves) {
        std::printf("%-14s %-16s %8.3f %8.3f %9.3f", c.model.c_str(), c.init.c_str(), c.w_hh, c.w_ih, c.decay);
        for (auto lag : lags)
            if (lag < s.steps) std::printf(" %9.2e", c.norms[lag]);
        std::printf("\n");
    }
    std::printf("(LSTM and GRU: ||W_hh|| is the largest of the gate blocks' norms)\n\n");

    std::ofstream dat = examples::open_output(options.out + "/gradients_through_time.dat", "gradients_through_time");
    for (const auto& c : curves) {
        dat << "# " << c.model << ", " << c.init << ": lag, ||dL/dx_t||\n";
        for (std::size_t lag = 0; lag < c.norms.size(); ++lag) dat << lag << ' ' << c.norms[lag] << '\n';
        dat << "\n\n";
    }
    dat.close();

    check(worst_power <= 1e-9, "power iteration reproduces every spectral norm used in a bound to 1e-9 (largest relative "
                               "difference " + num("%.1e", worst_power) + ")");
    check(violations == 0, std::to_string(checked) + " RNN gradients, every lag and init: ||dL/dx_t|| <= ||dL/dh_T|| "
                           "(m ||W_hh||_2)^(T-t) m ||W_ih||_2 with m = 1 for tanh, 1/4 for sigmoid (largest ratio to "
                           "the bound " + num("%.3g", worst_tanh) + " tanh, " + num("%.3g", worst_sigmoid) + " sigmoid)");
    if (options.plot) write_plot(options.out, curves, inits);
    std::printf("(%.1f s)\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (failures) {
        std::printf("%d check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
