#include "nn/recurrent.hpp"

#include "nn/init.hpp"

#include <cmath>

namespace ad::nn {

template <class T>
RecurrentBase<T>::RecurrentBase(const char* name, std::size_t gates, bool has_cell, std::size_t input_size,
                                std::size_t hidden_size, Rng& rng, const RecurrentOptions& options)
    : name_(name), gates_(gates), has_cell_(has_cell), input_size_(input_size), hidden_size_(hidden_size),
      bias_(options.bias)
{
    if (input_size == 0 || hidden_size == 0 || options.num_layers == 0)
        throw Error(std::string(name) + ": input_size, hidden_size and num_layers must be positive, got " +
                    std::to_string(input_size) + ", " + std::to_string(hidden_size) + " and " +
                    std::to_string(options.num_layers));
    const std::size_t H = hidden_size, G = gates * H;
    const T bound = T(1) / std::sqrt(T(H));
    for (std::size_t k = 0; k < options.num_layers; ++k) {
        const std::string l = "_l" + std::to_string(k);
        Layer layer;
        layer.w_ih = &this->register_parameter("weight_ih" + l, uniform<T>({G, k == 0 ? input_size : H}, -bound, bound, rng));
        layer.w_hh = &this->register_parameter("weight_hh" + l, uniform<T>({G, H}, -bound, bound, rng));
        if (options.bias) {
            layer.b_ih = &this->register_parameter("bias_ih" + l, uniform<T>({G}, -bound, bound, rng));
            layer.b_hh = &this->register_parameter("bias_hh" + l, uniform<T>({G}, -bound, bound, rng));
        }
        layers_.push_back(layer);
    }
}

template <class T>
typename RecurrentBase<T>::Layer& RecurrentBase<T>::layer_at(std::size_t layer)
{
    if (layer >= layers_.size())
        throw Error(std::string(name_) + ": layer " + std::to_string(layer) + " does not exist, num_layers = " +
                    std::to_string(layers_.size()));
    return layers_[layer];
}

template <class T>
std::string RecurrentBase<T>::describe() const
{
    return std::string(name_) + "(input_size=" + std::to_string(input_size_) +
           ", hidden_size=" + std::to_string(hidden_size_) + ", num_layers=" + std::to_string(layers_.size()) +
           ", bias=" + (bias_ ? "true" : "false") + ", batch_first=true, dropout=0, bidirectional=false)";
}

template <class T>
void RecurrentBase<T>::check_state(const Var<T>& given, const char* which, const Var<T>& x, std::size_t batch) const
{
    if (!given.anchor()) return;
    const std::size_t L = layers_.size(), H = hidden_size_;
    const std::string what = std::string(name_) + ": the initial state " + which;
    if (&tape_of(given, what.c_str()) != &x.tape())
        throw Error(what + " is recorded on another tape than the input; record its value on the input's "
                           "tape (tape.constant(value)) to start from it");
    if (!equal_shapes(given.shape(), Shape{L, batch, H}))
        throw Error(what + " has shape " + shape_str(given.shape()) + ", expected [num_layers, batch, hidden_size] = " +
                    shape_str(Shape{L, batch, H}) + " for the input " + shape_str(x.shape()));
}

template <class T>
std::vector<Var<T>> RecurrentBase<T>::initial(const Var<T>& given, const Var<T>& x, std::size_t batch)
{
    const std::size_t L = layers_.size();
    if (!given.anchor())
        return std::vector<Var<T>>(L, x.tape().constant(Tensor<T>(xt::zeros<T>({batch, hidden_size_}))));
    std::vector<Var<T>> out;
    for (std::size_t k = 0; k < L; ++k) out.push_back(select(given, 0, static_cast<std::ptrdiff_t>(k)));
    return out;
}

template <class T>
RecurrentResult<T> RecurrentBase<T>::forward(const Var<T>& x, const RecurrentState<T>& state)
{
    const std::string name = name_;
    tape_of(x, name_);
    if (x.dimension() != 3 || x.shape()[2] != input_size_)
        throw Error(name + ": input has shape " + shape_str(x.shape()) +
                    ", expected [batch, seq_len, input_size] with input_size = " + std::to_string(input_size_) +
                    " (batch first)");
    const std::size_t B = x.shape()[0], steps = x.shape()[1], H = hidden_size_, G = gates_ * H;
    if (B == 0 || steps == 0)
        throw Error(name + ": input has shape " + shape_str(x.shape()) + ", expected a non-empty batch and sequence");
    if (!has_cell_ && state.c.anchor())
        throw Error(name + ": an initial cell state c was given, but only an LSTM has one");
    // Everything checked before anything is recorded.
    check_state(state.h, "h", x, B);
    check_state(state.c, "c", x, B);
    std::vector<Var<T>> h = initial(state.h, x, B);
    std::vector<Var<T>> c;
    if (has_cell_) c = initial(state.c, x, B);

    RecurrentResult<T> r;
    Var<T> seq = x;
    for (std::size_t k = 0; k < layers_.size(); ++k) {
        const Layer& p = layers_[k];
        const std::size_t in = seq.shape()[2];
        // Every time step's input projection in one GEMM: [B*T, in] x [in, G*H].
        const Var<T> flat = reshape(seq, Shape{B * steps, in});
        const Var<T> W_ih = this->use(*p.w_ih, x), W_hh = this->use(*p.w_hh, x);
        const Var<T> xw_all =
            reshape(p.b_ih ? affine(flat, W_ih, this->use(*p.b_ih, x)) : matmul(flat, W_ih, transpose_b),
                    Shape{B, steps, G});
        const Var<T> b_hh = p.b_hh ? this->use(*p.b_hh, x) : Var<T>();
        std::vector<Var<T>> outputs;
        outputs.reserve(steps);
        for (std::size_t t = 0; t < steps; ++t) {
            const Var<T> xw = select(xw_all, 1, static_cast<std::ptrdiff_t>(t));
            const Var<T> hw = p.b_hh ? affine(h[k], W_hh, b_hh) : matmul(h[k], W_hh, transpose_b);
            auto [h_new, c_new] = cell(xw, hw, h[k], has_cell_ ? c[k] : Var<T>());
            h[k] = h_new;
            if (has_cell_) c[k] = c_new;
            outputs.push_back(reshape(h_new, Shape{B, 1, H}));
        }
        seq = steps == 1 ? outputs[0] : concat(outputs, 1);
    }
    r.output = seq;
    auto stack = [&](const std::vector<Var<T>>& s) {
        std::vector<Var<T>> rows;
        for (const auto& v : s) rows.push_back(reshape(v, Shape{1, B, H}));
        return rows.size() == 1 ? rows[0] : concat(rows, 0);
    };
    r.h_n = stack(h);
    if (has_cell_) r.c_n = stack(c);
    return r;
}

template <class T>
RNN<T>::RNN(std::size_t input_size, std::size_t hidden_size, Rng& rng, const RecurrentOptions& options)
    : RecurrentBase<T>("RNN", 1, false, input_size, hidden_size, rng, options)
{
}

template <class T>
std::pair<Var<T>, Var<T>> RNN<T>::cell(const Var<T>& xw, const Var<T>& hw, const Var<T>&, const Var<T>&)
{
    return {tanh(xw + hw), Var<T>()};
}

template <class T>
LSTM<T>::LSTM(std::size_t input_size, std::size_t hidden_size, Rng& rng, const RecurrentOptions& options)
    : RecurrentBase<T>("LSTM", 4, true, input_size, hidden_size, rng, options)
{
}

template <class T>
std::pair<Var<T>, Var<T>> LSTM<T>::cell(const Var<T>& xw, const Var<T>& hw, const Var<T>&, const Var<T>& c)
{
    const auto H = static_cast<std::ptrdiff_t>(this->hidden_size());
    const Var<T> a = xw + hw;
    // i and f are adjacent: one sigmoid for both.
    const Var<T> i_f = sigmoid(slice(a, 1, 0, 2 * H));
    const Var<T> i = slice(i_f, 1, 0, H), f = slice(i_f, 1, H, 2 * H);
    const Var<T> g = tanh(slice(a, 1, 2 * H, 3 * H));
    const Var<T> o = sigmoid(slice(a, 1, 3 * H, 4 * H));
    const Var<T> c_new = f * c + i * g;
    return {o * tanh(c_new), c_new};
}

template <class T>
GRU<T>::GRU(std::size_t input_size, std::size_t hidden_size, Rng& rng, const RecurrentOptions& options)
    : RecurrentBase<T>("GRU", 3, false, input_size, hidden_size, rng, options)
{
}

template <class T>
std::pair<Var<T>, Var<T>> GRU<T>::cell(const Var<T>& xw, const Var<T>& hw, const Var<T>& h, const Var<T>&)
{
    const auto H = static_cast<std::ptrdiff_t>(this->hidden_size());
    const Var<T> rz = sigmoid(slice(xw, 1, 0, 2 * H) + slice(hw, 1, 0, 2 * H));
    const Var<T> r = slice(rz, 1, 0, H), z = slice(rz, 1, H, 2 * H);
    const Var<T> n = tanh(slice(xw, 1, 2 * H, 3 * H) + r * slice(hw, 1, 2 * H, 3 * H));
    // (1 - z) n + z h = n + z (h - n): one op fewer.
    return {n + z * (h - n), Var<T>()};
}

template class RecurrentBase<float>;
template class RecurrentBase<double>;
template class RNN<float>;
template class RNN<double>;
template class LSTM<float>;
template class LSTM<double>;
template class GRU<float>;
template class GRU<double>;

}  // namespace ad::nn
