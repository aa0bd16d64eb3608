// The five training steps of the benchmark, described once and built by each library from the
// same numbers: layer sizes, batch, activation, loss, and one set of initial weights and data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bench {

enum class Activation { tanh, relu };
enum class Loss { mse, cross_entropy };

struct Config {
    char name;                  // 'a' .. 'e'
    std::string title;
    std::vector<std::size_t> sizes;  // an MLP's widths, input first; for residual: {width}
    std::size_t blocks = 0;          // > 0: that many residual blocks x + relu(LayerNorm(Linear(x)))
    std::size_t batch;
    Activation activation;
    Loss loss;
    float lr = 0.01f;

    bool residual() const { return blocks > 0; }
    std::size_t inputs() const { return sizes.front(); }
    std::size_t outputs() const { return residual() ? sizes.front() : sizes.back(); }
    // (in, out) of every Linear layer, in forward order.
    std::vector<std::pair<std::size_t, std::size_t>> linear_shapes() const;
};

const std::vector<Config>& configs();
const Config& config(char name);

// Initial values shared by both libraries: weight l is [out, in] row-major (PyTorch's layout and
// nn::Linear's), drawn like PyTorch's default U(-1/sqrt(in), 1/sqrt(in)), as is its bias.
// Layer norms start at weight 1, bias 0 in both libraries.
struct Init {
    std::vector<std::vector<float>> weight, bias;
    std::vector<float> x;           // [batch, inputs]
    std::vector<float> target;      // [batch, outputs] for MSE
    std::vector<std::int64_t> labels;  // [batch] for cross-entropy
};
Init make_init(const Config& c, std::uint64_t seed = 5);

// The element type a step computes in. float32 is the default; float64 rows exist for the
// configurations gradient checks and course work run in double (c and e).
enum class Precision { f32, f64 };
const char* precision_name(Precision p);  // "float32", "float64"

// One library's training step for one configuration.
class Trainer {
public:
    virtual ~Trainer() = default;
    // zero the gradients, forward, loss, backward, SGD update
    virtual void step() = 0;
    // the loss the last step computed (at the weights before its update)
    virtual double loss() = 0;
};

std::unique_ptr<Trainer> make_ours(const Config& c, const Init& init, Precision p = Precision::f32);
// The same step with anomaly mode on (ad::DetectAnomaly): every op's output and every gradient
// checked for NaN and Inf.
std::unique_ptr<Trainer> make_ours_anomaly(const Config& c, const Init& init,
                                           Precision p = Precision::f32);
// This engine's step split in phases, microseconds per step over `steps` steps: zero the
// gradients, forward and loss, backward, SGD update.
std::array<double, 4> ours_phase_us(const Config& c, const Init& init, long steps);
std::unique_ptr<Trainer> make_libtorch(const Config& c, const Init& init, Precision p = Precision::f32);
// The same step written by hand without a tape (handwritten.cpp): the floor a tape could reach.
std::unique_ptr<Trainer> make_handwritten(const Config& c, const Init& init,
                                          Precision p = Precision::f32);
// The same matrix products the step needs, back to back, through xt::blas::gemm.
std::unique_ptr<Trainer> make_gemm_only(const Config& c, Precision p = Precision::f32);

// VmHWM of this process in MiB (peak resident set), from /proc/self/status.
double peak_rss_mb();

}  // namespace bench

namespace bench {
// libtorch's thread settings (intra-op: its OpenMP pool; inter-op: settable once, before any work)
// and its version string, kept here so that only libtorch.cpp includes torch's headers.
void set_libtorch_threads(int n);
int libtorch_threads();
void set_libtorch_interop_threads(int n);
std::string libtorch_version();
}  // namespace bench
