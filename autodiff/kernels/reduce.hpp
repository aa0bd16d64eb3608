// Summing kernels on raw row-major buffers: the loops behind reductions, bias gradients and
// broadcasting's VJP (sum_to). Independent partial sums keep the loops vectorisable and shorten
// float rounding chains.
#pragma once

#include "autodiff/kernels/parallel.hpp"
#include "autodiff/tensor.hpp"

#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace ad::kernels {

// dst[j] = sum_i src[i * inner + j] for a row-major [outer, inner] block.
template <class T>
void sum_rows(const T* src, std::size_t outer, std::size_t inner, T* dst)
{
    if (inner == 1) {
        constexpr std::size_t L = 16;
        T part[L] = {};
        std::size_t i = 0;
        for (; i + L <= outer; i += L)
            for (std::size_t l = 0; l < L; ++l) part[l] += src[i + l];
        T total = 0;
        for (; i < outer; ++i) total += src[i];
        for (std::size_t l = 0; l < L; ++l) total += part[l];
        *dst = total;
        return;
    }
    if (outer == 0) {
        std::fill_n(dst, inner, T(0));
        return;
    }
    // Split over columns: each column is summed by one thread, in row order.
    parallel_for(inner, outer, [=](std::size_t j0, std::size_t j1) {
        std::copy(src + j0, src + j1, dst + j0);
        for (std::size_t i = 1; i < outer; ++i)
            for (std::size_t j = j0; j < j1; ++j) dst[j] += src[i * inner + j];
    });
}

// dst[j] += sum_i src[i * inner + j], as sum_rows but adding into dst.
template <class T>
void add_rows(const T* src, std::size_t outer, std::size_t inner, T* dst)
{
    if (inner == 1) {
        T total;
        sum_rows(src, outer, 1, &total);
        *dst += total;
        return;
    }
    parallel_for(inner, outer, [=](std::size_t j0, std::size_t j1) {
        for (std::size_t i = 0; i < outer; ++i)
            for (std::size_t j = j0; j < j1; ++j) dst[j] += src[i * inner + j];
    });
}

template <class T>
T sum_all(const T* src, std::size_t n)
{
    T total;
    sum_rows(src, n, 1, &total);
    return total;
}

// A row-major tensor seen as outer x n x inner around one axis: element (o, j, i) is at
// (o * n + j) * inner + i. Loops over an axis use it instead of lazy reducers, which would
// re-reduce for every element they are broadcast to.
struct AxisLoop {
    std::size_t outer = 1, n = 1, inner = 1;
    template <class S>
    AxisLoop(const S& s, std::size_t axis)
    {
        for (std::size_t i = 0; i < s.size(); ++i) (i < axis ? outer : i == axis ? n : inner) *= s[i];
    }
    std::size_t at(std::size_t o, std::size_t j, std::size_t i) const { return (o * n + j) * inner + i; }
};

// out = e summed over the axes that broadcasting added or stretched to reach e's shape from
// `shape` (broadcasting's VJP: a sum in reverse); out += that sum when `accumulate` (out then
// has `shape` already). The usual cases, a bias broadcast over leading axes and one axis
// stretched from size 1 (a statistic per row), are direct loops into out; anything else goes
// through xt::sum. `scratch` and `scratch2` are buffers reused from call to call.
template <class T, class E, class S>
void sum_to(const E& e, const S& shape, Tensor<T>& out, bool accumulate, Tensor<T>& scratch,
            Tensor<T>& scratch2)
{
    const auto& es = e.shape();
    const std::size_t lead = es.size() - shape.size();
    auto contiguous = [&]() -> const T* {
        if constexpr (std::is_same<std::decay_t<E>, Tensor<T>>::value) {
            return e.data();
        } else {
            xt::noalias(scratch2) = e;
            return scratch2.data();
        }
    };
    std::size_t k = es.size();  // e's axes from k on are kept whole
    while (k > lead && shape[k - 1 - lead] == es[k - 1]) --k;
    bool leading_only = true;
    for (std::size_t i = lead; i < k; ++i) leading_only = leading_only && shape[i - lead] == 1;
    if (leading_only) {
        std::size_t outer = 1, inner = 1;
        for (std::size_t i = 0; i < es.size(); ++i) (i < k ? outer : inner) *= es[i];
        const T* src = contiguous();
        if (accumulate) {
            add_rows(src, outer, inner, out.data());
        } else {
            out.resize(shape);
            sum_rows(src, outer, inner, out.data());
        }
        return;
    }
    std::size_t stretched = 0, count = 0;  // with no leading axes added: which axis, how many
    for (std::size_t i = 0; lead == 0 && i < es.size(); ++i)
        if (shape[i] != es[i]) stretched = i, ++count;
    if (lead == 0 && count == 1) {
        const AxisLoop d(es, stretched);
        const T* src = contiguous();
        if (!accumulate) out.resize(shape);
        T* dst = out.data();
        for (std::size_t o = 0; o < d.outer; ++o) {
            T* to = dst + o * d.inner;
            const T* from = src + o * d.n * d.inner;
            if (d.inner == 1) {
                to[0] = (accumulate ? to[0] : T(0)) + sum_all(from, d.n);
                continue;
            }
            if (!accumulate) std::fill_n(to, d.inner, T(0));
            for (std::size_t j = 0; j < d.n; ++j)
                for (std::size_t i = 0; i < d.inner; ++i) to[i] += from[j * d.inner + i];
        }
        return;
    }
    std::vector<std::size_t> axes;
    for (std::size_t i = 0; i < es.size(); ++i)
        if (i < lead || (shape[i - lead] == 1 && es[i] != 1)) axes.push_back(i);
    xt::noalias(scratch) = xt::sum(e, axes, xt::keep_dims | xt::evaluation_strategy::lazy);
    scratch.reshape(shape);
    if (accumulate) xt::noalias(out) += scratch;
    else xt::noalias(out) = scratch;
}

}  // namespace ad::kernels
