// Finite-difference checks of gradients, in double precision.
//
// gradcheck compares the reverse-mode gradient of f with central differences
// (f(x + eps e_j) - f(x - eps e_j)) / (2 eps), element by element of every input. An output
// with more than one element is checked through a fixed random cotangent c: the gradient of
// sum(c * f(x)), which is wrong somewhere exactly when the VJP is (for almost every c).
// An element passes when |analytic - numeric| <= atol + rtol |numeric| (NumPy's allclose).
//
// check_gradient does the same for a gradient computed by other means, such as a hand-written
// backward pass, and names the input and element that disagree.
//
// gradgradcheck checks second derivatives the same way: the gradient of <w, VJP(c)> computed by
// a second sweep over the graph that create_graph recorded, against central differences of the
// first-order VJP itself, for random w and c. The cotangent c is checked as an input too (the
// VJP must be linear in it), reported under the name "cotangent".
#pragma once

#include "autodiff/tape.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ad {

struct GradcheckOptions {
    double eps = 1e-6;   // central-difference step
    double atol = 1e-5;  // absolute tolerance
    double rtol = 1e-3;  // relative tolerance (the defaults are PyTorch's gradcheck's)
    std::uint64_t seed = 0;          // for the random cotangent of a non-scalar output
    std::vector<std::string> names;  // names of the inputs, for the report ("input 0" if absent)
};

struct GradcheckResult {
    bool ok = true;
    double max_abs_error = 0;  // over every element of every input; NaN if any side was NaN
    double max_rel_error = 0;  // |a - n| / max(|a|, |n|, atol / rtol): values within the
                               // tolerance of zero do not count as 100% errors
    // The element furthest outside the tolerance (or closest to it, if all pass):
    std::size_t input = 0;
    std::string name;
    Shape element;
    double analytic = 0, numeric = 0;
    std::size_t checked = 0;  // elements compared
    // Inputs whose analytic and numeric gradients are both exactly zero everywhere: a check
    // that passes on zeros proves nothing about them.
    std::vector<std::string> warnings;
    std::string report() const;  // one paragraph for a person
    explicit operator bool() const { return ok; }
};

template <class T>
using MultiFn = std::function<Var<T>(const std::vector<Var<T>>&)>;

// T must be double: a float gradient cannot be checked to useful precision by differences.
template <class T>
GradcheckResult gradcheck(const MultiFn<T>& f, const std::vector<Tensor<T>>& inputs,
                          const GradcheckOptions& options = {});

template <class T>
GradcheckResult gradgradcheck(const MultiFn<T>& f, const std::vector<Tensor<T>>& inputs,
                              const GradcheckOptions& options = {});

// f maps the inputs to a number; grads are the claimed gradients, shaped like the inputs.
GradcheckResult check_gradient(const std::function<double(const std::vector<Tensor<double>>&)>& f,
                               const std::vector<Tensor<double>>& inputs,
                               const std::vector<Tensor<double>>& grads,
                               const GradcheckOptions& options = {});

}  // namespace ad
