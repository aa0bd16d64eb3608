// Linear: y = x W^T + b.
//
// Weight layout: W has shape [out, in] (PyTorch's layout), bias b has shape [out].
// - For a batch x of shape [batch, in] (one example per row) the output is x W^T + b, of shape
//   [batch, out]. With a bias it is one ad::affine op (the bias written into the output, the
//   product added by BLAS), without one ad::matmul(x, W, ad::transpose_b): BLAS reads W^T in place,
//   nothing is transposed in memory.
// - x of shape [..., in] (a batch of sequences [batch, time, in], say) maps every leading index
//   alike, to [..., out]: one GEMM over all of them, as torch.nn.Linear does.
// - For a single example x of shape [in] the output is W x + b, of shape [out]: exactly the
//   seeds' z = W x + b with x a column vector (seeds 002, 003). Each row of the batched form is
//   this map applied to one example.
// - Seeds 000 and 001 write a layer as w^T z with w of shape [in, out]; their w is this W^T.
//
// Default initialisation is PyTorch's: kaiming_uniform with a = sqrt(5), which is
// U(-1/sqrt(in), 1/sqrt(in)) for the weight, and the same interval for the bias. With an
// explicit weight initialiser (nn/init.hpp) the bias starts at zero.
#pragma once

#include "nn/init.hpp"
#include "nn/module.hpp"

#include <type_traits>
#include <utility>

namespace ad::nn {

template <class T>
class Linear : public Module<T> {
public:
    Linear(std::size_t in, std::size_t out, Rng& rng, Bias bias = {});
    // init: any callable (shape, rng) -> Tensor<T>, such as nn::he_normal<T>. (A template, so
    // that a function or lambda is never taken for the bool `bias` of the constructor above.)
    template <class F, class = std::enable_if_t<std::is_invocable_r_v<Tensor<T>, F&, const Shape&, Rng&>>>
    Linear(std::size_t in, std::size_t out, Rng& rng, F&& init, Bias bias = {}) : in_(in), out_(out)
    {
        build(rng, WeightInit<T>(std::forward<F>(init)), bias.on);
    }
    // Given values: weight [out, in], bias [out] (or an empty tensor for no bias).
    Linear(Tensor<T> weight, Tensor<T> bias);

    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;  // "Linear(in_features=784, out_features=256, bias=true)"

    Parameter<T>& weight() { return *weight_; }
    Parameter<T>* bias() { return bias_; }  // nullptr without a bias
    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }

private:
    void build(Rng& rng, const WeightInit<T>& init, bool bias);  // empty init: the default

    std::size_t in_, out_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace ad::nn
