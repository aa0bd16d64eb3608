// Ops that move elements without arithmetic (reshape, slice, concat, broadcast, gather, permute), declared
// for T = float and T = double; definitions, each with its vector-Jacobian product beside it, are
// in ops_shape.cpp.
#pragma once

#include "autodiff/tape.hpp"

#include <cstddef>
#include <initializer_list>
#include <vector>

namespace ad {

// x's elements in `shape`, same count, row-major. One entry may be ad::infer: it is worked out
// from the element count (reshape(x, {ad::infer, 4})). Like broadcast_to and sum_to it takes
// an ad::Shape, so reshape(x, y.shape()) needs no conversion.
template <class T> Var<T> reshape(const Var<T>& x, const Shape& shape);
// Elements start <= i < stop along `axis`; negative start/stop count from the end.
template <class T> Var<T> slice(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t start, std::ptrdiff_t stop);
template <class T> Var<T> concat(const std::vector<Var<T>>& xs, std::ptrdiff_t axis);
template <class T> Var<T> concat(std::initializer_list<Var<T>> xs, std::ptrdiff_t axis)
{
    return concat(std::vector<Var<T>>(xs), axis);
}
template <class T> Var<T> broadcast_to(const Var<T>& x, const Shape& shape);
// broadcast_to in reverse: x summed over the axes broadcasting would add or stretch to reach
// x's shape from `shape` (the VJP of every broadcasting op).
template <class T> Var<T> sum_to(const Var<T>& x, const Shape& shape);
// Rows x[idx[0]], x[idx[1]], ... along axis 0; repeated indices add their gradients.
template <class T> Var<T> gather_rows(const Var<T>& x, const std::vector<std::size_t>& idx);
// gather_rows in reverse: a tensor of `rows` rows, zero but for row idx[i] += x[i].
template <class T> Var<T> scatter_add_rows(const Var<T>& x, const std::vector<std::size_t>& idx, std::size_t rows);
// x's slices idx[0], idx[1], ... along `axis` (PyTorch's index_select): the axis takes
// idx.size(); indices may repeat (their gradients add) and come in any order.
template <class T> Var<T> index_select(const Var<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& idx);
// index_select in reverse: zeros with `size` along `axis`, x's slice k added at idx[k] (PyTorch's
// zeros(...).index_add_(axis, idx, x)); x has idx.size() along the axis.
template <class T> Var<T> index_add(const Var<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& idx, std::size_t size);
// y's axis d is x's axis axes[d] (NumPy's transpose with axes, PyTorch's permute): every axis
// once, negative ones counting from the end.
template <class T> Var<T> permute(const Var<T>& x, const std::vector<std::ptrdiff_t>& axes);
// x with axes a and b swapped (PyTorch's transpose(a, b)); negative axes count from the end.
template <class T> Var<T> transpose(const Var<T>& x, std::ptrdiff_t a, std::ptrdiff_t b);
// x[..., i, ...]: the slice i along `axis`, the axis dropped (PyTorch's select; x[i] is
// select(x, 0, i)); a negative i counts from the end.
template <class T> Var<T> select(const Var<T>& x, std::ptrdiff_t axis, std::ptrdiff_t i);

}  // namespace ad
