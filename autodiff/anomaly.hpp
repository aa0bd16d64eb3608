// Anomaly mode: the first op whose output (forward) or whose input adjoint (backward) holds a
// NaN or an infinity raises ad::Error naming the op, its position on the tape and the shapes.
// Off by default; when off it costs one thread-local flag test per op.
#pragma once

#include "autodiff/tape.hpp"

namespace ad {

class DetectAnomaly {
public:
    explicit DetectAnomaly(bool on = true);
    ~DetectAnomaly();
    DetectAnomaly(const DetectAnomaly&) = delete;
    DetectAnomaly& operator=(const DetectAnomaly&) = delete;

private:
    bool previous_;
};
namespace detail {
inline thread_local bool anomaly_mode = false;
}
inline bool anomaly_enabled() { return detail::anomaly_mode; }

// Throws if record `index` holds a non-finite value.
template <class T>
void check_forward_anomaly(const Tape<T>& tape, std::size_t index);
// Throws if the VJP of record `index` left a non-finite adjoint in one of its inputs.
template <class T>
class Sweep;
template <class T>
void check_backward_anomaly(Sweep<T>& sweep, std::size_t index);

}  // namespace ad
