#include "autodiff/gradcheck.hpp"

#include "autodiff/backward.hpp"
#include "autodiff/ops.hpp"

#include <xtensor/xrandom.hpp>

#include <cmath>
#include <sstream>

namespace ad {

namespace {

using Tensors = std::vector<Tensor<double>>;

Shape unravel(std::size_t flat, const Tensor<double>::shape_type& shape)
{
    Shape idx(shape.size());
    for (std::size_t i = shape.size(); i-- > 0;) {
        idx[i] = flat % shape[i];
        flat /= shape[i];
    }
    return idx;
}

// Central differences of the scalar function f, compared element by element with `claimed`.
GradcheckResult compare(const std::function<double(const Tensors&)>& f, Tensors x,
                        const Tensors& claimed, const GradcheckOptions& o)
{
    GradcheckResult res;
    double worst = -1;  // largest |a - n| / (atol + rtol |n|)
    for (std::size_t k = 0; k < x.size(); ++k) {
        if (claimed[k].shape() != x[k].shape())
            throw Error("gradcheck: the gradient of input " + std::to_string(k) + " has shape " +
                        shape_str(claimed[k].shape()) + " but the input has shape " +
                        shape_str(x[k].shape()));
        for (std::size_t j = 0; j < x[k].size(); ++j) {
            const double saved = x[k].flat(j);
            x[k].flat(j) = saved + o.eps;
            const double up = f(x);
            x[k].flat(j) = saved - o.eps;
            const double down = f(x);
            x[k].flat(j) = saved;
            const double n = (up - down) / (2 * o.eps), a = claimed[k].flat(j);
            const double abs_err = std::abs(a - n);
            const double scale = std::max(std::abs(a), std::abs(n));
            const double rel_err = scale > 0 ? abs_err / scale : 0;
            const double ratio = abs_err / (o.atol + o.rtol * std::abs(n));
            res.max_abs_error = std::max(res.max_abs_error, abs_err);
            res.max_rel_error = std::max(res.max_rel_error, rel_err);
            ++res.checked;
            if (!(ratio <= 1)) res.ok = false;  // NaN fails too
            if (ratio > worst || std::isnan(ratio)) {
                worst = std::isnan(ratio) ? INFINITY : ratio;
                res.input = k;
                res.element = unravel(j, x[k].shape());
                res.analytic = a;
                res.numeric = n;
            }
        }
    }
    res.name = res.input < o.names.size() ? o.names[res.input] : "input " + std::to_string(res.input);
    return res;
}

}  // namespace

std::string GradcheckResult::report() const
{
    std::ostringstream out;
    out.precision(10);
    out << (ok ? "gradcheck passed" : "gradcheck FAILED") << " (" << checked
        << " elements; max abs error " << max_abs_error << ", max rel error " << max_rel_error
        << "). " << (ok ? "Closest to the tolerance: " : "Worst: ") << name << " element "
        << shape_str(element) << ": analytic " << analytic << ", finite differences " << numeric
        << '.';
    return out.str();
}

template <class T>
GradcheckResult gradcheck(const MultiFn<T>& f, const std::vector<Tensor<T>>& inputs,
                          const GradcheckOptions& o)
{
    if constexpr (!std::is_same_v<T, double>) {
        throw Error("gradcheck: needs double precision; float carries about 7 digits, so central "
                    "differences with a small step are mostly rounding noise. Run the function "
                    "with Tape<double> and Tensor<double> inputs");
    } else {
        Tape<double> tape;
        auto run = [&](const Tensors& x, std::vector<Var<double>>& vars) {
            tape.clear();
            vars.clear();
            for (const auto& t : x) vars.push_back(tape.variable(t));
            return f(vars);
        };
        std::vector<Var<double>> vars;
        const Var<double> y = run(inputs, vars);
        xt::random::default_engine_type engine(o.seed);
        const Tensor<double> c = y.size() == 1
                                     ? Tensor<double>(xt::ones<double>(y.shape()))
                                     : Tensor<double>(xt::random::randn<double>(y.shape(), 0, 1, engine));
        const Tensors analytic = vjp(y, c, vars);
        auto scalar = [&](const Tensors& x) {
            std::vector<Var<double>> v;
            const Var<double> out = run(x, v);
            if (out.shape() != c.shape())
                throw Error("gradcheck: f's output changed shape from " + shape_str(c.shape()) +
                            " to " + shape_str(out.shape()) + " when its input moved");
            return xt::sum(out.value() * c)();
        };
        return compare(scalar, inputs, analytic, o);
    }
}

GradcheckResult check_gradient(const std::function<double(const Tensors&)>& f, const Tensors& inputs,
                               const Tensors& grads, const GradcheckOptions& o)
{
    if (grads.size() != inputs.size())
        throw Error("check_gradient: " + std::to_string(inputs.size()) + " inputs but " +
                    std::to_string(grads.size()) + " gradients");
    return compare(f, inputs, grads, o);
}

template GradcheckResult gradcheck(const MultiFn<float>&, const std::vector<Tensor<float>>&,
                                   const GradcheckOptions&);
template GradcheckResult gradcheck(const MultiFn<double>&, const std::vector<Tensor<double>>&,
                                   const GradcheckOptions&);

}  // namespace ad
