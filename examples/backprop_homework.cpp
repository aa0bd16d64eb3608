// Backprop homework checker: a hand-written backward pass for a 2-layer MLP, checked against the
// engine and against finite differences, and what the checker says when the hand-written pass is
// wrong.
//
// The network and the backward pass are seed 002's: states z_1 = x, v_j = W_j z_j + b_j,
// z_2 = s(v_1) with s the sigmoid, z_3 = v_2 (the last layer is linear), and the multiclass
// logistic loss L(z_3, y) = log sum_k exp(z_3,k) - y^T z_3, whose gradient is softmax(z_3) - y.
// Backpropagation, per example:
//
//     delta_3 = softmax(z_3) - y
//     delta_j = W_j^T (delta_{j+1} (.) s_j'(v_j))            (s_2 = identity, s_2' = 1)
//     dL/dW_j = (delta_{j+1} (.) s_j'(v_j)) z_j^T,   dL/db_j = delta_{j+1} (.) s_j'(v_j)
//
// averaged over a batch. The program
// 1. computes these by hand (plain loops, no engine) and compares them with the engine's
//    gradients (ad::grad of the same model recorded on a tape) and with central differences
//    (ad::check_gradient, which perturbs each parameter element);
// 2. does the same for three typical mistakes, and shows that the checker's report names the
//    wrong parameter and an element where it is wrong:
//      - sigmoid' taken at the activation, s'(z_2), instead of at the pre-activation v_1
//        (W1 and b1 wrong);
//      - an off-by-one loop bound that never fills the last column of dL/dW2 (W2 wrong there);
//      - the bias gradient of the output layer summed over the batch instead of averaged
//        (b2 wrong).
// It exits non-zero if the correct pass is rejected or a mistake is missed.
//
// Usage: backprop_homework [--small]
//
// ctest-args: --small
#include "lab.hpp"

#include "autodiff/autodiff.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

using ad::Tensor;
using ad::Var;
using T = double;

using examples::check;
using examples::failures;

namespace {

const std::vector<std::string> names{"W1", "b1", "W2", "b2"};

struct Params {
    Tensor<T> W1, b1, W2, b2;  // W1 [hidden, in], b1 [hidden], W2 [classes, hidden], b2 [classes]
    std::vector<Tensor<T>> list() const { return {W1, b1, W2, b2}; }
    static Params from(const std::vector<Tensor<T>>& p) { return {p[0], p[1], p[2], p[3]}; }
};

struct Batch {
    Tensor<T> X;                      // [n, in], one example per row
    std::vector<std::int64_t> label;  // class of each example
};

T sigmoid(T v) { return 1 / (1 + std::exp(-v)); }

// ---------------------------------------------------------------------------------------------
// The hand-written homework: forward and backward with loops, no engine.

struct Forward {
    std::vector<T> z1, v1, z2, z3;
};

Forward forward(const Params& p, const Tensor<T>& X, std::size_t i)
{
    const std::size_t in = p.W1.shape()[1], hidden = p.W1.shape()[0], classes = p.W2.shape()[0];
    Forward f;
    for (std::size_t k = 0; k < in; ++k) f.z1.push_back(X(i, k));
    for (std::size_t r = 0; r < hidden; ++r) {
        T v = p.b1(r);
        for (std::size_t k = 0; k < in; ++k) v += p.W1(r, k) * f.z1[k];
        f.v1.push_back(v);
        f.z2.push_back(sigmoid(v));
    }
    for (std::size_t c = 0; c < classes; ++c) {
        T v = p.b2(c);
        for (std::size_t r = 0; r < hidden; ++r) v += p.W2(c, r) * f.z2[r];
        f.z3.push_back(v);
    }
    return f;
}

// Mean over the batch of log sum_k exp(z_3,k) - z_3,label (max subtracted for stability).
T loss(const Params& p, const Batch& b)
{
    T total = 0;
    for (std::size_t i = 0; i < b.label.size(); ++i) {
        const auto z3 = forward(p, b.X, i).z3;
        const T m = *std::max_element(z3.begin(), z3.end());
        T s = 0;
        for (T v : z3) s += std::exp(v - m);
        total += m + std::log(s) - z3[std::size_t(b.label[i])];
    }
    return total / T(b.label.size());
}

enum class Mistake { none, sigmoid_at_activation, off_by_one_in_dW2, bias_summed_not_averaged };

const char* describe(Mistake m)
{
    switch (m) {
    case Mistake::none: return "the correct backward pass";
    case Mistake::sigmoid_at_activation: return "mistake: sigmoid' taken at z_2 instead of v_1";
    case Mistake::off_by_one_in_dW2: return "mistake: loop bound off by one when filling dL/dW2";
    case Mistake::bias_summed_not_averaged: return "mistake: dL/db2 summed over the batch, not averaged";
    }
    return "";
}

Params backward(const Params& p, const Batch& b, Mistake mistake)
{
    const std::size_t in = p.W1.shape()[1], hidden = p.W1.shape()[0], classes = p.W2.shape()[0];
    const std::size_t n = b.label.size();
    Params g{xt::zeros<T>(p.W1.shape()), xt::zeros<T>(p.b1.shape()), xt::zeros<T>(p.W2.shape()),
             xt::zeros<T>(p.b2.shape())};
    for (std::size_t i = 0; i < n; ++i) {
        const Forward f = forward(p, b.X, i);
        // delta_3 = softmax(z_3) - y
        const T m = *std::max_element(f.z3.begin(), f.z3.end());
        T s = 0;
        for (T v : f.z3) s += std::exp(v - m);
        std::vector<T> delta3(classes);
        for (std::size_t c = 0; c < classes; ++c)
            delta3[c] = std::exp(f.z3[c] - m) / s - (std::int64_t(c) == b.label[i] ? 1 : 0);
        // Output layer (s_2 = identity): dL/dW2 = delta_3 z_2^T, dL/db2 = delta_3.
        const std::size_t last = mistake == Mistake::off_by_one_in_dW2 ? hidden - 1 : hidden;
        for (std::size_t c = 0; c < classes; ++c) {
            for (std::size_t r = 0; r < last; ++r) g.W2(c, r) += delta3[c] * f.z2[r];
            g.b2(c) += delta3[c];
        }
        // delta_2 = W2^T delta_3
        std::vector<T> delta2(hidden, 0);
        for (std::size_t r = 0; r < hidden; ++r)
            for (std::size_t c = 0; c < classes; ++c) delta2[r] += p.W2(c, r) * delta3[c];
        // Hidden layer: e = delta_2 (.) s'(v_1), s'(v) = s(v) (1 - s(v)) = z_2 (1 - z_2);
        // dL/dW1 = e z_1^T, dL/db1 = e.
        for (std::size_t r = 0; r < hidden; ++r) {
            const T a = mistake == Mistake::sigmoid_at_activation ? sigmoid(f.z2[r]) : f.z2[r];
            const T e = delta2[r] * a * (1 - a);
            for (std::size_t k = 0; k < in; ++k) g.W1(r, k) += e * f.z1[k];
            g.b1(r) += e;
        }
    }
    const T scale = T(1) / T(n);
    g.W1 *= scale;
    g.b1 *= scale;
    g.W2 *= scale;
    if (mistake != Mistake::bias_summed_not_averaged) g.b2 *= scale;
    return g;
}

// ---------------------------------------------------------------------------------------------
// The same model on the engine's tape: x W^T + b row by row is W x + b for each example.

std::vector<Tensor<T>> engine_gradients(const Params& p, const Batch& b, T& value)
{
    ad::Tape<T> tape;
    std::vector<Var<T>> v;
    for (const auto& t : p.list()) v.push_back(tape.variable(t));
    const auto X = tape.constant(b.X);
    const auto z2 = ad::sigmoid(ad::matmul(X, v[0], ad::transpose_b) + v[1]);
    const auto z3 = ad::matmul(z2, v[2], ad::transpose_b) + v[3];
    const auto L = ad::cross_entropy(z3, b.label);
    value = L.item();
    return ad::grad(L, v);
}

T max_abs_diff(const std::vector<Tensor<T>>& a, const std::vector<Tensor<T>>& b)
{
    T m = 0;
    for (std::size_t k = 0; k < a.size(); ++k) m = std::max(m, T(xt::amax(xt::abs(a[k] - b[k]))()));
    return m;
}

// Checks one parameter's claimed gradient by central differences, the others held fixed.
ad::GradcheckResult check_one(const Params& p, const Batch& b, const Params& claimed, std::size_t k)
{
    ad::GradcheckOptions o;
    o.names = {names[k]};
    auto f = [&](const std::vector<Tensor<T>>& x) {
        auto all = p.list();
        all[k] = x[0];
        return loss(Params::from(all), b);
    };
    return ad::check_gradient(f, {p.list()[k]}, {claimed.list()[k]}, o);
}

std::string shape_text(const ad::Shape& s) { return ad::shape_str(s); }

std::string num(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

}  // namespace

int main(int argc, char** argv)
{
    bool small = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--small") small = true;
        else {
            std::printf("usage: backprop_homework [--small]\n"
                        "  --small  a smaller batch (CI)\n");
            return a == "--help" || a == "-h" ? 0 : 2;
        }
    }
    const std::size_t in = 4, hidden = 5, classes = 3, n = small ? 6 : 32;
    std::mt19937_64 rng(2024);
    std::normal_distribution<T> normal(0, 1);
    auto randn = [&](const ad::Shape& s, T scale) {
        Tensor<T> t = Tensor<T>::from_shape(s);
        for (auto& v : t) v = scale * normal(rng);
        return t;
    };
    const Params p{randn({hidden, in}, 0.8), randn({hidden}, 0.3), randn({classes, hidden}, 0.8), randn({classes}, 0.3)};
    Batch b{randn({n, in}, 1.0), {}};
    for (std::size_t i = 0; i < n; ++i) b.label.push_back(std::int64_t(i % classes));

    std::printf("2-layer MLP %zu-%zu-%zu (sigmoid hidden layer, softmax cross-entropy), batch of %zu\n\n", in,
                hidden, classes, n);
    T engine_loss = 0;
    const auto engine = engine_gradients(p, b, engine_loss);
    const T hand_loss = loss(p, b);
    check(std::abs(hand_loss - engine_loss) < 1e-13,
          "the hand-written forward pass and the engine agree on the loss (" + num(hand_loss) + ")");

    ad::GradcheckOptions options;
    options.names = names;
    auto numeric = [&](const std::vector<Tensor<T>>& x) { return loss(Params::from(x), b); };

    for (Mistake m : {Mistake::none, Mistake::sigmoid_at_activation, Mistake::off_by_one_in_dW2,
                      Mistake::bias_summed_not_averaged}) {
        std::printf("\n%s\n", describe(m));
        const Params hand = backward(p, b, m);
        const T vs_engine = max_abs_diff(hand.list(), engine);
        const auto res = ad::check_gradient(numeric, p.list(), hand.list(), options);
        std::printf("  checker: %s\n", res.report().c_str());

        // Which parameters are wrong, one check per parameter.
        std::set<std::string> flagged;
        std::printf("  per parameter:");
        for (std::size_t k = 0; k < names.size(); ++k) {
            const bool ok = check_one(p, b, hand, k).ok;
            if (!ok) flagged.insert(names[k]);
            std::printf(" %s %s", names[k].c_str(), ok ? "ok" : "WRONG");
        }
        std::printf("\n");

        if (m == Mistake::none) {
            check(vs_engine < 1e-14, "hand-written gradients equal the engine's (max |difference| " +
                                         num(vs_engine) + ")");
            check(res.ok && flagged.empty(), "finite differences accept every parameter");
            continue;
        }
        // The truly wrong elements are where the hand gradient differs from the engine's.
        const std::set<std::string> expected =
            m == Mistake::sigmoid_at_activation ? std::set<std::string>{"W1", "b1"}
            : m == Mistake::off_by_one_in_dW2   ? std::set<std::string>{"W2"}
                                                : std::set<std::string>{"b2"};
        check(!res.ok, "the checker rejects it");
        check(flagged == expected, "exactly the wrong parameters are flagged");
        const std::size_t k = res.input;
        const Tensor<T> h = hand.list()[k];  // a copy: list() returns a temporary vector
        const auto& e = engine[k];
        const double at_reported = std::abs(h[res.element] - e[res.element]);
        check(expected.count(res.name) && at_reported > 1e-5,
              "the report names " + res.name + " element " + shape_text(res.element) +
                  ", where the hand gradient is " + num(h[res.element]) + " and the true one " +
                  num(e[res.element]));
        if (m == Mistake::off_by_one_in_dW2)
            check(res.element.size() == 2 && res.element[1] == hidden - 1,
                  "the reported element lies in the last column of W2, the one the loop skipped");
    }

    if (failures) {
        std::printf("\n%d check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("\nall checks passed\n");
    return 0;
}
