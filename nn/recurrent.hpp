// Recurrent layers: RNN (tanh), LSTM and GRU, batch first, stacked num_layers deep; PyTorch's
// torch.nn.RNN / LSTM / GRU with batch_first=True, the same equations, parameter names and
// default initialisation, so a PyTorch state dict loads as it is.
//
// Layer k (k = 0 .. num_layers - 1) reads the previous layer's outputs (the input x for k = 0)
// and has, with G gates (RNN 1, LSTM 4, GRU 3) and H = hidden_size,
//   weight_ih_l{k} [G*H, in_k], weight_hh_l{k} [G*H, H], bias_ih_l{k} [G*H], bias_hh_l{k} [G*H]
// (in_0 = input_size, in_k = H above). Per time step t, with a_t = W_ih x_t + b_ih and
// b_t = W_hh h_{t-1} + b_hh split into H-wide blocks in PyTorch's gate order:
//   RNN   h_t = tanh(a_t + b_t)
//   LSTM  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the blocks of a_t + b_t,
//         c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)
//   GRU   r, z = sigmoid of the r and z blocks of a_t + b_t,
//         n = tanh(a_n + r * b_n)  (the recurrent block with its bias inside the product),
//         h_t = (1 - z) * n + z * h_{t-1}
// Every weight and bias starts U(-1/sqrt(H), 1/sqrt(H)), as in PyTorch.
//
// The sequence is unrolled on the tape, one step per time index, from tape ops only (no
// backward pass of its own). The input projection of a layer is one GEMM over all time steps,
// [B*T, in] x [in, G*H]; only the recurrent product is taken per step.
//
// Truncated backpropagation through time: forward(x, state) starts from a given state and
// returns the final one. To carry it to the next chunk without backpropagating into the
// previous one, copy its values before clearing the tape and record them as constants:
//     auto r = lstm.forward(x1, state);
//     Tensor<T> h = r.h_n.value(), c = r.c_n.value();   // before tape.clear()
//     ... backward, step, tape.clear() ...
//     r = lstm.forward(x2, {tape.constant(h), tape.constant(c)});
// Passing r.h_n itself on the same tape instead backpropagates through both chunks.
#pragma once

#include "nn/module.hpp"

#include <string>
#include <utility>
#include <vector>

namespace ad::nn {

struct RecurrentOptions {
    std::size_t num_layers = 1;
    bool bias = true;  // bias_ih and bias_hh in every layer
};

// An initial state: h [num_layers, batch, hidden_size], and c of the same shape for an LSTM.
// An empty Var (default constructed) stands for zeros.
template <class T>
struct RecurrentState {
    Var<T> h;
    Var<T> c;  // LSTM only
};

template <class T>
struct RecurrentResult {
    Var<T> output;  // [batch, seq_len, hidden_size]: the last layer's h_t for every t
    Var<T> h_n;     // [num_layers, batch, hidden_size]: every layer's h at the last step
    Var<T> c_n;     // LSTM: the cell states at the last step, same shape; empty otherwise
};

// What RNN, LSTM and GRU share: parameters, checks, the unrolled loop. The cell is theirs.
template <class T>
class RecurrentBase : public Module<T> {
public:
    // x [batch, seq_len, input_size] -> output [batch, seq_len, hidden_size], from a zero state.
    Var<T> forward(const Var<T>& x) override { return forward(x, RecurrentState<T>{}).output; }
    RecurrentResult<T> forward(const Var<T>& x, const RecurrentState<T>& state);
    // libtorch's words: "LSTM(input_size=3, hidden_size=4, num_layers=2, bias=true,
    // batch_first=true, dropout=0, bidirectional=false)".
    std::string describe() const override;

    std::size_t input_size() const { return input_size_; }
    std::size_t hidden_size() const { return hidden_size_; }
    std::size_t num_layers() const { return layers_.size(); }
    bool bias() const { return bias_; }
    Parameter<T>& weight_ih(std::size_t layer) { return *layer_at(layer).w_ih; }
    Parameter<T>& weight_hh(std::size_t layer) { return *layer_at(layer).w_hh; }
    Parameter<T>* bias_ih(std::size_t layer) { return layer_at(layer).b_ih; }  // nullptr without a bias
    Parameter<T>* bias_hh(std::size_t layer) { return layer_at(layer).b_hh; }

protected:
    RecurrentBase(const char* name, std::size_t gates, bool has_cell, std::size_t input_size,
                  std::size_t hidden_size, Rng& rng, const RecurrentOptions& options);

    // One time step. xw = W_ih x_t + b_ih and hw = W_hh h + b_hh, both [batch, gates*H]; h and c
    // the previous state (c empty but for an LSTM). Returns the new h and c.
    virtual std::pair<Var<T>, Var<T>> cell(const Var<T>& xw, const Var<T>& hw, const Var<T>& h,
                                           const Var<T>& c) = 0;

private:
    struct Layer {
        Parameter<T>* w_ih = nullptr;
        Parameter<T>* w_hh = nullptr;
        Parameter<T>* b_ih = nullptr;
        Parameter<T>* b_hh = nullptr;
    };
    Layer& layer_at(std::size_t layer);
    // A given h0 or c0: on x's tape, of shape [num_layers, batch, hidden_size].
    void check_state(const Var<T>& given, const char* which, const Var<T>& x, std::size_t batch) const;
    // h0 or c0 for every layer: the given [L, B, H] tensor split along axis 0, or zeros.
    std::vector<Var<T>> initial(const Var<T>& given, const Var<T>& x, std::size_t batch);

    const char* name_;
    std::size_t gates_;
    bool has_cell_;
    std::size_t input_size_, hidden_size_;
    bool bias_;
    std::vector<Layer> layers_;
};

// Elman RNN with tanh: torch.nn.RNN(input_size, hidden_size, num_layers, bias, batch_first=True).
template <class T>
class RNN : public RecurrentBase<T> {
public:
    RNN(std::size_t input_size, std::size_t hidden_size, Rng& rng, const RecurrentOptions& options = {});

private:
    std::pair<Var<T>, Var<T>> cell(const Var<T>& xw, const Var<T>& hw, const Var<T>& h, const Var<T>& c) override;
};

template <class T>
class LSTM : public RecurrentBase<T> {
public:
    LSTM(std::size_t input_size, std::size_t hidden_size, Rng& rng, const RecurrentOptions& options = {});

private:
    std::pair<Var<T>, Var<T>> cell(const Var<T>& xw, const Var<T>& hw, const Var<T>& h, const Var<T>& c) override;
};

template <class T>
class GRU : public RecurrentBase<T> {
public:
    GRU(std::size_t input_size, std::size_t hidden_size, Rng& rng, const RecurrentOptions& options = {});

private:
    std::pair<Var<T>, Var<T>> cell(const Var<T>& xw, const Var<T>& hw, const Var<T>& h, const Var<T>& c) override;
};

extern template class RecurrentBase<float>;
extern template class RecurrentBase<double>;
extern template class RNN<float>;
extern template class RNN<double>;
extern template class LSTM<float>;
extern template class LSTM<double>;
extern template class GRU<float>;
extern template class GRU<double>;

}  // namespace ad::nn
