// Sharpness: the largest eigenvalue of the Hessian of a Fashion-MNIST MLP's loss with respect to
// its weights, by power iteration on Hessian-vector products, at several points of training.
//
// What it teaches: a Hessian-vector product over a model's weights costs a few gradients and
// never forms the Hessian (here 784*64 + 64 + 64*10 + 10 = 50890 weights: the matrix would have
// 2.6e9 entries). The recipe:
//     g = ad::grad(loss, params, ad::create_graph);      // gradients as Vars on the tape
//     s = sum_i sum(g_i * v_i);                          // <g, v>
//     zero_grad(); ad::backward(s);                      // now p.grad = (H v) for each p
// Power iteration v <- H v / |H v| then converges to the eigenvector of the eigenvalue of
// largest magnitude, and v.Hv to that eigenvalue. Plain SGD at step eta is stable only while the
// sharpness stays below 2/eta (a quadratic with curvature above 2/eta diverges), drawn in the
// picture: here it starts near 2/eta at initialisation and settles around half of it.
//
// Self-check: on a tiny model (8-4-3, 51 weights), the same HVP is compared against the exact
// Hessian from ad::hessian (H v to ~1e-12), and power iteration against the top eigenvalue from
// xt::linalg::eigh; on the real model, the residual |H v - lambda v| / |lambda| is reported.
//
// Full run: 10000 training images, 784-64-10 tanh MLP in double, SGD lr 0.1 batch 64, 4 epochs,
// sharpness on 1000 images every half epoch: 17.7 at initialisation, then 10.2, 10.4, 11.7, 10.2,
// 11.3, 10.6, 11.7, 10.4 (epochs 0.5 .. 4; loss 2.43 -> 0.44), 36 s on a loaded 2-core machine.
// --small: 1000 images, 2 epochs, 256 for the Hessian.
//
// ctest-args: --small --out sharpness_ci
#include "autodiff/autodiff.hpp"
#include "lab.hpp"
#include "nn/idx.hpp"

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using ad::Parameter;
using ad::Tensor;
using ad::Var;
using Params = std::vector<Parameter<double>>;

// W1 [in, hidden], b1, W2 [hidden, classes], b2: logits = tanh(x W1 + b1) W2 + b2.
Params make_mlp(std::size_t in, std::size_t hidden, std::size_t classes, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    Params p;
    auto layer = [&](std::size_t a, std::size_t b) {
        std::normal_distribution<double> normal(0.0, std::sqrt(1.0 / double(a)));
        Tensor<double> W = Tensor<double>::from_shape({a, b});
        for (auto& v : W) v = normal(rng);
        p.emplace_back(W);
        p.emplace_back(Tensor<double>(xt::zeros<double>({b})));
    };
    layer(in, hidden);
    layer(hidden, classes);
    return p;
}

Var<double> mlp_loss(const Var<double>& W1, const Var<double>& b1, const Var<double>& W2, const Var<double>& b2,
                     const Var<double>& x, const std::vector<std::int64_t>& labels)
{
    const auto h = ad::tanh(ad::matmul(x, W1) + b1);
    return ad::cross_entropy(ad::matmul(h, W2) + b2, labels);
}

Var<double> loss_on(ad::Tape<double>& tape, Params& p, const Tensor<double>& x, const std::vector<std::int64_t>& y)
{
    return mlp_loss(tape.param(p[0]), tape.param(p[1]), tape.param(p[2]), tape.param(p[3]), tape.constant(x), y);
}

using Vec = std::vector<Tensor<double>>;  // one tensor per parameter

double dot(const Vec& a, const Vec& b)
{
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += xt::sum(a[i] * b[i])();
    return s;
}

// H v, H the Hessian of the loss on (x, y) with respect to all parameters.
Vec hvp(Params& p, const Tensor<double>& x, const std::vector<std::int64_t>& y, const Vec& v)
{
    ad::Tape<double> tape;
    const auto loss = loss_on(tape, p, x, y);
    std::vector<Parameter<double>*> ptrs;
    for (auto& q : p) ptrs.push_back(&q);
    const auto g = ad::grad(loss, ptrs, ad::create_graph);
    for (auto& q : p) q.zero_grad();
    ad::backward(g, v);  // one sweep seeded with v[i] at g[i]: .grad = H v
    Vec out;
    for (auto& q : p) out.push_back(q.grad);
    return out;
}

struct Eigen {
    double lambda = 0;
    double residual = 0;  // |H v - lambda v| / |lambda| for the final unit v
};

// Power iteration from a fixed random start; the eigenvalue of largest magnitude.
Eigen power_iteration(Params& p, const Tensor<double>& x, const std::vector<std::int64_t>& y, int iterations,
                      std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    Vec v;
    for (auto& q : p) {
        Tensor<double> t = Tensor<double>::from_shape(q.value().shape());
        for (auto& e : t) e = normal(rng);
        v.push_back(t);
    }
    auto normalise = [](Vec& w) {
        const double n = std::sqrt(dot(w, w));
        for (auto& t : w) t /= n;
    };
    normalise(v);
    Eigen e;
    for (int k = 0; k < iterations; ++k) {
        Vec hv = hvp(p, x, y, v);
        e.lambda = dot(v, hv);
        double r2 = 0;
        for (std::size_t i = 0; i < v.size(); ++i) r2 += xt::sum(xt::square(hv[i] - e.lambda * v[i]))();
        e.residual = std::sqrt(r2) / std::abs(e.lambda);
        v = std::move(hv);
        normalise(v);
    }
    return e;
}

// The tiny-model check: parameter HVPs against ad::hessian of the loss over the four weight
// tensors, and power iteration against eigh.
void check_against_exact_hessian()
{
    using examples::check;
    using examples::num;
    const std::size_t in = 8, hidden = 4, classes = 3, n = 32;
    Params p = make_mlp(in, hidden, classes, 5);
    for (auto& q : p)  // non-zero biases, so that every block of the Hessian is exercised
        if (q.value().dimension() == 1) q.mutable_value() += 0.1;
    std::mt19937_64 rng(6);
    std::normal_distribution<double> normal(0.0, 1.0);
    Tensor<double> x = Tensor<double>::from_shape({n, in});
    for (auto& e : x) e = normal(rng);
    std::vector<std::int64_t> y(n);
    for (std::size_t i = 0; i < n; ++i) y[i] = std::int64_t(i % classes);

    // The Hessian over the four weight tensors at once, in blocks H[i][j] of shape
    // w_i.shape ++ w_j.shape, then laid out as one matrix over theta = [W1 (row-major), b1, W2, b2]
    // for eigh.
    std::vector<Tensor<double>> w;
    for (auto& q : p) w.push_back(q.value());
    const auto blocks = ad::hessian<double>(
        [&](const std::vector<Var<double>>& t) { return mlp_loss(t[0], t[1], t[2], t[3], t[0].tape().constant(x), y); },
        w);
    std::vector<std::size_t> offsets{0};
    for (auto& t : w) offsets.push_back(offsets.back() + t.size());
    Tensor<double> H = xt::zeros<double>({offsets.back(), offsets.back()});
    for (std::size_t i = 0; i < w.size(); ++i)
        for (std::size_t j = 0; j < w.size(); ++j)
            for (std::size_t k = 0; k < blocks[i][j].size(); ++k)
                H(offsets[i] + k / w[j].size(), offsets[j] + k % w[j].size()) = blocks[i][j].flat(k);

    std::normal_distribution<double> nv(0.0, 1.0);
    Vec v;
    for (auto& t : w) {
        v.push_back(Tensor<double>::from_shape(t.shape()));
        for (auto& e : v.back()) e = nv(rng);
    }
    const Vec hv = hvp(p, x, y, v);
    double worst = 0;
    for (std::size_t i = 0; i < w.size(); ++i)
        for (std::size_t a = 0; a < w[i].size(); ++a) {
            double Hv = 0;  // sum_j H[i][j] v_j
            for (std::size_t j = 0; j < w.size(); ++j)
                for (std::size_t b = 0; b < w[j].size(); ++b) Hv += blocks[i][j].flat(a * w[j].size() + b) * v[j].flat(b);
            worst = std::max(worst, std::abs(hv[i].flat(a) - Hv));
        }
    check(worst < 1e-12, "tiny model (51 weights): the parameter HVP equals ad::hessian times v (max diff " +
                             num("%.1e", worst) + ")");

    const auto [eigenvalues, vectors] = xt::linalg::eigh(H);
    double top = 0;  // the eigenvalue of largest magnitude
    for (double l : eigenvalues)
        if (std::abs(l) > std::abs(top)) top = l;
    const Eigen e = power_iteration(p, x, y, 300, 9);
    std::printf("tiny model: eigh's largest-magnitude eigenvalue %.12f, power iteration %.12f\n", top, e.lambda);
    check(std::abs(e.lambda - top) < 1e-8 * std::abs(top),
          "tiny model: power iteration on HVPs finds eigh's top eigenvalue (rel. diff " +
              num("%.1e", std::abs(e.lambda - top) / std::abs(top)) + ")");
}

}  // namespace

int main(int argc, char** argv)
{
    using examples::check;
    using examples::num;
    const auto o = examples::parse_lab_options(argc, argv, "sharpness",
                                               "1000 training images, 2 epochs, 256 images for the Hessian",
                                               "the CSV file, the gnuplot script and the PNG");
    try {
        check_against_exact_hessian();

        const std::size_t n_train = o.small ? 1000 : 10000, n_hessian = o.small ? 256 : 1000;
        const int epochs = o.small ? 2 : 4, iterations = 20;
        const std::size_t hidden = 64, batch = 64;
        const double lr = 0.1;
        const auto data = ad::nn::load_mnist_split<double>("/usr/share/datasets/fashion-mnist", "train", n_train);
        const Tensor<double> xh = xt::view(data.images, xt::range(0, n_hessian), xt::all());
        const std::vector<std::int64_t> yh(data.labels.begin(), data.labels.begin() + std::ptrdiff_t(n_hessian));
        Params p = make_mlp(data.images.shape()[1], hidden, 10, 1);
        std::printf("Fashion-MNIST: %zu training images; 784-%zu-10 tanh MLP in double; SGD lr %g batch %zu; "
                    "sharpness on %zu images, %d power iterations\n",
                    n_train, hidden, lr, batch, n_hessian, iterations);

        auto csv = examples::open_output(o.out + "/sharpness.csv", "sharpness");
        csv << "# epoch sharpness residual loss\n";
        const std::size_t steps_per_epoch = n_train / batch, half = steps_per_epoch / 2;
        std::vector<double> sharp;
        const auto start = std::chrono::steady_clock::now();
        auto measure = [&](double epoch) {
            const Eigen e = power_iteration(p, xh, yh, iterations, 42);
            ad::Tape<double> tape;
            const double loss = loss_on(tape, p, xh, yh).value()();
            std::printf("  epoch %.1f  loss %.4f  sharpness %.4f  (residual %.1e, 2/lr = %g)  %.0f s\n", epoch, loss,
                        e.lambda, e.residual, 2 / lr,
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            csv << epoch << ' ' << e.lambda << ' ' << e.residual << ' ' << loss << '\n';
            sharp.push_back(e.lambda);
            check(std::isfinite(e.lambda) && e.lambda > 0,
                  "epoch " + num("%.1f", epoch) + ": the top eigenvalue is positive and finite");
        };
        measure(0);
        std::vector<std::size_t> order(n_train);
        std::iota(order.begin(), order.end(), 0);
        std::mt19937_64 rng(2);
        std::vector<std::int64_t> yb(batch);
        Tensor<double> xb = Tensor<double>::from_shape({batch, data.images.shape()[1]});
        for (int epoch = 0; epoch < epochs; ++epoch) {
            std::shuffle(order.begin(), order.end(), rng);
            for (std::size_t s = 0; s < steps_per_epoch; ++s) {
                for (std::size_t i = 0; i < batch; ++i) {
                    const std::size_t k = order[s * batch + i];
                    xt::view(xb, i, xt::all()) = xt::view(data.images, k, xt::all());
                    yb[i] = data.labels[k];
                }
                ad::Tape<double> tape;
                for (auto& q : p) q.zero_grad();
                ad::backward(loss_on(tape, p, xb, yb));
                for (auto& q : p) q.mutable_value() -= lr * q.grad;
                if (s + 1 == half) measure(epoch + 0.5);
            }
            measure(epoch + 1);
        }
        check(*std::max_element(sharp.begin(), sharp.end()) < 2 / lr * 1.5,
              "SGD stays stable: the sharpness stays below about 2/lr (max " +
                  num("%.3f", *std::max_element(sharp.begin(), sharp.end())) + ")");
        csv.close();

        auto gp = examples::open_output(o.out + "/sharpness.gp", "sharpness");
        gp << "# Plots sharpness.csv. Run from its directory: gnuplot sharpness.gp\n"
              "set terminal pngcairo size 800,500\n"
              "set output 'sharpness.png'\n"
              "set title 'Fashion-MNIST MLP: largest Hessian eigenvalue of the loss during SGD training'\n"
              "set xlabel 'epoch'\nset ylabel 'lambda_{max}(H)'\nset grid\nset key bottom right\n"
              "set yrange [0:" << 2.3 / lr << "]\n"
              "plot 'sharpness.csv' using 1:2 with linespoints lw 2 pt 7 title 'power iteration on HVPs', "
           << 2 / lr << " with lines dt 2 lw 2 title '2 / learning rate'\n";
        gp.close();
        if (o.plot) {
            if (examples::run_gnuplot(o.out, "sharpness.gp")) std::printf("plot: %s/sharpness.png\n", o.out.c_str());
            else std::printf("plot: gnuplot failed; the data are in %s/sharpness.csv\n", o.out.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sharpness: %s\n", e.what());
        return 1;
    }
    if (examples::failures) std::printf("%d check(s) FAILED\n", examples::failures);
    return examples::failures ? 1 : 0;
}
