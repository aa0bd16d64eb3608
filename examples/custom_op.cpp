// Writing your own ops: three ops on the public contract (autodiff/op.hpp), used inside a module,
// trained, and checked.
//
// The ops are in examples/custom_ops.hpp:
// - log_cosh(x) = log(cosh(x)), a robust regression loss (quadratic near 0, linear in the tails).
//   Written naively it overflows: cosh(800) is inf in double. The stable form
//   |x| + log1p(exp(-2|x|)) - log 2 is finite for every x. d = tanh(x) g.
// - clip_grad(x, c): the identity forward, its VJP clamps the cotangent to [-c, c]: a gradient
//   that is clipped where it enters a layer. The bound c is the op's state, captured by its VJPs.
// - round_ste(x, step): rounds to a multiple of `step` in the forward and passes the gradient
//   straight through (the straight-through estimator of quantisation-aware training).
//
// The module QuantizedMLP uses all three; main() fits it to a curve with outliers and gradchecks
// the loss of its named parameters. Run: build/examples/custom_op [--steps N]
// ctest-args: --steps 300
#include "custom_ops.hpp"
#include "nn/nn.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

// x -> W2 clip_grad(tanh(Q(W1) x + b1)) + b2, with Q rounding the first layer's weights to
// multiples of 1/16 (a 5-bit grid on [-1, 1]).
template <class T>
class QuantizedMLP : public ad::nn::Module<T> {
public:
    QuantizedMLP(std::size_t hidden, ad::nn::Rng& rng, bool quantize = true)
        : w1_(this->register_parameter("w1", ad::nn::uniform<T>({hidden, 1}, T(-1), T(1), rng))),
          b1_(this->register_parameter("b1", ad::nn::uniform<T>({hidden}, T(-1), T(1), rng))),
          out_(this->register_module("out", std::make_shared<ad::nn::Linear<T>>(hidden, 1, rng))), quantize_(quantize)
    {
    }

    ad::Var<T> forward(const ad::Var<T>& x) override
    {
        auto& tape = x.tape();
        const auto w1 = quantize_ ? ops::round_ste(tape.param(w1_), T(1) / 16) : tape.param(w1_);
        const auto h = ad::tanh(ad::affine(x, w1, tape.param(b1_)));
        return out_(ops::clip_grad(h, T(1)));
    }

private:
    ad::Parameter<T>& w1_;
    ad::Parameter<T>& b1_;
    ad::nn::Linear<T>& out_;
    bool quantize_;
};

int main(int argc, char** argv)
{
    int steps = 1500;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--help") == 0) {
            std::printf("usage: custom_op [--steps N]   (default 1500)\n");
            return 0;
        } else {
            std::fprintf(stderr, "custom_op: unknown option %s (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || steps > 1000000) {
        std::fprintf(stderr, "custom_op: --steps must be in [1, 1000000]\n");
        return 2;
    }

    // The stable op is finite where the naive formula overflows.
    {
        ad::Tape<double> tape;
        const auto y = ops::log_cosh(tape.variable(ad::Tensor<double>{800.0, -800.0}));
        if (!(y.value()(0) == 800.0 - std::log(2.0))) {
            std::fprintf(stderr, "log_cosh(800) = %g, expected 800 - log 2\n", y.value()(0));
            return 1;
        }
    }

    // Data: y = sin(3x) on [-1, 1], every 10th target an outlier at +5.
    const std::size_t n = 64;
    ad::Tensor<double> x = ad::Tensor<double>::from_shape({n, 1}), y = ad::Tensor<double>::from_shape({n, 1});
    for (std::size_t i = 0; i < n; ++i) {
        x(i, 0) = -1.0 + 2.0 * double(i) / double(n - 1);
        y(i, 0) = i % 10 == 0 ? 5.0 : std::sin(3 * x(i, 0));
    }
    ad::nn::Rng rng(7);
    QuantizedMLP<double> model(16, rng);
    ad::nn::AdamOptions options;
    options.lr = 0.02;
    ad::nn::Adam<double> opt(model, options);
    ad::Tape<double> tape;
    auto loss_of = [&](ad::nn::Module<double>& m) { return ad::mean(ops::log_cosh(m(tape.constant(x)) - tape.constant(y))); };
    double first = 0, last = 0;
    for (int s = 0; s < steps; ++s) {
        tape.clear();
        model.zero_grad();
        const auto loss = loss_of(model);
        ad::backward(loss);
        opt.step();
        (s == 0 ? first : last) = loss.item();
    }
    // The fit away from the outliers: the mean error on the clean points (the network is free to
    // bend towards a single outlier near it, so the largest error says little).
    tape.clear();
    const auto pred = model(tape.constant(x));
    double clean = 0;
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (i % 10 != 0) clean += std::abs(pred.value()(i, 0) - y(i, 0)), ++count;
    clean /= double(count);
    std::printf("log-cosh loss %.4f -> %.4f after %d steps; mean error on the clean points %.3f\n", first, last,
                steps, clean);

    // Gradcheck of the loss with respect to the named parameters, without the quantiser (whose
    // straight-through gradient differs from the zero derivative of rounding by design).
    ad::nn::Rng rng2(8);
    QuantizedMLP<double> smooth(4, rng2, false);
    const auto check = ad::nn::gradcheck_module<double>(smooth, [&](ad::nn::Module<double>& m, ad::Tape<double>& t) {
        return ad::mean(ops::log_cosh(m(t.constant(x)) - t.constant(y)));
    });
    std::printf("%s\n", check.report().c_str());
    if (!check.ok) return 1;
    if (!(last < 0.8 * first && clean < 0.25)) {
        std::fprintf(stderr, "custom_op: the fit failed: loss %g -> %g, mean error on the clean points %g\n", first,
                     last, clean);
        return 1;
    }
    return 0;
}
