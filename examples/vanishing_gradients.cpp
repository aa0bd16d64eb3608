// Vanishing and exploding gradients lab (seeds 000, 001, 002, 004).
//
// The gradient reaching layer j of a deep network is a product of layer Jacobians
// J_k = dz(k)/dz(k-1) = diag(A'(W_k z(k-1) + b_k)) W_k (seed 000), one per layer above j. Its size
// therefore grows or shrinks geometrically with depth unless each factor has norm near one.
//
// 1. Gradient norms per layer. For every activation (sigmoid, tanh, ReLU), initialisation
//    (N(0, 1), Xavier N(0, 2/(n_in + n_out)), He N(0, 2/n_in)) and architecture (plain, with
//    residual connections z + A(W z + b), with layer norm before the activation, with both), one
//    deep MLP of constant width: ||dL/dW_j||_F for every layer j, L the mean network output over
//    a batch (a fixed cotangent, so only the Jacobians matter), geometric mean over random draws.
//    Written to vanishing_gradients.csv and plotted, one panel per architecture.
// 2. The seed 000 bound, layer by layer. For each layer Jacobian of the plain networks, computed
//    by the engine (ad::jacobian, one VJP row per output), ||J||_2 <= ||diag A'||_2 ||W||_2; the
//    program asserts it and reports how tight it is.
// 3. The EPFL bound (seed 004). Sigmoid layers x(l) = s(W(l)^T x(l-1) + b(l)) with 3 units each,
//    every weight in [-1, 1], and a linear output f = w^T x(L) + c with w in [-1, 1]^3. The
//    proof's steps, for the output layer and layers 2..L and the first layer's own derivative:
//        ||w||_2 <= sqrt 3,
//        ||dx(l)/dx(l-1)||_2 <= max s' ||W(l)||_2 <= 1/4 * 3 = 3/4,
//        |d x(1) / d W(1)_11| = |s'(.) x(0)_1| <= |x(0)_1| / 4,
//    so |df/dW(1)_11| <= sqrt 3 (3/4)^(L-1) |x(0)_1| / 4 = C (3/4)^L with C = |x(0)_1| / sqrt 3
//    (at most 1/sqrt 3 for inputs in [-1, 1]). The program draws many random networks (weights,
//    biases and inputs uniform on [-1, 1]) for every depth L, asserts the bound for each draw
//    with that draw's C, and checks ||W(l)||_2 <= 3 and ||J_l||_2 <= 3/4 for every layer.
//
// Usage: vanishing_gradients [--small] [--out DIR] [--no-plot]
//
// ctest-args: --small
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/init.hpp"
#include "nn/linear.hpp"
#include "nn/sequential.hpp"

#include <xtensor-blas/xlinalg.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
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

struct Sizes {
    std::size_t width, depth, batch, draws;       // part 1
    std::size_t epfl_depth, epfl_draws;           // part 3
};

const std::vector<nn::Activation> activations{nn::Activation::sigmoid, nn::Activation::tanh, nn::Activation::relu};
const std::vector<std::pair<nn::InitScheme, std::string>> inits{
    {nn::InitScheme::standard_normal, "N(0 1)"},  // no comma: it is a CSV field
    {nn::InitScheme::xavier_normal, "Xavier"},
    {nn::InitScheme::he_normal, "He"}};
struct Arch {
    bool residual, layer_norm;
    std::string name;
};
const std::vector<Arch> archs{{false, false, "plain"}, {true, false, "residual"}, {false, true, "layer norm"},
                              {true, true, "residual + layer norm"}};

std::shared_ptr<nn::Sequential<T>> make_mlp(nn::Activation act, nn::InitScheme init, const Arch& arch,
                                            const Sizes& s, nn::Rng& rng)
{
    nn::MLPOptions o;
    o.sizes.assign(s.depth + 1, s.width);  // input, then `depth` hidden layers of the same width
    o.sizes.push_back(1);                  // and a linear output
    o.activation = act;
    o.residual = arch.residual;
    o.layer_norm = arch.layer_norm;
    o.init = init;
    return nn::mlp<T>(o, rng);
}

// The weights of the Linear layers, first to last (LayerNorm's scale is named "weight" too).
std::vector<ad::Parameter<T>*> linear_weights(nn::Module<T>& m)
{
    std::vector<ad::Parameter<T>*> w;
    for (auto& [name, sub] : m.named_modules())
        if (auto* linear = dynamic_cast<nn::Linear<T>*>(sub)) w.push_back(&linear->weight());
    return w;
}

Tensor<T> gaussian(const ad::Shape& shape, nn::Rng& rng) { return nn::normal<T>(shape, 0, 1, rng); }

// ---------------------------------------------------------------------------------------------
// Part 1: ||dL/dW_j||_F per layer, geometric mean over draws; key "act,init,arch" -> norms.

using Curves = std::map<std::string, std::vector<T>>;

std::string key(nn::Activation a, const std::string& init, const Arch& arch)
{
    return nn::activation_name(a) + "," + init + "," + arch.name;
}

Curves gradient_norms(const Sizes& s, std::ofstream& csv)
{
    Curves curves;
    csv << "activation,init,architecture,layer,grad_norm\n";
    for (const auto& arch : archs)
        for (auto act : activations)
            for (const auto& [init, init_name] : inits) {
                std::vector<T> log_sum(s.depth + 1, 0);
                for (std::size_t d = 0; d < s.draws; ++d) {
                    nn::Rng rng(1000 * d + 17);
                    auto net = make_mlp(act, init, arch, s, rng);
                    const auto weights = linear_weights(*net);
                    if (weights.size() != log_sum.size())
                        throw ad::Error("vanishing_gradients: expected " + std::to_string(log_sum.size()) +
                                        " Linear layers, found " + std::to_string(weights.size()));
                    ad::Tape<T> tape;
                    net->zero_grad();
                    ad::backward(ad::mean((*net)(tape.constant(gaussian({s.batch, s.width}, rng)))));
                    for (std::size_t j = 0; j < weights.size(); ++j)
                        log_sum[j] += std::log(std::sqrt(xt::sum(xt::square(weights[j]->grad))()));
                }
                auto& c = curves[key(act, init_name, arch)];
                for (std::size_t j = 0; j <= s.depth; ++j) {
                    c.push_back(std::exp(log_sum[j] / T(s.draws)));
                    csv << nn::activation_name(act) << ',' << init_name << ',' << arch.name << ',' << j + 1 << ','
                        << c.back() << '\n';
                }
            }
    return curves;
}

// What part 1 must show, each for a reason that holds at any width and depth:
void check_gradient_norms(const Curves& curves, const Sizes& s)
{
    using A = nn::Activation;
    const std::size_t L = s.depth;
    const T w = T(s.width);
    // first layer / last hidden layer
    auto ratio = [&](A a, const std::string& init, std::size_t arch) {
        const auto& c = curves.at(key(a, init, archs[arch]));
        return c.front() / c[L - 1];
    };
    auto first = [&](A a, const std::string& init, std::size_t arch) { return curves.at(key(a, init, archs[arch])).front(); };
    auto close = [](T a, T b, T tol) { return std::abs(a / b - 1) <= tol; };

    // Sigmoid: A' <= 1/4, so with Xavier or He each factor has norm at most ||W||_2 / 4 < 1;
    // with N(0, 1) the units saturate (A' near 0). Either way the gradient shrinks toward the
    // input. The identity path of a residual block bypasses the factors.
    bool vanish = true, rescued = true;
    for (const auto& [scheme, init] : inits) {
        vanish = vanish && ratio(A::sigmoid, init, 0) < 1e-2;
        rescued = rescued && ratio(A::sigmoid, init, 1) > 10 * ratio(A::sigmoid, init, 0);
    }
    check(vanish, "sigmoid, plain: the first layer's gradient is below 1/100 of the last hidden layer's, for every init");
    check(rescued, "sigmoid: residual connections raise that ratio more than tenfold, for every init");

    // tanh with N(0, 1) weights (n times Xavier's variance): the mean per-layer gain of the
    // backward pass, n Var(W_ij) E[tanh'(v)^2], is well above 1, so the product grows.
    check(ratio(A::tanh, inits[0].second, 0) > 10,
          "tanh, plain, N(0,1): the gradient explodes toward the input (first/last = " +
              num("%.3g", ratio(A::tanh, inits[0].second, 0)) + ")");

    // ReLU with zero biases is positively homogeneous: scaling layer k's weights by a_k scales
    // the gradient of layer 1 by prod_{k >= 2} a_k and leaves the profile along depth unchanged.
    // The inits draw the same N(0, 1) numbers scaled by 1 (N(0,1)), 1/sqrt(n) (Xavier, hidden),
    // sqrt(2/(n+1)) (Xavier, output) and sqrt(2/n) (He), so exactly:
    //   g1(N(0,1)) / g1(He) = (n/2)^(L/2),  g1(Xavier) / g1(He) = 2^(-(L-1)/2) sqrt(n/(n+1)).
    const T he = first(A::relu, "He", 0);
    const T want_normal = std::pow(w / 2, T(L) / 2), want_xavier = std::pow(T(2), -(T(L) - 1) / 2) * std::sqrt(w / (w + 1));
    check(close(ratio(A::relu, inits[0].second, 0), ratio(A::relu, "He", 0), 1e-9) &&
              close(ratio(A::relu, "Xavier", 0), ratio(A::relu, "He", 0), 1e-9),
          "ReLU, plain: the same profile along depth for every init (positive homogeneity)");
    check(close(first(A::relu, inits[0].second, 0) / he, want_normal, 1e-9) &&
              close(first(A::relu, "Xavier", 0) / he, want_xavier, 1e-9),
          "ReLU, plain: layer-1 gradient under N(0,1) and Xavier is He's times (n/2)^(L/2) = " + num("%.3g", want_normal) +
              " and 2^(-(L-1)/2) sqrt(n/(n+1)) = " + num("%.3g", want_xavier) + ", to 1e-9");

    // Layer norm right after each Linear makes the output invariant to the scale of every hidden
    // weight matrix; N(0, 1) and He differ only by that scale, so their gradients agree (up to
    // the eps inside the norm).
    bool invariant = true;
    for (std::size_t arch : {2, 3})
        for (A a : activations) invariant = invariant && close(ratio(a, inits[0].second, arch), ratio(a, "He", arch), 1e-3);
    check(invariant, "layer norm: the profile along depth does not depend on the init's scale (N(0,1) vs He, to 1e-3)");

    // Residual connections plus layer norm keep every setting's gradient within two orders of
    // magnitude from the last hidden layer to the first.
    bool stable = true;
    for (A a : activations)
        for (const auto& [scheme, init] : inits) stable = stable && ratio(a, init, 3) > 1e-2 && ratio(a, init, 3) < 1e2;
    check(stable, "residual + layer norm: first/last within [1e-2, 1e2] for every activation and init");
}

// ---------------------------------------------------------------------------------------------
// Part 2: each layer Jacobian of the plain networks against ||diag A'|| ||W||.

// max_i |A'(v_i)|: the 2-norm of the diagonal matrix diag(A'(v)).
T max_derivative(nn::Activation act, const Tensor<T>& v)
{
    T m = 0;
    for (T x : v) {
        T d = 0;
        if (act == nn::Activation::sigmoid) {
            const T s = 1 / (1 + std::exp(-x));
            d = s * (1 - s);
        } else if (act == nn::Activation::tanh) {
            d = 1 - std::tanh(x) * std::tanh(x);
        } else {
            d = x > 0 ? 1 : 0;  // the engine's relu'(0) = 0
        }
        m = std::max(m, d);
    }
    return m;
}

void jacobian_bounds(const Sizes& s, std::ofstream& csv)
{
    csv << "activation,init,layer,jacobian_norm,bound\n";
    std::size_t checked = 0;
    T worst = 0, mean_ratio = 0;
    for (auto act : activations)
        for (const auto& [init, init_name] : inits) {
            nn::Rng rng(99);
            auto net = make_mlp(act, init, archs[0], s, rng);
            auto& seq = *net;  // children: Linear, activation, Linear, activation, ..., Linear
            Tensor<T> z = gaussian({s.width}, rng);
            for (std::size_t j = 0; j < s.depth; ++j) {
                auto& linear = dynamic_cast<nn::Linear<T>&>(seq[2 * j]);
                auto& activation = seq[2 * j + 1];
                const Tensor<T> J = ad::jacobian<T>([&](const Var<T>& x) { return activation(linear(x)); }, z);
                ad::Tape<T> tape;
                const Tensor<T> v = linear(tape.constant(z)).value();
                const T norm = nn::spectral_norm<T>(J);
                const T bound = max_derivative(act, v) * nn::spectral_norm<T>(linear.weight().value());
                csv << nn::activation_name(act) << ',' << init_name << ',' << j + 1 << ',' << norm << ',' << bound << '\n';
                ++checked;
                if (bound > 0) {
                    worst = std::max(worst, norm / bound);
                    mean_ratio += norm / bound;
                } else {
                    worst = std::max(worst, norm > 0 ? T(INFINITY) : T(0));  // every unit off: J = 0
                }
                z = activation(linear(tape.constant(z))).value();
            }
        }
    check(worst <= 1 + 1e-12, std::to_string(checked) + " layer Jacobians dz(j)/dz(j-1) of the plain nets satisfy ||J||_2 <= "
                                  "||diag A'||_2 ||W||_2 (largest ratio " + num("%.4f", worst) + ", mean " +
                                  num("%.3f", mean_ratio / T(checked)) + ")");
}

// ---------------------------------------------------------------------------------------------
// Part 3: the EPFL bound.

struct EpflRow {
    T max_grad = 0, median_grad = 0, max_ratio = 0;  // ratio: |df/dW11| / (C (3/4)^L)
};

std::vector<EpflRow> epfl(const Sizes& s, std::ofstream& csv)
{
    const std::size_t Lmax = s.epfl_depth;
    std::vector<std::vector<T>> grads(Lmax + 1);
    std::vector<EpflRow> rows(Lmax + 1);
    std::mt19937_64 rng(404);
    std::uniform_real_distribution<T> u(-1, 1);
    auto uniform = [&](const ad::Shape& shape) {
        Tensor<T> t = Tensor<T>::from_shape(shape);
        for (auto& v : t) v = u(rng);
        return t;
    };
    std::size_t violations = 0, layers_checked = 0;
    T worst_w = 0, worst_j = 0;
    for (std::size_t d = 0; d < s.epfl_draws; ++d) {
        // One network of depth Lmax; the depth-L network is its first L layers with the output
        // layer on x(L), so one tape serves every L (each f_L is recorded right after layer L,
        // and a sweep from f_L visits only what precedes it).
        const Tensor<T> x0 = uniform({1, 3});
        const Tensor<T> w = uniform({3}), c = uniform({});
        std::vector<Tensor<T>> W, b;
        for (std::size_t l = 0; l < Lmax; ++l) {
            W.push_back(uniform({3, 3}));
            b.push_back(uniform({3}));
        }
        ad::Tape<T> tape;
        const auto W1 = tape.variable(W[0]);
        const auto wv = tape.constant(w), cv = tape.constant(c);
        Var<T> x = tape.constant(x0);
        std::vector<Var<T>> f;
        std::vector<Tensor<T>> xs{x0};
        for (std::size_t l = 0; l < Lmax; ++l) {
            // x(l) = s(W(l)^T x(l-1) + b(l)); with x a row vector, x W + b.
            x = ad::sigmoid(ad::matmul(x, l == 0 ? W1 : tape.constant(W[l])) + tape.constant(b[l]));
            xs.push_back(x.value());
            f.push_back(ad::sum(x * wv) + cv);
        }
        const T C = std::abs(x0(0, 0)) / std::sqrt(T(3));
        for (std::size_t L = 1; L <= Lmax; ++L) {
            const T g = std::abs(ad::grad(f[L - 1], {W1})[0](0, 0));
            const T bound = C * std::pow(T(0.75), T(L));
            grads[L].push_back(g);
            rows[L].max_ratio = std::max(rows[L].max_ratio, bound > 0 ? g / bound : T(0));
            if (g > bound * (1 + 1e-12)) ++violations;
        }
        // The proof's two per-layer facts, for every layer of this draw: ||W||_2 <= 3 and the
        // Jacobian of x(l) in x(l-1) (from the engine) has 2-norm <= 3/4.
        for (std::size_t l = 0; l < Lmax; ++l) {
            worst_w = std::max(worst_w, nn::spectral_norm<T>(W[l]));
            const Tensor<T> J = ad::jacobian<T>(
                [&](const Var<T>& v) { return ad::sigmoid(ad::matmul(v, v.tape().constant(W[l])) + v.tape().constant(b[l])); },
                xs[l]);
            worst_j = std::max(worst_j, nn::spectral_norm<T>(Tensor<T>(xt::reshape_view(J, {3, 3}))));
            ++layers_checked;
        }
    }
    csv << "L,max_grad,median_grad,bound_max_C,max_ratio_to_bound\n";
    for (std::size_t L = 1; L <= Lmax; ++L) {
        auto& g = grads[L];
        std::sort(g.begin(), g.end());
        rows[L].max_grad = g.back();
        rows[L].median_grad = g[g.size() / 2];
        csv << L << ',' << rows[L].max_grad << ',' << rows[L].median_grad << ','
            << std::pow(T(0.75), T(L)) / std::sqrt(T(3)) << ',' << rows[L].max_ratio << '\n';
    }
    // The typical decay per layer, from the medians: far below the worst case 3/4.
    const T rate = std::pow(rows[Lmax].median_grad / rows[1].median_grad, T(1) / T(Lmax - 1));
    std::printf("  median |df/dW(1)_11| shrinks by a factor %.3f per layer (the bound allows 0.75)\n", rate);
    T worst_ratio = 0;
    for (std::size_t L = 1; L <= Lmax; ++L) worst_ratio = std::max(worst_ratio, rows[L].max_ratio);
    check(violations == 0, std::to_string(s.epfl_draws) + " random networks at every depth 1.." + std::to_string(Lmax) +
                               ": |df/dW(1)_11| <= C (3/4)^L with C = |x(0)_1|/sqrt 3 every time (largest ratio to the bound " +
                               num("%.3f", worst_ratio) + ")");
    check(worst_w <= 3 + 1e-12, "||W(l)||_2 <= 3 for every 3x3 weight in [-1, 1] (largest " + num("%.3f", worst_w) + ")");
    check(worst_j <= 0.75 + 1e-12, std::to_string(layers_checked) + " layer Jacobians: ||dx(l)/dx(l-1)||_2 <= 3/4 (largest " +
                                       num("%.3f", worst_j) + ")");
    return rows;
}

// ---------------------------------------------------------------------------------------------

void write_plots(const std::string& out, std::size_t depth)
{
    std::ofstream gp = examples::open_output(out + "/vanishing_gradients.gp", "vanishing_gradients");
    gp << "# Plots the CSV files vanishing_gradients wrote. Run from their directory: gnuplot vanishing_gradients.gp\n"
          "pngcairo = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0\n"
          "if (pngcairo) { set terminal pngcairo size 1200,900 font 'sans,10' } else { set terminal png size 1200,900 }\n"
          "set output 'vanishing_gradients.png'\n"
          "set datafile separator ','\n"
          "acts = 'sigmoid tanh relu'\n"
          "inits = 'N(0 1)|Xavier|He'\n"
          "init(i) = i == 1 ? 'N(0 1)' : i == 2 ? 'Xavier' : 'He'\n"
          "initlabel(i) = i == 1 ? 'N(0,1)' : init(i)\n"
          "archs = 'plain|residual|layer norm|residual + layer norm'\n"
          "arch(k) = k == 1 ? 'plain' : k == 2 ? 'residual' : k == 3 ? 'layer norm' : 'residual + layer norm'\n"
          "set multiplot layout 2,2 title 'Gradient norm ||dL/dW_j||_F per layer, "
       << depth
       << " hidden layers (colour: activation, line: initialisation)'\n"
          "set logscale y\nset format y '10^{%L}'\nset grid\nset xlabel 'layer j (1 = first, "
       << depth + 1
       << " = output)'\n"
          "set ylabel 'gradient norm'\nset key outside right top spacing 0.9 font ',8'\n"
          "do for [k=1:4] {\n"
          "  set title arch(k).(k >= 3 ? ' (N(0,1) and He coincide)' : '')\n"
          "  plot for [a=1:3] for [i=1:3] 'vanishing_gradients.csv' skip 1 "
          "using 4:(strcol(1) eq word(acts,a) && strcol(2) eq init(i) && strcol(3) eq arch(k) ? $5 : NaN) "
          "with lines lw 2 lc a dt i title word(acts,a).' '.initlabel(i)\n"
          "}\n"
          "unset multiplot\n"
          "set output 'epfl_bound.png'\n"
          "if (pngcairo) { set terminal pngcairo size 800,480 font 'sans,10' } else { set terminal png size 800,480 }\n"
          "set title 'Sigmoid, 3 units per layer, weights in [-1,1]: gradient w.r.t. a first-layer weight'\n"
          "set xlabel 'depth L'\nset ylabel '|df/dW^{(1)}_{11}|'\nset key inside top right\n"
          "plot 'epfl_bound.csv' skip 1 using 1:4 with lines lw 2 dt 2 lc 'black' title 'bound (3/4)^L / sqrt 3', "
          "'' skip 1 using 1:2 with linespoints pt 7 ps 0.6 lc 1 title 'largest over the draws', "
          "'' skip 1 using 1:3 with linespoints pt 6 ps 0.6 lc 2 title 'median over the draws'\n";
    gp.close();
    if (examples::run_gnuplot(out, "vanishing_gradients.gp"))
        std::printf("plots: %s/vanishing_gradients.png, %s/epfl_bound.png\n", out.c_str(), out.c_str());
    else
        std::printf("plots: gnuplot failed; the data are in %s/*.csv\n", out.c_str());
}

}  // namespace

int main(int argc, char** argv)
{
    const auto options = examples::parse_lab_options(
        argc, argv, "vanishing_gradients", "shallower, narrower networks and fewer draws",
        "the CSV files and PNGs");
    const bool small = options.small, plot = options.plot;
    const std::string& out = options.out;
    const Sizes s = small ? Sizes{16, 12, 8, 2, 12, 200} : Sizes{64, 40, 32, 5, 40, 2000};
    const auto t0 = std::chrono::steady_clock::now();

    std::printf("1. Gradient norms per layer: %zu hidden layers of width %zu, batch %zu, %zu draws each\n", s.depth,
                s.width, s.batch, s.draws);
    std::ofstream csv1 = examples::open_output(out + "/vanishing_gradients.csv", "vanishing_gradients");
    const Curves curves = gradient_norms(s, csv1);
    csv1.close();
    std::printf("  %-22s %-8s %-8s %12s %12s %12s\n", "architecture", "act", "init", "layer 1", "last hidden", "ratio");
    for (const auto& arch : archs)
        for (auto act : activations)
            for (const auto& init : inits) {
                const auto& c = curves.at(key(act, init.second, arch));
                std::printf("  %-22s %-8s %-8s %12.3e %12.3e %12.3e\n", arch.name.c_str(), nn::activation_name(act).c_str(),
                            init.first == nn::InitScheme::standard_normal ? "N(0,1)" : init.second.c_str(), c.front(),
                            c[s.depth - 1], c.front() / c[s.depth - 1]);
            }
    check_gradient_norms(curves, s);
    std::printf("\n2. Layer Jacobians against the bound ||diag A'||_2 ||W||_2 (seed 000)\n");
    std::ofstream csv2 = examples::open_output(out + "/layer_jacobians.csv", "vanishing_gradients");
    jacobian_bounds(s, csv2);
    csv2.close();

    std::printf("\n3. The EPFL bound (seed 004): %zu random networks of depth %zu; the depth-L network is the first L\n"
                "   layers of one of them with the output layer on top\n", s.epfl_draws, s.epfl_depth);
    std::ofstream csv3 = examples::open_output(out + "/epfl_bound.csv", "vanishing_gradients");
    epfl(s, csv3);
    csv3.close();

    if (plot) write_plots(out, s.depth);
    std::printf("(%.1f s)\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (failures) {
        std::printf("%d check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
