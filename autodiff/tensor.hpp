// Value types: every value is an xtensor container.
#pragma once

#include <xtensor/xarray.hpp>

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ad {

template <class T>
using Tensor = xt::xarray<T>;

using Shape = std::vector<std::size_t>;

// "[3, 1]" for error messages.
template <class S>
std::string shape_str(const S& shape)
{
    std::ostringstream out;
    out << '[';
    for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
    out << ']';
    return out.str();
}

// Every error the library raises on bad input: the message names the op, the shapes and what
// was expected.
struct Error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

}  // namespace ad
