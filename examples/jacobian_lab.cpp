// Jacobian lab: the chain rule as a product of matrices, computed by the engine.
//
// A network z(0) = x, z(j) = A(W_j z(j-1) + b_j) is a composition, so its Jacobian is the
// product of the layer Jacobians (seeds 000, 002):
//
//     dz(K)/dx = J_K J_{K-1} ... J_1,   J_j = dz(j)/dz(j-1) = diag(A'(W_j z(j-1) + b_j)) W_j.
//
// 1. The full Jacobian of a small tanh network, built by the engine one VJP row per output
//    (ad::jacobian), agrees with central differences.
// 2. Each layer Jacobian from the engine equals the formula diag(A') W.
// 3. The product of the layer Jacobians equals the end-to-end Jacobian (to 1e-12, in double).
// 4. Singular values bound the product (seed 001): ||J||_2 <= prod_j ||J_j||_2 and, the layers
//    being square, sigma_min(J) >= prod_j sigma_min(J_j).
// 5. The same for a wider, deeper tanh network under three initialisations (N(0, 1), Xavier,
//    orthogonal): the singular values of each layer, and the largest and smallest singular value
//    of the partial products dz(j)/dx against depth, written to CSV and plotted. Singular values
//    above one stretch the product, below one shrink it (seed 000).
//
// Usage: jacobian_lab [--small] [--out DIR] [--no-plot]
//
// ctest-args: --small
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/init.hpp"
#include "nn/linear.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xmanipulation.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
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

// z -> tanh(W z + b) for hidden layers, z -> W z + b for the last: a layer of the seeds' form
// acting on one example, a vector.
struct Layer {
    std::shared_ptr<nn::Linear<T>> linear;
    bool tanh;
    Var<T> operator()(const Var<T>& z) const
    {
        auto v = (*linear)(z);
        return tanh ? ad::tanh(v) : v;
    }
};

std::vector<Layer> make_net(std::size_t width, std::size_t depth, const nn::WeightInit<T>& init, nn::Rng& rng)
{
    std::vector<Layer> net;
    for (std::size_t j = 0; j < depth; ++j) {
        auto lin = std::make_shared<nn::Linear<T>>(width, width, rng, init);
        // Small random biases, so that no layer sits exactly at tanh(0).
        std::normal_distribution<T> d(0, 0.1);
        for (auto& b : lin->bias()->mutable_value()) b = d(rng);
        net.push_back({lin, j + 1 < depth});
    }
    return net;
}

Var<T> run(const std::vector<Layer>& net, Var<T> z, std::size_t upto)
{
    for (std::size_t j = 0; j < upto; ++j) z = net[j](z);
    return z;
}

Tensor<T> value(const std::vector<Layer>& net, const Tensor<T>& x)
{
    ad::Tape<T> tape;
    ad::NoGrad no_grad;
    return run(net, tape.constant(x), net.size()).value();
}

// dz(k)/dx by central differences, column by column.
Tensor<T> jacobian_fd(const std::vector<Layer>& net, const Tensor<T>& x, T eps)
{
    const std::size_t n = x.size(), m = value(net, x).size();
    Tensor<T> J = Tensor<T>::from_shape({m, n});
    for (std::size_t i = 0; i < n; ++i) {
        Tensor<T> up = x, down = x;
        up(i) += eps;
        down(i) -= eps;
        const Tensor<T> col = (value(net, up) - value(net, down)) / (2 * eps);
        for (std::size_t r = 0; r < m; ++r) J(r, i) = col(r);
    }
    return J;
}

Tensor<T> singular_values(const Tensor<T>& M) { return std::get<1>(xt::linalg::svd(M, false, false)); }

T max_abs(const Tensor<T>& a) { return a.size() ? xt::amax(xt::abs(a))() : T(0); }

// Layer Jacobians J_j at the point the forward pass reaches, each from the engine.
struct Chain {
    std::vector<Tensor<T>> layer;    // J_j = dz(j)/dz(j-1)
    std::vector<Tensor<T>> partial;  // P_j = J_j ... J_1 = dz(j)/dx, as a product
    std::vector<Tensor<T>> inputs;   // z(j-1)
};

Chain chain(const std::vector<Layer>& net, const Tensor<T>& x)
{
    Chain c;
    Tensor<T> z = x;
    for (const auto& layer : net) {
        c.inputs.push_back(z);
        c.layer.push_back(ad::jacobian<T>(layer, z));
        c.partial.push_back(c.partial.empty() ? c.layer.back()
                                              : Tensor<T>(xt::linalg::dot(c.layer.back(), c.partial.back())));
        ad::Tape<T> tape;
        z = layer(tape.constant(z)).value();
    }
    return c;
}

// Parts 1-4 on a small square network.
void small_network(std::size_t width, std::size_t depth)
{
    std::printf("A %zu-layer tanh network of width %zu (last layer linear), one input x:\n", depth, width);
    nn::Rng rng(7);
    const auto net = make_net(width, depth, nn::xavier_normal<T>, rng);
    const Tensor<T> x = nn::normal<T>({width}, 0, 1, rng);

    // 1. The whole Jacobian from VJP rows, and from central differences.
    const Tensor<T> J = ad::jacobian<T>([&](const Var<T>& v) { return run(net, v, depth); }, x);
    const Tensor<T> Jfd = jacobian_fd(net, x, 1e-6);
    const T fd_err = max_abs(J - Jfd);
    check(J.shape() == ad::Shape{width, width} && fd_err < 1e-8,
          "Jacobian from VJP rows matches central differences (max |difference| " + num("%.2e", fd_err) + ")");

    // 2. Each layer Jacobian is diag(A'(v)) W.
    const Chain c = chain(net, x);
    T formula_err = 0;
    for (std::size_t j = 0; j < depth; ++j) {
        const auto& W = net[j].linear->weight().value();
        const auto& b = net[j].linear->bias()->value();
        const Tensor<T> v = xt::linalg::dot(W, c.inputs[j]) + b;
        const Tensor<T> dA = net[j].tanh ? Tensor<T>(1 - xt::square(xt::tanh(v))) : Tensor<T>(xt::ones<T>(v.shape()));
        const Tensor<T> expected = xt::view(dA, xt::all(), xt::newaxis()) * W;
        formula_err = std::max(formula_err, max_abs(c.layer[j] - expected));
    }
    check(formula_err < 1e-13, "each layer Jacobian equals diag(A'(W z + b)) W (max |difference| " +
                                   num("%.2e", formula_err) + ")");

    // 3. The chain rule as a matrix product.
    const T chain_err = max_abs(c.partial.back() - J);
    check(chain_err < 1e-12, "J_K ... J_1 equals the end-to-end Jacobian (max |difference| " + num("%.2e", chain_err) + ")");

    // 4. Singular values.
    T prod_max = 1, prod_min = 1;
    std::printf("  layer  singular values of J_j\n");
    for (std::size_t j = 0; j < depth; ++j) {
        const Tensor<T> s = singular_values(c.layer[j]);
        prod_max *= s(0);
        prod_min *= s(s.size() - 1);
        std::printf("  %5zu ", j + 1);
        for (auto v : s) std::printf(" %.3f", v);
        std::printf("\n");
    }
    const Tensor<T> s = singular_values(J);
    std::printf("  whole  ");
    for (auto v : s) std::printf(" %.3f", v);
    std::printf("\n");
    check(s(0) <= prod_max * (1 + 1e-12), "||J||_2 = " + num("%.4f", s(0)) + " <= prod ||J_j||_2 = " + num("%.4f", prod_max));
    check(s(s.size() - 1) >= prod_min * (1 - 1e-12), "sigma_min(J) = " + num("%.3e", s(s.size() - 1)) +
                                                         " >= prod sigma_min(J_j) = " + num("%.3e", prod_min));
}

struct InitCase {
    std::string name;  // "normal" is N(0, 1)
    nn::WeightInit<T> init;
};

// Part 5: per-layer spectra and the partial products' extreme singular values, per init.
void spectra(std::size_t width, std::size_t depth, const std::string& out, bool plot)
{
    std::printf("\nA %zu-layer tanh network of width %zu under three initialisations:\n", depth, width);
    const std::vector<InitCase> cases{
        {"normal", [](const ad::Shape& s, nn::Rng& r) { return nn::normal<T>(s, 0, 1, r); }},
        {"Xavier", nn::xavier_normal<T>},
        {"orthogonal", [](const ad::Shape& s, nn::Rng& r) { return nn::orthogonal<T>(s, r); }}};
    std::ofstream layers = examples::open_output(out + "/jacobian_layer_singular_values.csv", "jacobian_lab");
    std::ofstream products = examples::open_output(out + "/jacobian_product_singular_values.csv", "jacobian_lab");
    layers << "init,layer,index,singular_value\n";
    products << "init,depth,sigma_max,sigma_min\n";
    std::printf("  %-11s %12s %12s   (of dz(%zu)/dx)\n", "init", "sigma_max", "sigma_min", depth);
    std::vector<T> chain_errors;
    for (const auto& ic : cases) {
        nn::Rng rng(11);
        const auto net = make_net(width, depth, ic.init, rng);
        const Tensor<T> x = nn::normal<T>({width}, 0, 1, rng);
        const Chain c = chain(net, x);
        const Tensor<T> J = ad::jacobian<T>([&](const Var<T>& v) { return run(net, v, depth); }, x);
        const T err = max_abs(c.partial.back() - J) / std::max(T(1), max_abs(J));
        chain_errors.push_back(err);
        for (std::size_t j = 0; j < depth; ++j) {
            const Tensor<T> s = singular_values(c.layer[j]);
            for (std::size_t i = 0; i < s.size(); ++i) layers << ic.name << ',' << j + 1 << ',' << i << ',' << s(i) << '\n';
            const Tensor<T> p = singular_values(c.partial[j]);
            products << ic.name << ',' << j + 1 << ',' << p(0) << ',' << p(p.size() - 1) << '\n';
        }
        const Tensor<T> p = singular_values(J);
        std::printf("  %-11s %12.3e %12.3e\n", ic.name == "normal" ? "N(0,1)" : ic.name.c_str(), p(0), p(p.size() - 1));
    }
    const T worst = *std::max_element(chain_errors.begin(), chain_errors.end());
    check(worst < 1e-12, "for each init, the product of layer Jacobians equals the end-to-end Jacobian "
                         "(largest relative difference " + num("%.1e", worst) + ")");
    layers.close();
    products.close();
    if (!plot) return;
    std::ofstream gp = examples::open_output(out + "/jacobian_lab.gp", "jacobian_lab");
    gp << "# Plots the CSV files jacobian_lab wrote. Run from their directory: gnuplot jacobian_lab.gp\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1100,440 font 'sans,10' } "
          "else { set terminal png size 1100,440 }\n"
          "set output 'jacobian_lab.png'\n"
          "set datafile separator ','\n"
          "inits = 'normal Xavier orthogonal'\n"
          "label(c) = c eq 'normal' ? 'N(0,1)' : c\n"
          "set multiplot layout 1,2\n"
          "set logscale y\nset format y '10^{%L}'\nset grid\nset key bottom left opaque\n"
          "set title 'Singular values of each layer Jacobian dz(j)/dz(j-1)'\n"
          "set xlabel 'layer j'\nset ylabel 'singular value'\n"
          "plot for [i=1:3] 'jacobian_layer_singular_values.csv' skip 1 "
          "using ($2+0.25*(i-2)):(strcol(1) eq word(inits,i) ? $4 : NaN) "
          "with points pt 7 ps 0.35 lc i title label(word(inits,i))\n"
          "set title \"Largest and smallest singular value of dz(j)/dx = J_j ... J_1\\n(smallest drawn while above 1e-15 x largest; below that it is rounding)\"\n"
          "set xlabel 'depth j'\n"
          "# a smallest singular value under 1e-15 x the largest is rounding noise: not drawn\n"
          "plot for [i=1:3] 'jacobian_product_singular_values.csv' skip 1 "
          "using 2:(strcol(1) eq word(inits,i) ? $3 : NaN) with linespoints pt 7 ps 0.5 lc i "
          "title label(word(inits,i)).' max', "
          "for [i=1:3] '' skip 1 using 2:(strcol(1) eq word(inits,i) && $4 > 1e-15 * $3 ? $4 : NaN) "
          "with linespoints pt 6 ps 0.5 dt 2 lc i title label(word(inits,i)).' min'\n"
          "unset multiplot\n";
    gp.close();
    if (examples::run_gnuplot(out, "jacobian_lab.gp")) std::printf("plot: %s/jacobian_lab.png\n", out.c_str());
    else std::printf("plot: gnuplot failed; the data are in %s/jacobian_*.csv\n", out.c_str());
}

}  // namespace

int main(int argc, char** argv)
{
    const auto options = examples::parse_lab_options(
        argc, argv, "jacobian_lab", "a narrower, shallower network for part 5",
        "the CSV files and the PNG");
    const bool small = options.small, plot = options.plot;
    const std::string& out = options.out;
    small_network(5, 4);
    spectra(small ? 16 : 64, small ? 8 : 24, out, plot);
    if (failures) {
        std::printf("%d check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
