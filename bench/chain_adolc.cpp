// The op chain (chain.hpp) in ADOL-C, a benchmark-only peer. The ops are recorded on one tape
// between trace_on and trace_off with the values kept (keep = 1), so fos_reverse sweeps the
// tape at once, without the forward re-evaluation that ADOL-C's gradient() driver would add.
// The tape's buffers are sized for the chain so that it stays in memory (ADOL-C writes a tape
// that outgrows them to files); a recording that went to a file is an error here.
#include "chain.hpp"

#include <adolc/adolc.h>

#include <stdexcept>
#include <string>

namespace bench {

namespace {

constexpr short tag = 1;

class ChainAdolc : public Chain {
public:
    explicit ChainAdolc(std::size_t n) : n_(n) {}

    void record() override
    {
        // Per op of the chain ADOL-C stores two operations (the op and an assignment), about 4.6
        // locations, 0.6 values and 2.2 Taylor values; bounds above that, checked after the
        // recording. Buffers are filled as the tape grows (untouched pages cost no memory).
        trace_on(tag, 1, uint(3 * n_ + 256), uint(6 * n_ + 256), uint(n_ + 256), uint(3 * n_ + 256));
        adouble x, a, b;
        x <<= chain_x;
        a <<= chain_a;
        b <<= chain_b;
        adouble v = x;
        for (std::size_t k = 0; k < n_; ++k) {
            switch (k % 5) {
            case 0: v = tanh(v); break;
            case 1: v = v * a; break;
            case 2: v = v + b; break;
            case 3: v = sin(v); break;
            default: v = exp(v); break;
            }
        }
        v >>= last.y;
        trace_off();
        if (!checked_) {
            std::size_t s[STAT_SIZE];
            tapestats(tag, s);
            if (s[OP_FILE_ACCESS] || s[LOC_FILE_ACCESS] || s[VAL_FILE_ACCESS])
                throw std::runtime_error("ADOL-C wrote the chain's tape to files: " + tape_stats());
            checked_ = true;
        }
    }

    void sweep() override
    {
        double u = 1, g[3];
        if (fos_reverse(tag, 1, 3, &u, g) < 0) throw std::runtime_error("ADOL-C: fos_reverse failed");
        last.dx = g[0];
        last.da = g[1];
        last.db = g[2];
    }

    std::string tape_stats() override
    {
        std::size_t s[STAT_SIZE];
        tapestats(tag, s);
        return "operations " + std::to_string(s[NUM_OPERATIONS]) + ", locations " +
               std::to_string(s[NUM_LOCATIONS]) + ", values " + std::to_string(s[NUM_VALUES]) +
               ", Taylor stack " + std::to_string(s[TAY_STACK_SIZE]) + ", max live " +
               std::to_string(s[NUM_MAX_LIVES]) + ", written to files: " +
               (s[OP_FILE_ACCESS] || s[LOC_FILE_ACCESS] || s[VAL_FILE_ACCESS] ? "yes" : "no");
    }

private:
    std::size_t n_;
    bool checked_ = false;
};

}  // namespace

std::unique_ptr<Chain> make_chain_adolc(std::size_t n) { return std::make_unique<ChainAdolc>(n); }

}  // namespace bench
