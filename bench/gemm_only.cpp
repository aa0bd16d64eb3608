// The BLAS floor of a training step: for every Linear layer with input X [batch, in], weight
// W [out, in] and output cotangent G [batch, out], the products the step needs and no other work:
//   forward  Y = X W^T,  backward  dW += G^T X  and  dX = G W  (not for the first layer, whose
//   input is data). Same shapes and transposes as the engine's matmul, into preallocated results.
#include "configs.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xtensor.hpp>

namespace bench {

namespace {

template <class T>
class GemmOnly : public Trainer {
public:
    explicit GemmOnly(const Config& c)
    {
        using Matrix = xt::xtensor<T, 2>;
        for (auto [in, out] : c.linear_shapes()) {
            Layer l;
            l.X = Matrix::from_shape({c.batch, in});
            l.W = Matrix::from_shape({out, in});
            l.Y = Matrix::from_shape({c.batch, out});
            l.G = Matrix::from_shape({c.batch, out});
            l.dW = Matrix::from_shape({out, in});
            l.dX = Matrix::from_shape({c.batch, in});
            for (Matrix* m : {&l.X, &l.W, &l.Y, &l.G, &l.dW, &l.dX}) m->fill(T(0.01));
            layers_.push_back(std::move(l));
        }
    }

    void step() override
    {
        for (auto& l : layers_) xt::blas::gemm(l.X, l.W, l.Y, false, true);
        for (std::size_t i = layers_.size(); i-- > 0;) {
            auto& l = layers_[i];
            xt::blas::gemm(l.G, l.X, l.dW, true, false, T(1), T(1));
            if (i > 0) xt::blas::gemm(l.G, l.W, l.dX, false, false);
        }
    }

    double loss() override { return 0; }

private:
    struct Layer {
        xt::xtensor<T, 2> X, W, Y, G, dW, dX;
    };
    std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Trainer> make_gemm_only(const Config& c, Precision p)
{
    if (p == Precision::f64) return std::make_unique<GemmOnly<double>>(c);
    return std::make_unique<GemmOnly<float>>(c);
}

}  // namespace bench
