#include "nn/residual.hpp"

#include "nn/dropout.hpp"
#include "nn/layer_norm.hpp"
#include "nn/stochastic_depth.hpp"

namespace ad::nn {

template <class T>
Residual<T>::Residual(std::shared_ptr<Module<T>> branch)
{
    branch_ = &this->register_module("branch", std::move(branch));
}

template <class T>
Var<T> Residual<T>::forward(const Var<T>& x)
{
    const Var<T> fx = branch_->forward(x);
    // add() would broadcast a [batch, 1] branch silently; a residual needs equal shapes.
    if (!equal_shapes(fx.shape(), x.shape()))
        throw Error("Residual: the branch maps shape " + shape_str(x.shape()) + " to " + shape_str(fx.shape()) +
                    "; z + f(z) needs f(z) shaped like z");
    return x + fx;
}

template <class T>
ResidualBlock<T>::ResidualBlock(std::shared_ptr<Linear<T>> linear, std::shared_ptr<Module<T>> activation,
                                bool layer_norm, T dropout, T drop_path, Rng& rng)
{
    if (!linear || !activation) throw Error("ResidualBlock: the linear layer and the activation are required");
    const std::size_t width = linear->out_features();
    if (linear->in_features() != width)
        throw Error("ResidualBlock: the linear layer maps " + std::to_string(linear->in_features()) + " to " +
                    std::to_string(width) + " features; a residual block needs a square one");
    linear_ = &this->register_module("linear", std::move(linear));
    if (layer_norm) norm_ = &this->register_module("norm", std::make_shared<LayerNorm<T>>(width));
    act_ = &this->register_module("act", std::move(activation));
    if (dropout != T(0)) dropout_ = &this->register_module("dropout", std::make_shared<Dropout<T>>(dropout, rng()));
    if (drop_path != T(0))
        drop_path_ = &this->register_module("drop_path", std::make_shared<StochasticDepth<T>>(drop_path, rng()));
}

template <class T>
Var<T> ResidualBlock<T>::forward(const Var<T>& x)
{
    Var<T> h = linear_->forward(x);
    if (norm_) h = norm_->forward(h);
    h = act_->forward(h);
    if (dropout_) h = dropout_->forward(h);
    if (drop_path_) h = drop_path_->forward(h);
    return x + h;
}

template class Residual<float>;
template class Residual<double>;
template class ResidualBlock<float>;
template class ResidualBlock<double>;

}  // namespace ad::nn
