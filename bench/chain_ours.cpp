// The op chain (chain.hpp) in this engine, on one tape cleared before every recording, and the
// forward-mode reference it is checked against.
#include "chain.hpp"

#include "autodiff/autodiff.hpp"

#include <cmath>

namespace bench {

namespace {

class ChainOurs : public Chain {
public:
    explicit ChainOurs(std::size_t n) : n_(n) {}

    void record() override
    {
        tape_.clear();
        x = tape_.variable(x_);
        a = tape_.variable(a_);
        b = tape_.variable(b_);
        v = x;
        for (std::size_t k = 0; k < n_; ++k) {
            switch (k % 5) {
            case 0: v = ad::tanh(v); break;
            case 1: v = v * a; break;
            case 2: v = v + b; break;
            case 3: v = ad::sin(v); break;
            default: v = ad::exp(v); break;
            }
        }
    }

    void sweep() override
    {
        const auto g = ad::grad(v, {x, a, b});
        last = {v.item(), g[0](), g[1](), g[2]()};
    }

private:
    std::size_t n_;
    ad::Var<double> x, a, b, v;
    ad::Tape<double> tape_;
    ad::Tensor<double> x_ = chain_x, a_ = chain_a, b_ = chain_b;  // 0-dim
};

// A value and its derivatives with respect to x, a and b, carried forward together.
struct Dual {
    double v, dx, da, db;
};

}  // namespace

std::unique_ptr<Chain> make_chain_ours(std::size_t n) { return std::make_unique<ChainOurs>(n); }

ChainResult chain_reference(std::size_t n)
{
    Dual v{chain_x, 1, 0, 0};
    auto scale = [](Dual& d, double s) {
        d.dx *= s;
        d.da *= s;
        d.db *= s;
    };
    for (std::size_t k = 0; k < n; ++k) {
        switch (k % 5) {
        case 0: {
            const double t = std::tanh(v.v);
            scale(v, 1 - t * t);
            v.v = t;
            break;
        }
        case 1:  // (v a)' = v' a + v a'
            scale(v, chain_a);
            v.da += v.v;
            v.v *= chain_a;
            break;
        case 2:
            v.db += 1;
            v.v += chain_b;
            break;
        case 3:
            scale(v, std::cos(v.v));
            v.v = std::sin(v.v);
            break;
        default:
            v.v = std::exp(v.v);
            scale(v, v.v);
            break;
        }
    }
    return {v.v, v.dx, v.da, v.db};
}

}  // namespace bench
