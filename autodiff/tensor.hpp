// Value types: every value is an xtensor container.
#pragma once

#include <xtensor/xarray.hpp>

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace ad {

template <class T>
using Tensor = xt::xarray<T>;

// The one shape type: what tensor.shape() and Var::shape() return and what every op that takes
// a shape (reshape, broadcast_to, sum_to, the conv adjoints) accepts. It is xtensor's own
// shape type, so passing a tensor's shape on costs no conversion, and it keeps up to four
// dimensions inline: making or copying the shape of a rank <= 4 tensor never allocates, where a
// std::vector would on every op that builds one.
using Shape = xt::svector<std::size_t, 4>;
static_assert(std::is_same<Shape, Tensor<float>::shape_type>::value &&
                  std::is_same<Shape, Tensor<double>::shape_type>::value,
              "ad::Shape must be the tensors' own shape type");

// reshape's placeholder for the one dimension to infer from the element count, as -1 is in
// NumPy and PyTorch: reshape(x, {ad::infer, 4}).
inline constexpr std::size_t infer = std::size_t(-1);

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

// Whether two shapes (of any container types: ad::Shape, std::vector) are equal. A plain loop:
// std::equal on them becomes a call to memcmp, which costs more than the compare for the one-
// to four-element shapes every op checks.
template <class A, class B>
bool equal_shapes(const A& a, const B& b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) return false;
    return true;
}

// Every error the library raises on bad input: the message names the op, the shapes and what
// was expected.
struct Error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

}  // namespace ad
