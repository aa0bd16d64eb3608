// The BLAS floor of configuration f: the matrix products of the step as this engine lowers
// them, back to back into preallocated buffers, and nothing else (no im2col, pooling, ReLU or
// loss). For a convolution with weight W [F, C k k], unfolded input cols [C k k, N P] and
// output cotangent G [F, N P]: forward Y = W cols, backward dW = G cols^T and, except for the
// first layer (its input is data), dcols = W^T G. Linear layers as in gemm_only.cpp.
#include "cnn.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xtensor.hpp>

namespace bench::cnn {

namespace {

using Matrix = xt::xtensor<float, 2>;

struct Product {
    Matrix A, B, C;
    bool ta, tb;
};

class GemmOnly : public Trainer {
public:
    GemmOnly()
    {
        const std::size_t P1 = 24 * 24, P2 = 8 * 8;
        // conv1: W [16, 25], cols [25, N P1]
        add({c1, k * k}, {k * k, batch * P1}, false, false);       // Y = W cols
        add({c1, batch * P1}, {k * k, batch * P1}, false, true);   // dW = G cols^T
        // conv2: W [32, 400], cols [400, N P2]
        add({c2, c1 * k * k}, {c1 * k * k, batch * P2}, false, false);
        add({c2, batch * P2}, {c1 * k * k, batch * P2}, false, true);
        add({c2, c1 * k * k}, {c2, batch * P2}, true, false);      // dcols = W^T G
        // fc1: X [N, 512], W [128, 512]; fc2: X [N, 128], W [10, 128]
        for (auto [in, out] : {std::pair<std::size_t, std::size_t>{flat, hidden}, {hidden, classes}}) {
            add({batch, in}, {out, in}, false, true);    // Y = X W^T
            add({batch, out}, {batch, in}, true, false);  // dW = G^T X
            add({batch, out}, {out, in}, false, false);   // dX = G W
        }
    }

    void step() override
    {
        for (auto& p : products_) xt::blas::gemm(p.A, p.B, p.C, p.ta, p.tb);
    }
    double loss() override { return 0; }

private:
    void add(std::array<std::size_t, 2> a, std::array<std::size_t, 2> b, bool ta, bool tb)
    {
        Product p;
        p.A = Matrix::from_shape(a);
        p.B = Matrix::from_shape(b);
        p.C = Matrix::from_shape({ta ? a[1] : a[0], tb ? b[0] : b[1]});
        p.A.fill(0.01f), p.B.fill(0.01f), p.C.fill(0);
        p.ta = ta, p.tb = tb;
        products_.push_back(std::move(p));
    }
    std::vector<Product> products_;
};

}  // namespace

std::unique_ptr<Trainer> make_cnn_gemm_only() { return std::make_unique<GemmOnly>(); }

}  // namespace bench::cnn
