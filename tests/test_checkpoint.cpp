// Gradient checkpointing: a block recorded as one op and run again by its VJP gives the same
// gradients as the block recorded op by op, with fewer records kept on the tape.
#include "gradcheck_helpers.hpp"

#include "nn/nn.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <memory>

using namespace adtest;
using ad::Parameter;
using ad::Tape;
namespace nn = ad::nn;

namespace {

// Bit for bit, NaN included.
bool same_bits(const Tensor<double>& a, const Tensor<double>& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// z + relu(layer_norm(W z + b)): config e's block.
struct Block {
    nn::Linear<double> linear;
    nn::LayerNorm<double> norm;
    Block(std::size_t width, nn::Rng& rng) : linear(width, width, rng), norm(width) {}
    Var<double> operator()(const Var<double>& z) { return z + ad::relu(norm(linear(z))); }
};

struct Stack {
    std::vector<std::unique_ptr<Block>> blocks;
    std::vector<Parameter<double>*> params;
    Stack(std::size_t depth, std::size_t width)
    {
        nn::Rng rng(7);
        for (std::size_t i = 0; i < depth; ++i) {
            blocks.push_back(std::make_unique<Block>(width, rng));
            for (auto* p : blocks.back()->linear.parameters()) params.push_back(p);
            for (auto* p : blocks.back()->norm.parameters()) params.push_back(p);
        }
    }
    // The blocks in order, groups of `every` blocks checkpointed as one (0: none).
    Var<double> operator()(Var<double> h, std::size_t every)
    {
        for (std::size_t i = 0; i < blocks.size();) {
            const std::size_t end = every ? std::min(blocks.size(), i + every) : i + 1;
            if (every) {
                h = ad::checkpoint(
                    [this, i, end](const Vars& in) {
                        Var<double> z = in[0];
                        for (std::size_t j = i; j < end; ++j) z = (*blocks[j])(z);
                        return z;
                    },
                    {h});
            } else {
                h = (*blocks[i])(h);
            }
            i = end;
        }
        return h;
    }
    std::vector<Tensor<double>> grads() const
    {
        std::vector<Tensor<double>> out;
        for (const auto* p : params) out.push_back(p->grad);
        return out;
    }
    void zero_grad()
    {
        for (auto* p : params) p->zero_grad();
    }
};

// linear -> relu -> dropout -> stochastic depth -> linear, whose random modules can be reseeded.
struct RandomNet {
    nn::Rng rng{21};
    nn::Linear<double> first{4, 6, rng}, last{6, 3, rng};
    nn::Dropout<double> drop{0.5, 31};
    nn::StochasticDepth<double> depth{0.5, 32};

    Var<double> hidden(const Var<double>& x) { return drop(ad::relu(first(x))); }
    Var<double> out(const Var<double>& h) { return last(depth(h)); }
    std::vector<Parameter<double>*> params()
    {
        return {&first.weight(), first.bias(), &last.weight(), last.bias()};
    }
    // How a run starts: the generators as after construction, the gradients zero.
    void reset()
    {
        drop.seed(31);
        depth.seed(32);
        for (auto* p : params()) p->zero_grad();
    }
    // The parameters' gradients, then the masks the next forward pass draws.
    std::vector<Tensor<double>> grads_and_next_masks(const Tensor<double>& x)
    {
        std::vector<Tensor<double>> out;
        for (auto* p : params()) out.push_back(p->grad);
        Tape<double> tape;
        this->out(hidden(tape.constant(x)));
        out.push_back(drop.last_mask());
        out.push_back(depth.last_mask());
        return out;
    }
};

}  // namespace

TEST_CASE("a checkpointed block with dropout and a zero last layer, whose output hides the masks, gets the "
          "gradients of the plain block: the rerun draws the forward pass's masks", "[checkpoint]")
{
    RandomNet net;
    net.last.weight().mutable_value().fill(0);
    net.last.bias()->mutable_value().fill(0);
    const Tensor<double> x = randn({5, 4}, 22), c = randn({5, 3}, 23);
    auto run = [&](bool checkpointed) {
        net.reset();
        Tape<double> tape;
        const auto xv = tape.constant(x);
        const auto y = checkpointed
                           ? ad::checkpoint([&net](const Vars& in) { return net.out(net.hidden(in[0])); }, {xv})
                           : net.out(net.hidden(xv));
        CHECK(xt::all(xt::equal(y.value(), 0.0)));
        ad::backward(ad::sum(y * tape.constant(c)));
        return net.grads_and_next_masks(x);
    };
    const auto plain = run(false), checkpointed = run(true);
    // d/dW_last = c^T (the dropped hidden layer): it holds the masks, and is not zero
    REQUIRE(xt::any(xt::not_equal(plain[2], 0.0)));
    for (std::size_t k = 0; k < plain.size(); ++k) {
        CAPTURE(k);
        CHECK(same_bits(checkpointed[k], plain[k]));
    }
}

TEST_CASE("checkpoint replays dropout and stochastic depth, nested too, where the output depends on the masks, "
          "and leaves the generators where the plain block leaves them", "[checkpoint]")
{
    RandomNet net;
    const Tensor<double> x = randn({5, 4}, 24), c = randn({5, 3}, 25);
    auto run = [&](int how) {
        net.reset();
        Tape<double> tape;
        const auto xv = tape.constant(x);
        Var<double> y;
        if (how == 0) {
            y = net.out(net.hidden(xv));
        } else if (how == 1) {
            y = ad::checkpoint([&net](const Vars& in) { return net.out(net.hidden(in[0])); }, {xv});
        } else {
            y = ad::checkpoint(
                [&net](const Vars& in) {
                    return net.out(ad::checkpoint([&net](const Vars& h) { return net.hidden(h[0]); }, {in[0]}));
                },
                {xv});
        }
        // A draw between the forward and the backward pass moves the generators on; the rerun
        // must still draw the forward pass's masks.
        Tape<double> other;
        net.hidden(other.constant(x));
        ad::backward(ad::sum(y * tape.constant(c)));
        return net.grads_and_next_masks(x);
    };
    const auto plain = run(0);
    REQUIRE(xt::any(xt::not_equal(plain[0], 0.0)));
    REQUIRE(xt::any(xt::equal(plain[plain.size() - 2], 0.0)));  // some units dropped
    for (const int how : {1, 2}) {
        CAPTURE(how);
        const auto got = run(how);
        for (std::size_t k = 0; k < plain.size(); ++k) {
            CAPTURE(k);
            CHECK(same_bits(got[k], plain[k]));
        }
    }
}

TEST_CASE("a dropout module made inside a checkpointed block, gone by the backward pass, is left alone: the "
          "rerun makes it afresh and draws the same mask", "[checkpoint]")
{
    const Tensor<double> x = randn({4, 6}, 26), c = randn({4, 6}, 27);
    auto block = [](const Vars& in) {
        nn::Dropout<double> drop(0.5, 41);
        return drop(ad::exp(in[0]));
    };
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto plain = ad::grad(ad::sum(block(Vars{xv}) * tape.constant(c)), {xv})[0];
    const auto checkpointed = ad::grad(ad::sum(ad::checkpoint(block, {xv}) * tape.constant(c)), {xv})[0];
    REQUIRE(xt::any(xt::equal(plain, 0.0)));  // some units dropped
    CHECK(same_bits(checkpointed, plain));
}

TEST_CASE("a checkpointed stack gives the loss and parameter gradients of the plain stack bit for bit, "
          "with fewer records on the tape", "[checkpoint]")
{
    const std::size_t depth = 8, width = 6;
    Stack stack(depth, width);
    const Tensor<double> x = randn({4, width}, 1), target = randn({4, width}, 2);

    auto step = [&](std::size_t every, Tape<double>& tape) {
        stack.zero_grad();
        const auto loss = ad::mse(stack(tape.constant(x), every), tape.constant(target));
        ad::backward(loss);
        return loss.value();
    };
    Tape<double> plain_tape;
    const Tensor<double> plain_loss = step(0, plain_tape);
    const auto plain = stack.grads();
    for (const std::size_t every : {1, 2, 3, 8}) {
        CAPTURE(every);
        Tape<double> tape;
        CHECK(same_bits(step(every, tape), plain_loss));
        const auto grads = stack.grads();
        for (std::size_t k = 0; k < grads.size(); ++k) {
            CAPTURE(k);
            CHECK(same_bits(grads[k], plain[k]));
        }
        // The plain tape holds every block's records; this one one record per checkpoint, the
        // input, the target and the loss.
        CHECK(tape.size() == (depth + every - 1) / every + 3);
        CHECK(tape.size() < plain_tape.size());
    }
}

TEST_CASE("checkpoint passes gradients to its inputs: grad() and backward() agree with the plain block",
          "[checkpoint]")
{
    Stack stack(3, 5);
    const Tensor<double> x = randn({2, 5}, 3);
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto plain = ad::grad(ad::sum(ad::square(stack(xv, 0))), {xv})[0];
    const auto checked = ad::grad(ad::sum(ad::square(stack(xv, 2))), {xv})[0];
    CHECK(same_bits(checked, plain));
    // grad() leaves the parameters' .grad alone, through the checkpoint too
    for (const auto* p : stack.params) CHECK_FALSE(p->has_grad());
}

TEST_CASE("checkpoint is gradchecked in every input, with a parameter read inside the block", "[checkpoint][gradcheck]")
{
    Parameter<double> w(randn({3}, 4));
    const Tensor<double> a = randn({2, 3}, 5), b = randn({3}, 6);
    auto f = [&w](const Vars& v) {
        return ad::checkpoint(
            [&w](const Vars& in) { return ad::tanh(in[0] * in[1]) * in[0].tape().param(w); }, {v[0], v[1]});
    };
    require_first_order_gradcheck(f, {a, b});

    // The parameter's gradient: d sum(tanh(a b) w) / dw = sum over rows of tanh(a b).
    Tape<double> tape;
    w.zero_grad();
    ad::backward(ad::sum(f({tape.constant(a), tape.constant(b)})));
    const Tensor<double> expected = xt::sum(xt::tanh(a * b), {0});
    // Different computations: the op's vectorised tanh and sum_to kernel against xtensor's lazy
    // reduction, whose tanh differs by an ulp on some instruction sets. Each term is a tanh,
    // |tanh| <= 1: a few ulps of two terms stay under 1e-15 absolute, cancellation or not.
    CHECK(xt::allclose(w.grad, expected, 1e-14, 1e-15));
}

TEST_CASE("checkpoints nest: a checkpoint inside a checkpoint gives the plain gradients", "[checkpoint]")
{
    Stack stack(4, 4);
    const Tensor<double> x = randn({3, 4}, 8);
    Tape<double> tape;
    const auto xv = tape.variable(x);
    const auto plain = ad::grad(ad::sum(stack(xv, 0)), {xv})[0];
    const auto nested = ad::checkpoint(
        [&](const Vars& in) {
            const auto half = ad::checkpoint([&](const Vars& h) { return (*stack.blocks[1])((*stack.blocks[0])(h[0])); },
                                             {in[0]});
            return (*stack.blocks[3])((*stack.blocks[2])(half));
        },
        {xv});
    CHECK(same_bits(ad::grad(ad::sum(nested), {xv})[0], plain));
}

TEST_CASE("checkpoint refuses a block that computes a different output when run again, and a "
          "create_graph sweep through it, naming the op", "[checkpoint][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(randn({3}, 9));
    int calls = 0;
    const auto y = ad::checkpoint([&calls](const Vars& in) { return in[0] * double(++calls); }, {x});
    CHECK_THROWS_WITH(ad::backward(ad::sum(y)), Catch::Matchers::Contains("checkpoint") &&
                                                    Catch::Matchers::Contains("different output") &&
                                                    Catch::Matchers::Contains("deterministic"));
    const auto z = ad::checkpoint([](const Vars& in) { return ad::sin(in[0]); }, {x});
    CHECK_THROWS_WITH(ad::grad(ad::sum(z), {x}, ad::create_graph),
                      Catch::Matchers::Contains("'checkpoint'") && Catch::Matchers::Contains("differentiable VJP"));
    Tape<double> other;
    const auto elsewhere = other.variable(randn({3}, 10));
    CHECK_THROWS_WITH(ad::checkpoint([&](const Vars&) { return elsewhere; }, {x}),
                      Catch::Matchers::Contains("checkpoint") && Catch::Matchers::Contains("not computed on the tape"));
}

TEST_CASE("checkpoint under NoGrad records a constant, and backward() under NoGrad still reruns the block "
          "with recording on", "[checkpoint]")
{
    Parameter<double> w(randn({3}, 11));
    const Tensor<double> a = randn({3}, 12);
    auto block = [&w](const Vars& in) { return ad::exp(in[0]) * in[0].tape().param(w); };
    Tape<double> tape;
    {
        const ad::NoGrad off;
        const auto y = ad::checkpoint(block, {tape.constant(a)});
        CHECK_FALSE(y.requires_grad());
        // the op's vectorised exp against xtensor's lazy one: an ulp or two apart on some ISAs
        CHECK(xt::allclose(y.value(), xt::exp(a) * w.value(), 1e-14, 0.0));
    }
    tape.clear();
    const auto y = ad::checkpoint(block, {tape.constant(a)});
    REQUIRE(y.requires_grad());  // the parameter inside needs a gradient though the input does not
    const auto total = ad::sum(y);
    w.zero_grad();
    {
        const ad::NoGrad off;
        ad::backward(total);
    }
    CHECK(xt::allclose(w.grad, xt::exp(a), 1e-14, 0.0));  // as above: two exp implementations
}
