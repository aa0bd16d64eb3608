#include "autodiff/anomaly.hpp"

#include "autodiff/sweep.hpp"

#include <xtensor/xmath.hpp>

namespace ad {

namespace {
template <class T>
bool all_finite(const Tensor<T>& t)
{
    for (const T& v : t)
        if (!std::isfinite(v)) return false;
    return true;
}
}  // namespace

DetectAnomaly::DetectAnomaly(bool on) : previous_(detail::anomaly_mode) { detail::anomaly_mode = on; }
DetectAnomaly::~DetectAnomaly() { detail::anomaly_mode = previous_; }

template <class T>
void check_forward_anomaly(const Tape<T>& tape, std::size_t index)
{
    const auto& r = tape.record(index);
    if (all_finite(tape.value(index))) return;
    std::string in;
    for (std::size_t k = 0; k < r.n_inputs; ++k)
        in += (k ? ", " : "") + shape_str(tape.value(tape.input(r, k)).shape());
    throw Error(std::string("anomaly: forward of op '") + r.op + "' (tape position " +
                std::to_string(index) + ", inputs " + in + ", output " +
                shape_str(tape.value(index).shape()) + ") produced NaN or Inf");
}

template <class T>
void check_backward_anomaly(Sweep<T>& sweep, std::size_t index)
{
    const Tape<T>& tape = sweep.tape;
    const auto& r = tape.record(index);
    for (std::size_t k = 0; k < r.n_inputs; ++k) {
        const auto i = tape.input(r, k);
        const auto& in = tape.record(i);
        if (!in.needs_grad || !sweep.reached(i)) continue;
        const Tensor<T>& adj = (in.param && sweep.into_params && in.needs_grad) ? in.param->grad : sweep.adjoint(i);
        if (all_finite(adj)) continue;
        throw Error(std::string("anomaly: backward of op '") + r.op + "' (tape position " +
                    std::to_string(index) + ", output " + shape_str(tape.value(index).shape()) +
                    ") produced NaN or Inf in the gradient of its input " + std::to_string(k) +
                    " of shape " + shape_str(tape.value(i).shape()) + ", recorded by op '" +
                    in.op + "' at tape position " + std::to_string(i));
    }
}

template void check_forward_anomaly(const Tape<float>&, std::size_t);
template void check_forward_anomaly(const Tape<double>&, std::size_t);
template void check_backward_anomaly(Sweep<float>&, std::size_t);
template void check_backward_anomaly(Sweep<double>&, std::size_t);

}  // namespace ad
