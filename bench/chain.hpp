// The cost of one recorded op: a chain of n one-element ops in double,
//
//     v_0 = x,   v_k = f_k(v_{k-1}),   f_k cycling  tanh(v), v * a, v + b, sin(v), exp(v),
//
// recorded and swept backward for dy/dx, dy/da, dy/db (y = v_n; x, a, b are the three inputs),
// in this engine (ad::Tape, ad::grad), in libtorch (0-dim tensors with requires_grad,
// torch::autograd::grad) and in ADOL-C (adouble between trace_on and trace_off, keeping the
// values for fos_reverse). One step() is one recording and one sweep.
//
// The cycle's derivative has modulus below one, so dy/dx underflows to 0 after a few thousand
// ops in every library alike (and in exact arithmetic it is below 1e-300); dy/da and dy/db are
// dominated by the last ops and are the figures compared with the reference.
#pragma once

#include "configs.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace bench {

constexpr double chain_x = 0.3, chain_a = 0.9, chain_b = 0.1;

struct ChainResult {
    double y = 0, dx = 0, da = 0, db = 0;
};

class Chain : public Trainer {
public:
    void step() override
    {
        record();
        sweep();
    }
    double loss() override { return last.y; }

    // The two halves of a step. The first record() of a new Chain records on a fresh tape (a
    // cold recording); later ones reuse it (cleared, or retaped under the same tag).
    virtual void record() = 0;
    virtual void sweep() = 0;
    // What the library stores for the last recording, when it says so (ADOL-C's tapestats).
    virtual std::string tape_stats() { return ""; }

    ChainResult last;
};

std::unique_ptr<Chain> make_chain_ours(std::size_t n);
std::unique_ptr<Chain> make_chain_libtorch(std::size_t n);
std::unique_ptr<Chain> make_chain_adolc(std::size_t n);

// The same values and derivatives by forward accumulation (value and derivative carried
// together through each op) in plain double: an independent reference.
ChainResult chain_reference(std::size_t n);

}  // namespace bench
