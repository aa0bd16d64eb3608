// Seeing values and tapes while debugging.
//
//   std::cout << y;                 // Var 'tanh' at tape position 7, shape [2, 3] (needs grad): {{...}}
//   std::cout << ad::listing(tape); // one line per record: position, op, output shape, inputs
#pragma once

#include "autodiff/tape.hpp"

#include <ostream>
#include <string>

namespace ad {

template <class T>
std::ostream& operator<<(std::ostream& out, const Var<T>& v);

// Every record of the tape: its position, op, output shape, whether it needs a gradient, and
// the positions of its inputs.
template <class T>
std::string listing(const Tape<T>& tape);

extern template std::ostream& operator<<(std::ostream&, const Var<float>&);
extern template std::ostream& operator<<(std::ostream&, const Var<double>&);
extern template std::string listing(const Tape<float>&);
extern template std::string listing(const Tape<double>&);

}  // namespace ad
