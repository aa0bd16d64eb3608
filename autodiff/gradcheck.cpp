#include "autodiff/gradcheck.hpp"

#include "autodiff/backward.hpp"
#include "autodiff/ops.hpp"

#include <xtensor/xrandom.hpp>

#include <cmath>
#include <sstream>

namespace ad {

namespace {

using Tensors = std::vector<Tensor<double>>;

Shape unravel(std::size_t flat, const Shape& shape)
{
    Shape idx(shape.size());
    for (std::size_t i = shape.size(); i-- > 0;) {
        idx[i] = flat % shape[i];
        flat /= shape[i];
    }
    return idx;
}

std::string input_name(const GradcheckOptions& o, std::size_t k)
{
    return k < o.names.size() ? o.names[k] : "input " + std::to_string(k);
}

// Central differences of the scalar function f, compared element by element with `claimed`.
GradcheckResult compare(const char* who, const std::function<double(const Tensors&)>& f, Tensors x,
                        const Tensors& claimed, const GradcheckOptions& o)
{
    GradcheckResult res;
    double worst = -1;  // largest |a - n| / (atol + rtol |n|)
    const double floor = o.rtol > 0 ? o.atol / o.rtol : 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
        if (claimed[k].shape() != x[k].shape())
            throw Error(std::string(who) + ": the gradient of " + input_name(o, k) + " has shape " +
                        shape_str(claimed[k].shape()) + " but the input has shape " +
                        shape_str(x[k].shape()));
        bool all_zero = x[k].size() > 0;
        for (std::size_t j = 0; j < x[k].size(); ++j) {
            const double saved = x[k].flat(j);
            x[k].flat(j) = saved + o.eps;
            const double up = f(x);
            x[k].flat(j) = saved - o.eps;
            const double down = f(x);
            x[k].flat(j) = saved;
            const double n = (up - down) / (2 * o.eps), a = claimed[k].flat(j);
            all_zero = all_zero && a == 0 && n == 0;
            const double abs_err = std::abs(a - n);
            const double scale = std::max({std::abs(a), std::abs(n), floor});
            const double rel_err = scale > 0 ? abs_err / scale : 0;
            const double ratio = abs_err / (o.atol + o.rtol * std::abs(n));
            // std::max would drop a NaN: keep it, so the report cannot read "error 0"
            if (std::isnan(abs_err) || std::isnan(res.max_abs_error)) res.max_abs_error = NAN;
            else res.max_abs_error = std::max(res.max_abs_error, abs_err);
            if (std::isnan(rel_err) || std::isnan(res.max_rel_error)) res.max_rel_error = NAN;
            else res.max_rel_error = std::max(res.max_rel_error, rel_err);
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
        if (all_zero)
            res.warnings.push_back(input_name(o, k) + ": analytic and numeric gradients are both exactly zero "
                                                      "everywhere, so this check proves nothing about it");
    }
    res.name = input_name(o, res.input);
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
    for (const auto& w : warnings) out << " Warning: " << w << '.';
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
        // f may ignore an input, or all of them: finite differences then see zeros too
        Tensors analytic;
        if (y.requires_grad()) analytic = vjp(y, c, vars, allow_unused);
        else
            for (const auto& x : inputs) analytic.push_back(xt::zeros<double>(x.shape()));
        auto scalar = [&](const Tensors& x) {
            std::vector<Var<double>> v;
            const Var<double> out = run(x, v);
            if (out.shape() != c.shape())
                throw Error("gradcheck: f's output changed shape from " + shape_str(c.shape()) +
                            " to " + shape_str(out.shape()) + " when its input moved");
            return xt::sum(out.value() * c)();
        };
        return compare("gradcheck", scalar, inputs, analytic, o);
    }
}

template <class T>
GradcheckResult gradgradcheck(const MultiFn<T>& f, const std::vector<Tensor<T>>& inputs,
                              const GradcheckOptions& o)
{
    if constexpr (!std::is_same_v<T, double>) {
        throw Error("gradgradcheck: needs double precision (see gradcheck); run the function with "
                    "Tape<double> and Tensor<double> inputs");
    } else {
        Tape<double> tape;
        std::vector<Var<double>> vars;
        auto run = [&](const Tensors& x) {
            tape.clear();
            vars.clear();
            for (const auto& t : x) vars.push_back(tape.variable(t));
            return f(vars);
        };
        const Var<double> y0 = run(inputs);
        const Shape out_shape = y0.shape();
        xt::random::default_engine_type engine(o.seed);
        Tensors point = inputs, w;  // the inputs and the cotangent c: every argument of the VJP
        point.push_back(xt::random::randn<double>(out_shape, 0, 1, engine));
        for (const auto& x : inputs) w.push_back(xt::random::randn<double>(x.shape(), 0, 1, engine));

        // <w, VJP(c)> by the first-order sweep: what finite differences see.
        auto first_order = [&](const Tensors& p) {
            const Var<double> y = run(Tensors(p.begin(), p.end() - 1));
            if (!std::equal(out_shape.begin(), out_shape.end(), y.shape().begin(), y.shape().end()))
                throw Error("gradgradcheck: f's output changed shape from " + shape_str(out_shape) + " to " +
                            shape_str(y.shape()) + " when its input moved");
            if (!y.requires_grad()) return 0.0;
            const Tensors g = vjp(y, p.back(), vars, allow_unused);
            double s = 0;
            for (std::size_t k = 0; k < g.size(); ++k) s += xt::sum(g[k] * w[k])();
            return s;
        };
        // Its gradient through the graph of the VJP, for the inputs and the cotangent.
        const Var<double> y = run(inputs);
        const Var<double> c = tape.variable(point.back());
        if (!y.requires_grad())
            throw Error("gradgradcheck: f's output needs no gradient (built from constants or under NoGrad): "
                        "there is no first derivative to differentiate again");
        const auto g = vjp(y, c, vars, create_graph, allow_unused);
        Var<double> s = sum(g[0] * tape.constant(w[0]));
        for (std::size_t k = 1; k < g.size(); ++k) s = s + sum(g[k] * tape.constant(w[k]));
        std::vector<Var<double>> wrt = vars;
        wrt.push_back(c);
        Tensors analytic;
        if (s.requires_grad()) analytic = grad(s, wrt, allow_unused);
        else
            for (const auto& x : point) analytic.push_back(xt::zeros<double>(x.shape()));
        GradcheckOptions named = o;
        named.names.resize(inputs.size());
        for (std::size_t k = 0; k < inputs.size(); ++k) named.names[k] = input_name(o, k);
        named.names.push_back("cotangent");
        return compare("gradgradcheck", first_order, point, analytic, named);
    }
}

GradcheckResult check_gradient(const std::function<double(const Tensors&)>& f, const Tensors& inputs,
                               const Tensors& grads, const GradcheckOptions& o)
{
    if (grads.size() != inputs.size())
        throw Error("check_gradient: " + std::to_string(inputs.size()) + " inputs but " +
                    std::to_string(grads.size()) + " gradients");
    return compare("check_gradient", f, inputs, grads, o);
}

template GradcheckResult gradcheck(const MultiFn<float>&, const std::vector<Tensor<float>>&,
                                   const GradcheckOptions&);
template GradcheckResult gradcheck(const MultiFn<double>&, const std::vector<Tensor<double>>&,
                                   const GradcheckOptions&);
template GradcheckResult gradgradcheck(const MultiFn<float>&, const std::vector<Tensor<float>>&,
                                       const GradcheckOptions&);
template GradcheckResult gradgradcheck(const MultiFn<double>&, const std::vector<Tensor<double>>&,
                                       const GradcheckOptions&);

}  // namespace ad
