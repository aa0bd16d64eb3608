// Elementwise ops. Each: the formula, the forward, and beside it the VJP as the derivative
// times the cotangent g, one generic lambda serving as both VJPs (first order on tensors and
// differentiable on Vars; autodiff/op.hpp). Binary ops broadcast; acc sums g back to each
// input's shape. Derivatives that are step functions (abs's, leaky_relu's) enter as constant
// masks (v.constant), so their second derivatives are exactly zero; relu's mask is one op,
// relu_grad, whose derivative in x is zero. NaN is tested with isnan, never
// with x != x: xtensor's != on two expressions compares whole arrays and gives one bool.
#include "autodiff/ops_elementwise.hpp"

#include "autodiff/op.hpp"

#include <xtensor/xvectorize.hpp>

#include <cmath>

namespace ad {

namespace {
constexpr double selu_alpha = 1.6732632423543772848170429916717;
constexpr double selu_scale = 1.0507009873554804934193349852946;
constexpr double inv_sqrt2 = 0.70710678118654752440;
constexpr double inv_sqrt_2pi = 0.39894228040143267794;

template <class T>
void check_broadcast(const char* op, const Var<T>& a, const Var<T>& b)
{
    broadcast_shape(op, a, b);
}

// The lazy tensor forms of functions whose tape forms are ops: a generic VJP calls them
// unqualified, and a Var argument picks the op.
template <class E, class = std::enable_if_t<xt::is_xexpression<std::decay_t<E>>::value>>
auto sigmoid(E&& x)
{
    using T = typename std::decay_t<E>::value_type;
    return T(1) / (T(1) + xt::exp(-std::forward<E>(x)));
}
// Phi(x) = erfc(-x / sqrt 2) / 2: erfc keeps full relative precision in the left tail, where
// 1 + erf(x / sqrt 2) would cancel (it is about 3e-4 at x = -3.6). In float, xsimd's vectorised
// erfc is within 5 (1 + x^2) ulps, as close as the rounding of x / sqrt 2 allows, at a tenth of
// the C library's cost. In double it is off by 3e-12 relative at x = -3.6 and 5e-10 at x = -20,
// so double takes std::erfc one element at a time, within an ulp or two: gelu's forward costs
// about 20 ns per element there (ad_bench_gelu, on the AVX-512 Xeon), 1 ns in float.
template <class T>
T Phi(T x)
{
    return T(0.5) * std::erfc(x * T(-inv_sqrt2));
}
template <class E, class = std::enable_if_t<xt::is_xexpression<std::decay_t<E>>::value>>
auto normal_cdf(E&& x)
{
    using T = typename std::decay_t<E>::value_type;
    if constexpr (std::is_same<T, float>::value)
        return T(0.5) * xt::erfc(std::forward<E>(x) * T(-inv_sqrt2));
    else
        return xt::vectorize(&Phi<T>)(std::forward<E>(x));
}
// 1 where x > 0, else 0: the derivative of relu and the switch of elu and selu.
template <class E>
auto positive(const E& x)
{
    using T = typename std::decay_t<E>::value_type;
    return xt::where(x > T(0), T(1), T(0));
}

}  // namespace

// d(-x) = -g
template <class T>
Var<T> neg(const Var<T>& x)
{
    Op<T> op("neg", {x});
    assign(op.out(), -op.x(0));
    auto vjp = [](auto& v) { v.acc(0, -v.g); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(neg, sig::Unary)

// d(a + b) = g, g
template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("add", a, b);
    Op<T> op("add", {a, b});
    const auto& av = op.x(0);
    const auto& bv = op.x(1);
    if (av.shape() == bv.shape()) {  // the common case (a residual sum) as a plain loop
        auto& y = op.out();
        y.resize(av.shape());
        const T *ap = av.data(), *bp = bv.data();
        T* yp = y.data();
        kernels::parallel_for(y.size(), 1, [=](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) yp[i] = ap[i] + bp[i];
        });
    } else {
        assign(op.out(), av + bv);
    }
    auto vjp = [](auto& v) {
        v.acc(0, v.g);
        v.acc(1, v.g);
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(add, sig::Binary)

// d(a - b) = g, -g
template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("sub", a, b);
    Op<T> op("sub", {a, b});
    assign(op.out(), op.x(0) - op.x(1));
    auto vjp = [](auto& v) {
        v.acc(0, v.g);
        v.acc(1, -v.g);
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(sub, sig::Binary)

// d(a b) = g b, g a
template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("mul", a, b);
    Op<T> op("mul", {a, b});
    assign(op.out(), op.x(0) * op.x(1));
    auto vjp = [](auto& v) {
        v.acc(0, v.g * v.x(1));
        v.acc(1, v.g * v.x(0));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(mul, sig::Binary)

// d(a / b) = g / b, -g a / b^2 = -g y / b
template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("div", a, b);
    Op<T> op("div", {a, b});
    assign(op.out(), op.x(0) / op.x(1));
    auto vjp = [](auto& v) {
        v.acc(0, v.g / v.x(1));
        v.acc(1, -v.g * v.y / v.x(1));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(div, sig::Binary)

// d(x + s) = g
template <class T>
Var<T> add(const Var<T>& x, Scalar<T> s)
{
    Op<T> op("add_scalar", {x});
    assign(op.out(), op.x(0) + s);
    auto vjp = [](auto& v) { v.acc(0, v.g); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(add, sig::WithScalar)

// d(s x) = s g
template <class T>
Var<T> mul(const Var<T>& x, Scalar<T> s)
{
    Op<T> op("mul_scalar", {x});
    assign(op.out(), op.x(0) * s);
    auto vjp = [s](auto& v) { v.acc(0, v.g * s); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(mul, sig::WithScalar)

// d(x / s) = g / s. A division, not a product with 1 / s, which rounds differently.
template <class T>
Var<T> div(const Var<T>& x, Scalar<T> s)
{
    Op<T> op("div_scalar", {x});
    assign(op.out(), op.x(0) / s);
    auto vjp = [s](auto& v) { v.acc(0, v.g / s); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(div, sig::WithScalar)

// d(s - x) = -g
template <class T>
Var<T> sub(Scalar<T> s, const Var<T>& x)
{
    Op<T> op("rsub_scalar", {x});
    assign(op.out(), s - op.x(0));
    auto vjp = [](auto& v) { v.acc(0, -v.g); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(sub, sig::ScalarFirst)

// d(s / x) = -s g / x^2 = -g y / x
template <class T>
Var<T> rdiv(Scalar<T> s, const Var<T>& x)
{
    Op<T> op("rdiv_scalar", {x});
    assign(op.out(), s / op.x(0));
    auto vjp = [](auto& v) { v.acc(0, -v.g * v.y / v.x(0)); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(rdiv, sig::ScalarFirst)

// d(x^p) = p x^(p-1) g
template <class T>
Var<T> pow(const Var<T>& x, Scalar<T> p)
{
    Op<T> op("pow", {x});
    assign(op.out(), xt::pow(op.x(0), p));
    auto vjp = [p](auto& v) { v.acc(0, v.g * p * pow(v.x(0), p - T(1))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(pow, sig::WithScalar)

// d(x^2) = 2 x g
template <class T>
Var<T> square(const Var<T>& x)
{
    Op<T> op("square", {x});
    assign(op.out(), op.x(0) * op.x(0));
    auto vjp = [](auto& v) { v.acc(0, T(2) * v.x(0) * v.g); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(square, sig::Unary)

// d sqrt(x) = g / (2 y)
template <class T>
Var<T> sqrt(const Var<T>& x)
{
    Op<T> op("sqrt", {x});
    assign(op.out(), xt::sqrt(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g / (T(2) * v.y)); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(sqrt, sig::Unary)

// d e^x = y g
template <class T>
Var<T> exp(const Var<T>& x)
{
    Op<T> op("exp", {x});
    assign(op.out(), xt::exp(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g * v.y); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(exp, sig::Unary)

// d log x = g / x
template <class T>
Var<T> log(const Var<T>& x)
{
    Op<T> op("log", {x});
    assign(op.out(), xt::log(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g / v.x(0)); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(log, sig::Unary)

// d|x| = sign(x) g, with sign(0) = 0
template <class T>
Var<T> abs(const Var<T>& x)
{
    Op<T> op("abs", {x});
    assign(op.out(), xt::abs(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g * v.constant(xt::sign(v.value(0)))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(abs, sig::Unary)

// d sin x = cos(x) g
template <class T>
Var<T> sin(const Var<T>& x)
{
    Op<T> op("sin", {x});
    assign(op.out(), xt::sin(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g * cos(v.x(0))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(sin, sig::Unary)

// d cos x = -sin(x) g
template <class T>
Var<T> cos(const Var<T>& x)
{
    Op<T> op("cos", {x});
    assign(op.out(), xt::cos(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, -v.g * sin(v.x(0))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(cos, sig::Unary)

// The share of the gradient of max(a, b) that goes to a, elementwise: 1 where a > b, 1/2 at a
// tie, 0 where a < b, and 1 where a or b is NaN (so both operands receive g there, as in
// PyTorch). A lazy expression; the differentiable VJPs take it as a constant mask.
template <class A, class B>
auto share(const A& a, const B& b)
{
    using T = typename std::decay_t<decltype(a + b)>::value_type;
    return xt::where(a < b, T(0), xt::where(xt::equal(a, b), T(0.5), T(1)));
}

// max(a, b), NaN if either is NaN (a where a is NaN or greater, else b, NaN or not);
// d = g share(a, b), g share(b, a)
template <class T>
Var<T> maximum(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("maximum", a, b);
    Op<T> op("maximum", {a, b});
    const auto &av = op.x(0), &bv = op.x(1);
    assign(op.out(), xt::where(xt::isnan(av) || av > bv, av, bv));
    auto vjp = [](auto& v) {
        const auto &a = v.value(0), &b = v.value(1);
        v.acc(0, v.g * v.constant(share(a, b)));
        v.acc(1, v.g * v.constant(share(b, a)));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(maximum, sig::Binary)

// min(a, b), NaN if either is NaN;  d = g share(-a, -b), g share(-b, -a)
template <class T>
Var<T> minimum(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("minimum", a, b);
    Op<T> op("minimum", {a, b});
    const auto &av = op.x(0), &bv = op.x(1);
    assign(op.out(), xt::where(xt::isnan(av) || av < bv, av, bv));
    auto vjp = [](auto& v) {
        const auto &a = v.value(0), &b = v.value(1);
        v.acc(0, v.g * v.constant(share(-a, -b)));
        v.acc(1, v.g * v.constant(share(-b, -a)));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(minimum, sig::Binary)

// clamp(x, lo, hi), NaN stays NaN;  d = g [lo <= x <= hi]
template <class T>
Var<T> clamp(const Var<T>& x, Scalar<T> lo, Scalar<T> hi)
{
    if (!(lo <= hi))
        fail("clamp", x, "needs lo <= hi, got lo = " + std::to_string(lo) + ", hi = " + std::to_string(hi));
    Op<T> op("clamp", {x});
    const auto& xv = op.x(0);
    assign(op.out(), xt::where(xt::isnan(xv), xv, xt::clip(xv, lo, hi)));
    auto vjp = [lo, hi](auto& v) {
        const auto& x = v.value(0);
        v.acc(0, v.g * v.constant(xt::where(x >= lo && x <= hi, T(1), T(0))));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(clamp, sig::WithTwoScalars)

// d tanh x = (1 - y^2) g
template <class T>
Var<T> tanh(const Var<T>& x)
{
    Op<T> op("tanh", {x});
    assign(op.out(), xt::tanh(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g * (T(1) - v.y * v.y)); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(tanh, sig::Unary)

// d sigmoid x = y (1 - y) g, at most g / 4
template <class T>
Var<T> sigmoid(const Var<T>& x)
{
    Op<T> op("sigmoid", {x});
    assign(op.out(), T(1) / (T(1) + xt::exp(-op.x(0))));
    auto vjp = [](auto& v) { v.acc(0, v.g * v.y * (T(1) - v.y)); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(sigmoid, sig::Unary)

namespace {
// g where x > 0, else 0: relu's VJP, which its differentiable VJP records as this one op instead
// of a mask and a product. Its own VJP masks the same way in g and is zero in x (the mask's
// derivative, wherever it has one).
template <class T>
Var<T> relu_grad(const Var<T>& g, const Var<T>& x)
{
    Op<T> op("relu_grad", {g, x});
    auto& y = op.out();
    y.resize(g.shape());
    const T *gp = op.x(0).data(), *xp = op.x(1).data();
    kernels::parallel_for(y.size(), 1, [=, yp = y.data()](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) {
            const T gi = gp[i];
            yp[i] = xp[i] > T(0) ? gi : T(0);
        }
    });
    return op.done(
        [](Vjp<T>& v) {
            const T *x = v.x(1).data(), *w = v.g.data();
            v.acc_each(0, [=](std::size_t i) {
                const T wi = w[i];
                return x[i] > T(0) ? wi : T(0);
            });
        },
        [](GradVjp<T>& v) { v.acc(0, relu_grad(v.g, v.x(1))); });
}
}  // namespace

// relu x = max(x, 0), NaN stays NaN;  d = g [x > 0]
template <class T>
Var<T> relu(const Var<T>& x)
{
    Op<T> op("relu", {x});
    auto& y = op.out();
    y.resize(x.shape());
    const T* xp = op.x(0).data();
    T* yp = y.data();
    kernels::parallel_for(y.size(), 1, [=](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) yp[i] = xp[i] > T(0) || xp[i] != xp[i] ? xp[i] : T(0);
    });
    return op.done(
        [](Vjp<T>& v) {
            const T *y = v.y.data(), *g = v.g.data();  // y > 0 exactly where x > 0
            v.acc_each(0, [=](std::size_t i) {
                const T gi = g[i];  // loaded either way: a load under the condition keeps the loop scalar
                return y[i] > T(0) ? gi : T(0);
            });
        },
        [](GradVjp<T>& v) { v.acc(0, relu_grad(v.g, v.x(0))); });
}
AD_INSTANTIATE(relu, sig::Unary)

// leaky_relu x = x for x > 0, alpha x otherwise;  d = g (x > 0 ? 1 : alpha)
template <class T>
Var<T> leaky_relu(const Var<T>& x, Scalar<T> alpha)
{
    Op<T> op("leaky_relu", {x});
    assign(op.out(), xt::where(op.x(0) > T(0), op.x(0), alpha * op.x(0)));
    auto vjp = [alpha](auto& v) { v.acc(0, v.g * v.constant(xt::where(v.value(0) > T(0), T(1), alpha))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(leaky_relu, sig::WithScalar)

// elu x = x for x > 0, alpha (e^x - 1) otherwise (expm1: e^x - 1 cancels for x near 0);
// d = g (x > 0 ? 1 : y + alpha)
template <class T>
Var<T> elu(const Var<T>& x, Scalar<T> alpha)
{
    Op<T> op("elu", {x});
    assign(op.out(), xt::where(op.x(0) > T(0), op.x(0), alpha * xt::expm1(op.x(0))));
    auto vjp = [alpha](auto& v) {
        const auto pos = v.constant(positive(v.value(0)));
        v.acc(0, v.g * (pos + (T(1) - pos) * (v.y + alpha)));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(elu, sig::WithScalar)

// selu x = scale elu(x, alpha), the self-normalising constants of Klambauer et al. (2017);
// d = g (x > 0 ? scale : y + scale alpha)
template <class T>
Var<T> selu(const Var<T>& x)
{
    const T alpha = T(selu_alpha), scale = T(selu_scale);
    Op<T> op("selu", {x});
    assign(op.out(), scale * xt::where(op.x(0) > T(0), op.x(0), alpha * xt::expm1(op.x(0))));
    auto vjp = [=](auto& v) {
        const auto pos = v.constant(positive(v.value(0)));
        v.acc(0, v.g * (pos * scale + (T(1) - pos) * (v.y + scale * alpha)));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(selu, sig::Unary)

// softplus x = max(x, 0) + log(1 + e^-|x|), finite for any x;  d = sigmoid(x) g
template <class T>
Var<T> softplus(const Var<T>& x)
{
    Op<T> op("softplus", {x});
    assign(op.out(), xt::maximum(op.x(0), T(0)) + xt::log1p(xt::exp(-xt::abs(op.x(0)))));
    auto vjp = [](auto& v) { v.acc(0, v.g * sigmoid(v.x(0))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(softplus, sig::Unary)

// Phi(x) = erfc(-x / sqrt 2) / 2 = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF;
// d = phi(x) g = e^(-x^2/2) / sqrt(2 pi) g
template <class T>
Var<T> normal_cdf(const Var<T>& x)
{
    Op<T> op("normal_cdf", {x});
    assign(op.out(), normal_cdf(op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g * T(inv_sqrt_2pi) * exp(T(-0.5) * v.x(0) * v.x(0))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(normal_cdf, sig::Unary)

// gelu x = x Phi(x);  d = (Phi(x) + x phi(x)) g
template <class T>
Var<T> gelu(const Var<T>& x)
{
    Op<T> op("gelu", {x});
    assign(op.out(), op.x(0) * normal_cdf(op.x(0)));
    auto vjp = [](auto& v) {
        const auto& x = v.x(0);
        v.acc(0, v.g * (normal_cdf(x) + x * T(inv_sqrt_2pi) * exp(T(-0.5) * x * x)));
    };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(gelu, sig::Unary)

// A constant with x's value: no gradient flows through it.
template <class T>
Var<T> detach(const Var<T>& x)
{
    check_handles("detach", {x});
    return x.tape().constant(x.value());
}
AD_INSTANTIATE(detach, sig::Unary)

namespace {
// Checks that a constant mask and the inputs broadcast together, or throws naming the op and all shapes.
template <class T, class S>
void check_mask_broadcast(const char* op, const S& mask, std::initializer_list<Var<T>> xs)
{
    check_handles(op, xs);
    Shape out(mask.begin(), mask.end());
    bool ok = true;
    for (const auto& x : xs) ok = ok && broadcast_into(Shape(out), x.shape(), out);
    if (!ok) {
        std::string shapes;
        for (const auto& x : xs) shapes += " and " + shape_str(x.shape());
        fail(op, *xs.begin(), "cannot broadcast the mask " + shape_str(mask) + shapes +
                                  " together (aligned from the right, each dimension equal or 1)");
    }
}

// a where cond (a 0/1 tensor of T, saved) is 1, else b;  da = g cond, db = g (1 - cond)
template <class T, class Cond>
Var<T> select_by(const char* name, const Cond& cond, const Var<T>& a, const Var<T>& b)
{
    Op<T> op(name, {a, b});
    auto& m = op.save(0);
    xt::noalias(m) = cond;
    assign(op.out(), xt::where(m > T(0), op.x(0), op.x(1)));
    auto vjp = [](auto& v) {
        v.acc(0, v.g * v.saved(0));
        v.acc(1, v.g * (T(1) - v.saved(0)));
    };
    return op.done(vjp, vjp);
}
}  // namespace

template <class T>
Var<T> where(const xt::xarray<bool>& mask, const Var<T>& a, const Var<T>& b)
{
    check_mask_broadcast("where", mask.shape(), {a, b});
    return select_by("where", xt::cast<T>(mask), a, b);
}
namespace sig {
template <class T> using WhereBool = Var<T>(const xt::xarray<bool>&, const Var<T>&, const Var<T>&);
template <class T> using Where01 = Var<T>(const Tensor<T>&, const Var<T>&, const Var<T>&);
template <class T> using MaskedFill = Var<T>(const Var<T>&, const xt::xarray<bool>&, Scalar<T>);
}
AD_INSTANTIATE(where, sig::WhereBool)

template <class T>
Var<T> where(const Tensor<T>& mask01, const Var<T>& a, const Var<T>& b)
{
    check_mask_broadcast("where", mask01.shape(), {a, b});
    for (std::size_t i = 0; i < mask01.size(); ++i) {
        const T m = mask01.data()[i];
        if (m != T(0) && m != T(1))
            fail("where", a, "a mask of numbers must hold 0 or 1, found " + std::to_string(m) + " at position " +
                                 std::to_string(i) + " of the mask " + shape_str(mask01.shape()));
    }
    return select_by("where", mask01, a, b);
}
AD_INSTANTIATE(where, sig::Where01)

// x with value where mask is true;  dx = g (1 - mask). Saved: the mask as 0/1.
template <class T>
Var<T> masked_fill(const Var<T>& x, const xt::xarray<bool>& mask, Scalar<T> value)
{
    check_mask_broadcast("masked_fill", mask.shape(), {x});
    Op<T> op("masked_fill", {x});
    auto& m = op.save(0);
    xt::noalias(m) = xt::cast<T>(mask);
    assign(op.out(), xt::where(m > T(0), T(value), op.x(0)));
    auto vjp = [](auto& v) { v.acc(0, v.g * (T(1) - v.saved(0))); };
    return op.done(vjp, vjp);
}
AD_INSTANTIATE(masked_fill, sig::MaskedFill)

}  // namespace ad
