// XOR (seed 003): why a network needs a nonlinearity.
//
// 1. The lecture's hand solution: a 2-2-1 ReLU net with W1 = [[2, 2], [1, 1]], b1 = [-1, -1]
//    maps the two positive points onto one hidden point, after which one linear unit separates
//    the classes. The output layer the seed implies is W2 = [1, -3], b2 = 0: it gives exactly
//    g(0,0) = 0, g(0,1) = g(1,0) = 1, g(1,1) = 0.
// 2. A 2-8-1 net trained from random initialisation by gradient descent on the seed's cost
//    J = 1/(2n) sum (yhat - y)^2 classifies all four points: with tanh hidden units every run
//    does; with ReLU most do, and a run that fails typically ends with each ReLU off at all four
//    points or on at all four, so the net is affine there: the trap of part 3.
// 3. The same net with no nonlinearity is one affine map in disguise (W2 (W1 x + b1) + b2), and an
//    affine f has f(0,0) + f(1,1) = f(0,1) + f(1,0), so it cannot put both positives above
//    the threshold and both negatives below: at most 3 of 4. Trained, it reaches the best an
//    affine map can do, J = 1/8, by predicting 1/2 everywhere: chance.
// 4. The recorded tape of the hand-solved net is written as Graphviz DOT and rendered.
//
// ctest-args: --seeds 5
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "autodiff/graph.hpp"
#include "nn/linear.hpp"
#include "nn/loss.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

using ad::Tensor;
using ad::Var;
using T = double;

using examples::check;
using examples::failures;

namespace {

const Tensor<T> X = {{0., 0.}, {0., 1.}, {1., 0.}, {1., 1.}};
const Tensor<T> Y = [] {
    Tensor<T> y = {0., 1., 1., 0.};
    y.reshape({4, 1});
    return y;
}();

enum class Act { relu, tanh, none };
const char* name(Act a) { return a == Act::relu ? "ReLU" : a == Act::tanh ? "tanh" : "no"; }

// x -> output(act(hidden(x))).
class TwoLayerNet : public ad::nn::Module<T> {
public:
    TwoLayerNet(std::shared_ptr<ad::nn::Linear<T>> hidden, std::shared_ptr<ad::nn::Linear<T>> output, Act act)
        : hidden_(this->register_module("hidden", hidden)), output_(this->register_module("output", output)),
          act_(act)
    {
    }
    TwoLayerNet(std::size_t width, Act act, ad::nn::Rng& rng)
        : TwoLayerNet(std::make_shared<ad::nn::Linear<T>>(2, width, rng),
                      std::make_shared<ad::nn::Linear<T>>(width, 1, rng), act)
    {
    }
    Var<T> forward(const Var<T>& x) override
    {
        auto z = hidden_(x);
        return output_(act_ == Act::relu ? ad::relu(z) : act_ == Act::tanh ? ad::tanh(z) : z);
    }
    ad::nn::Linear<T>& hidden() { return hidden_; }

private:
    ad::nn::Linear<T>& hidden_;
    ad::nn::Linear<T>& output_;
    Act act_;
};

// The seed's cost J = 1/(2n) sum (yhat - y)^2.
Var<T> cost(const Var<T>& yhat, const Var<T>& y) { return ad::nn::half_mse(yhat, y); }

int correct(const Tensor<T>& yhat)
{
    int n = 0;
    for (std::size_t i = 0; i < 4; ++i) n += (yhat(i, 0) > 0.5) == (Y(i, 0) > 0.5);
    return n;
}

// Full-batch gradient descent, W <- W - lr dJ/dW. Returns the final cost.
T train(TwoLayerNet& net, int steps, T lr)
{
    ad::Tape<T> tape;
    T J = 0;
    for (int s = 0; s < steps; ++s) {
        tape.clear();
        net.zero_grad();
        auto loss = cost(net(tape.constant(X)), tape.constant(Y));
        J = loss.item();
        ad::backward(loss);
        for (auto* p : net.parameters()) p->mutable_value() -= lr * p->grad;
    }
    return J;
}

Tensor<T> predict(TwoLayerNet& net)
{
    ad::Tape<T> tape;
    ad::NoGrad no_grad;
    return net(tape.constant(X)).value();
}

// Whether every hidden ReLU is off at all four points or on at all four: then the net is
// affine on the data.
bool relus_all_or_nothing(TwoLayerNet& net)
{
    ad::Tape<T> tape;
    ad::NoGrad no_grad;
    const Tensor<T> z = net.hidden()(tape.constant(X)).value();
    for (std::size_t j = 0; j < z.shape()[1]; ++j) {
        int on = 0;
        for (std::size_t i = 0; i < 4; ++i) on += z(i, j) > 0;
        if (on != 0 && on != 4) return false;
    }
    return true;
}

std::string row(const Tensor<T>& yhat)
{
    char buf[96];
    std::snprintf(buf, sizeof buf, "[%.3f, %.3f, %.3f, %.3f]", yhat(0, 0), yhat(1, 0), yhat(2, 0), yhat(3, 0));
    return buf;
}

}  // namespace

int main(int argc, char** argv)
{
    int seeds = 20, steps = 5000, width = 8;
    T lr = 0.2;
    std::string out_dir = ".";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seeds" && i + 1 < argc) seeds = int(examples::parse_whole("xor", a, argv[++i], 1, 1000));
        else if (a == "--steps" && i + 1 < argc) steps = int(examples::parse_whole("xor", a, argv[++i], 1, 10000000));
        else if (a == "--out" && i + 1 < argc) out_dir = argv[++i];
        else if (a == "--width" && i + 1 < argc) width = int(examples::parse_whole("xor", a, argv[++i], 1, 4096));
        else if (a == "--lr" && i + 1 < argc) lr = T(examples::parse_real("xor", a, argv[++i], 0, 100));
        else {
            std::printf("usage: xor [--seeds N (20)] [--steps N (5000)] [--out DIR (.)]\n"
                        "Checks the seed 003 hand solution of XOR, trains 2-8-1 nets with and without ReLU\n"
                        "from N random initialisations, and writes DIR/xor_graph.dot (and .svg, .png).\n");
            return a == "--help" || a == "-h" ? 0 : 2;
        }
    }

    examples::make_writable_output_dir(out_dir, "xor");  // before the work, not after it

    std::printf("1. The hand solution of seed 003\n");
    TwoLayerNet hand(std::make_shared<ad::nn::Linear<T>>(Tensor<T>{{2., 2.}, {1., 1.}}, Tensor<T>{-1., -1.}),
                     std::make_shared<ad::nn::Linear<T>>(Tensor<T>{{1., -3.}}, Tensor<T>{0.}), Act::relu);
    ad::Tape<T> tape;
    auto x = tape.constant(X), y = tape.constant(Y);
    auto h = ad::relu(hand.hidden()(x));
    auto yhat = hand(x);
    auto J = cost(yhat, y);
    for (std::size_t i = 0; i < 4; ++i)
        std::printf("  x = (%g, %g)  h = relu(W1 x + b1) = (%g, %g)  yhat = %g\n", X(i, 0), X(i, 1),
                    h.value()(i, 0), h.value()(i, 1), yhat.value()(i, 0));
    check(h.value()(1, 0) == h.value()(2, 0) && h.value()(1, 1) == h.value()(2, 1),
          "the two positive points (0,1) and (1,0) collapse onto one hidden point");
    check(yhat.value() == Y, "with W2 = [1, -3], b2 = 0 the output is exactly XOR");
    check(correct(yhat.value()) == 4, "it classifies all four points (threshold 1/2)");
    check(J.item() == 0, "its cost J is 0");

    for (Act act : {Act::tanh, Act::relu}) {
        std::printf("\n2%s. A 2-%d-1 %s net trained from %d random initialisations (%d steps of gradient descent)\n",
                    act == Act::tanh ? "a" : "b", width, name(act), seeds, steps);
        int solved = 0;
        for (int s = 0; s < seeds; ++s) {
            ad::nn::Rng rng(s);
            TwoLayerNet net(width, act, rng);
            const T final_cost = train(net, steps, lr);
            const auto p = predict(net);
            std::printf("  seed %2d: J = %.2e  yhat = %s  %d/4%s\n", s, final_cost, row(p).c_str(), correct(p),
                        act == Act::relu && correct(p) < 4 && relus_all_or_nothing(net)
                            ? "  (every ReLU off at all four points or on at all four: affine there)"
                            : "");
            solved += correct(p) == 4;
        }
        const std::string count = " (" + std::to_string(solved) + "/" + std::to_string(seeds) + ")";
        if (act == Act::tanh)
            check(solved == seeds, "every run classifies all four points" + count);
        else  // a few runs end with the ReLUs all-or-nothing over the data: an affine net
            check(solved >= 0.9 * seeds, "at least 90% of runs classify all four points" + count);
    }
    std::printf("\n3. The same 2-%d-1 net with no nonlinearity\n", width);
    int best = 0;
    T worst_gap = 0;
    bool all_affine = true, all_at_chance = true;
    for (int s = 0; s < seeds; ++s) {
        ad::nn::Rng rng(s);
        TwoLayerNet net(width, Act::none, rng);
        const T final_cost = train(net, steps, lr);
        const auto p = predict(net);
        // An affine map gives f(0,0) + f(1,1) = f(0,1) + f(1,0).
        const T gap = std::abs(p(0, 0) + p(3, 0) - p(1, 0) - p(2, 0));
        std::printf("  seed %2d: J = %.6f  yhat = %s\n", s, final_cost, row(p).c_str());
        best = std::max(best, correct(p));
        worst_gap = std::max(worst_gap, gap);
        all_affine = all_affine && gap < 1e-9;
        all_at_chance = all_at_chance && std::abs(final_cost - 0.125) < 1e-6;
    }
    check(all_affine, "each learnt function is affine: f(0,0) + f(1,1) = f(0,1) + f(1,0)");
    // Outputs of 1/2 +- rounding error fall on either side of the threshold by chance.
    check(best < 4, "no run classifies all four points (best " + std::to_string(best) + "/4)");
    check(all_at_chance, "every run ends at J = 1/8, the cost of predicting 1/2 everywhere: chance");

    std::printf("\n4. The graph of the hand-solved net\n");
    ad::GraphLabels<T> labels;
    const char* seed_names[] = {"W1", "b1", "W2", "b2"};
    auto named = hand.named_parameters();
    for (std::size_t i = 0; i < named.size(); ++i)
        labels.parameters.push_back({std::string(seed_names[i]) + " (" + named[i].first + ")", named[i].second});
    labels.values = {{"x", x}, {"y", y}, {"J", J}};
    const std::string dot = out_dir + "/xor_graph.dot";
    try {
        ad::write_dot(dot, J, labels);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "xor: %s\n", e.what());
        return 1;
    }
    std::printf("  wrote %s\n", dot.c_str());
    if (examples::have_program({"dot", "-V"})) {
        for (const std::string fmt : {"svg", "png"}) {
            // Run in the output directory with fixed relative names: no path reaches dot's options.
            std::vector<std::string> cmd = {"dot", "-T" + fmt, "xor_graph.dot", "-o", "xor_graph." + fmt};
            if (fmt == "png") cmd.insert(cmd.begin() + 2, "-Gdpi=110");
            check(examples::run_program(cmd, out_dir) == 0, "rendered " + out_dir + "/xor_graph." + fmt);
        }
    } else {
        std::printf("  (Graphviz dot not found: render with dot -Tsvg %s -o xor_graph.svg)\n", dot.c_str());
    }

    std::printf("\n%s\n", failures ? "SOME CHECKS FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
