// Bench configuration f: one training step of a LeNet-like CNN on 28x28 single-channel images,
// batch 64:
//   conv 5x5 1->16, ReLU, max pool 2  ->  [64, 16, 12, 12]
//   conv 5x5 16->32, ReLU, max pool 2 ->  [64, 32, 4, 4]
//   flatten 512, Linear 512->128, ReLU, Linear 128->10, cross-entropy, SGD (lr 0.01).
// The same numbers (weights, images, labels) feed each library; a Trainer is configs.hpp's.
#pragma once

#include "configs.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bench::cnn {

constexpr std::size_t batch = 64, side = 28, c1 = 16, c2 = 32, k = 5, hidden = 128, classes = 10;
constexpr std::size_t flat = c2 * 4 * 4;  // after the second pool
constexpr float lr = 0.01f;

struct CnnInit {
    std::vector<float> w1, b1, w2, b2, w3, b3, w4, b4;  // PyTorch's layouts and default init bounds
    std::vector<float> x;                               // [batch, 1, 28, 28]
    std::vector<std::int64_t> labels;                   // [batch]
};
CnnInit make_cnn_init(std::uint64_t seed = 7);

std::unique_ptr<Trainer> make_cnn_ours(const CnnInit& init);
std::unique_ptr<Trainer> make_cnn_libtorch(const CnnInit& init);
// The step's matrix products alone, as this engine lowers them (im2col GEMMs for the
// convolutions, one product per linear layer and pass), into preallocated buffers.
std::unique_ptr<Trainer> make_cnn_gemm_only();

// libtorch's intra-op threads (its OpenMP pool), its inter-op pool (settable once, before any
// work) and version; here so that only cnn_libtorch.cpp includes torch's headers.
void set_torch_threads(int n);
void set_torch_interop_threads(int n);
std::string torch_version();

}  // namespace bench::cnn
