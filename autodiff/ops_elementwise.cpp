// Elementwise ops. Each: the forward, and beside it the VJP as the derivative times the
// cotangent g. Binary ops broadcast; Vjp::acc sums g back to each input's shape.
#include "autodiff/ops.hpp"

#include "autodiff/detail/op.hpp"

#include <cmath>

namespace ad {

namespace {
constexpr double selu_alpha = 1.6732632423543772848170429916717;
constexpr double selu_scale = 1.0507009873554804934193349852946;

template <class T>
void check_broadcast(const char* op, const Var<T>& a, const Var<T>& b)
{
    check_handles(op, {a, b});
    broadcast_shape(op, a.shape(), b.shape());
}
}  // namespace

// d(-x) = -g
template <class T>
Var<T> neg(const Var<T>& x)
{
    Op<T> op("neg", {x}, [](Vjp<T>& v) { v.acc(0, -v.g); });
    xt::noalias(op.out()) = -x.value();
    return op.done();
}

// d(a + b) = g, g
template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("add", a, b);
    Op<T> op("add", {a, b}, [](Vjp<T>& v) {
        v.acc(0, v.g);
        v.acc(1, v.g);
    });
    const auto& av = a.value();
    const auto& bv = b.value();
    if (av.shape() == bv.shape()) {  // the common case (a residual sum) as a plain loop
        auto& y = op.out();
        y.resize(av.shape());
        const T *ap = av.data(), *bp = bv.data();
        T* yp = y.data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i) yp[i] = ap[i] + bp[i];
    } else {
        xt::noalias(op.out()) = av + bv;
    }
    return op.done();
}

// d(a - b) = g, -g
template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("sub", a, b);
    Op<T> op("sub", {a, b}, [](Vjp<T>& v) {
        v.acc(0, v.g);
        v.acc(1, -v.g);
    });
    xt::noalias(op.out()) = a.value() - b.value();
    return op.done();
}

// d(a b) = g b, g a
template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("mul", a, b);
    Op<T> op("mul", {a, b}, [](Vjp<T>& v) {
        v.acc(0, v.g * v.x(1));
        v.acc(1, v.g * v.x(0));
    });
    xt::noalias(op.out()) = a.value() * b.value();
    return op.done();
}

// d(a / b) = g / b, -g a / b^2 = -g y / b
template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("div", a, b);
    Op<T> op("div", {a, b}, [](Vjp<T>& v) {
        v.acc(0, v.g / v.x(1));
        v.acc(1, -v.g * v.y / v.x(1));
    });
    xt::noalias(op.out()) = a.value() / b.value();
    return op.done();
}

// d(x + s) = g
template <class T>
Var<T> add(const Var<T>& x, Scalar<T> s)
{
    Op<T> op("add_scalar", {x}, [](Vjp<T>& v) { v.acc(0, v.g); });
    op.record().a = s;
    xt::noalias(op.out()) = x.value() + s;
    return op.done();
}

// d(s x) = s g
template <class T>
Var<T> mul(const Var<T>& x, Scalar<T> s)
{
    Op<T> op("mul_scalar", {x}, [](Vjp<T>& v) { v.acc(0, v.g * static_cast<T>(v.r.a)); });
    op.record().a = s;
    xt::noalias(op.out()) = x.value() * s;
    return op.done();
}

// d(s / x) = -s g / x^2 = -g y / x
template <class T>
Var<T> rdiv(Scalar<T> s, const Var<T>& x)
{
    Op<T> op("rdiv_scalar", {x}, [](Vjp<T>& v) { v.acc(0, -v.g * v.y / v.x(0)); });
    op.record().a = s;
    xt::noalias(op.out()) = s / x.value();
    return op.done();
}

// d(x^p) = p x^(p-1) g
template <class T>
Var<T> pow(const Var<T>& x, Scalar<T> p)
{
    Op<T> op("pow", {x}, [](Vjp<T>& v) {
        const T p = static_cast<T>(v.r.a);
        v.acc(0, v.g * p * xt::pow(v.x(0), p - T(1)));
    });
    op.record().a = p;
    xt::noalias(op.out()) = xt::pow(x.value(), p);
    return op.done();
}

// d(x^2) = 2 x g
template <class T>
Var<T> square(const Var<T>& x)
{
    Op<T> op("square", {x}, [](Vjp<T>& v) { v.acc(0, T(2) * v.x(0) * v.g); });
    xt::noalias(op.out()) = x.value() * x.value();
    return op.done();
}

// d sqrt(x) = g / (2 y)
template <class T>
Var<T> sqrt(const Var<T>& x)
{
    Op<T> op("sqrt", {x}, [](Vjp<T>& v) { v.acc(0, v.g / (T(2) * v.y)); });
    xt::noalias(op.out()) = xt::sqrt(x.value());
    return op.done();
}

// d e^x = y g
template <class T>
Var<T> exp(const Var<T>& x)
{
    Op<T> op("exp", {x}, [](Vjp<T>& v) { v.acc(0, v.g * v.y); });
    xt::noalias(op.out()) = xt::exp(x.value());
    return op.done();
}

// d log x = g / x
template <class T>
Var<T> log(const Var<T>& x)
{
    Op<T> op("log", {x}, [](Vjp<T>& v) { v.acc(0, v.g / v.x(0)); });
    xt::noalias(op.out()) = xt::log(x.value());
    return op.done();
}

// d|x| = sign(x) g, with sign(0) = 0
template <class T>
Var<T> abs(const Var<T>& x)
{
    Op<T> op("abs", {x}, [](Vjp<T>& v) { v.acc(0, v.g * xt::sign(v.x(0))); });
    xt::noalias(op.out()) = xt::abs(x.value());
    return op.done();
}

// d sin x = cos(x) g
template <class T>
Var<T> sin(const Var<T>& x)
{
    Op<T> op("sin", {x}, [](Vjp<T>& v) { v.acc(0, v.g * xt::cos(v.x(0))); });
    xt::noalias(op.out()) = xt::sin(x.value());
    return op.done();
}

// d cos x = -sin(x) g
template <class T>
Var<T> cos(const Var<T>& x)
{
    Op<T> op("cos", {x}, [](Vjp<T>& v) { v.acc(0, -v.g * xt::sin(v.x(0))); });
    xt::noalias(op.out()) = xt::cos(x.value());
    return op.done();
}

// d max(a, b) = g [a > b], g [b > a]; a tie gives each g / 2
template <class T>
Var<T> maximum(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("maximum", a, b);
    Op<T> op("maximum", {a, b}, [](Vjp<T>& v) {
        const auto& a = v.x(0);
        const auto& b = v.x(1);
        v.acc(0, v.g * xt::where(a > b, T(1), xt::where(xt::equal(a, b), T(0.5), T(0))));
        v.acc(1, v.g * xt::where(b > a, T(1), xt::where(xt::equal(a, b), T(0.5), T(0))));
    });
    xt::noalias(op.out()) = xt::maximum(a.value(), b.value());
    return op.done();
}

// d min(a, b) = g [a < b], g [b < a]; a tie gives each g / 2
template <class T>
Var<T> minimum(const Var<T>& a, const Var<T>& b)
{
    check_broadcast("minimum", a, b);
    Op<T> op("minimum", {a, b}, [](Vjp<T>& v) {
        const auto& a = v.x(0);
        const auto& b = v.x(1);
        v.acc(0, v.g * xt::where(a < b, T(1), xt::where(xt::equal(a, b), T(0.5), T(0))));
        v.acc(1, v.g * xt::where(b < a, T(1), xt::where(xt::equal(a, b), T(0.5), T(0))));
    });
    xt::noalias(op.out()) = xt::minimum(a.value(), b.value());
    return op.done();
}

// d clamp(x, lo, hi) = g [lo <= x <= hi]
template <class T>
Var<T> clamp(const Var<T>& x, Scalar<T> lo, Scalar<T> hi)
{
    if (!(lo <= hi))
        throw Error("clamp: needs lo <= hi, got lo = " + std::to_string(lo) +
                    ", hi = " + std::to_string(hi));
    Op<T> op("clamp", {x}, [](Vjp<T>& v) {
        const T lo = static_cast<T>(v.r.a), hi = static_cast<T>(v.r.b);
        v.acc(0, xt::where(v.x(0) >= lo && v.x(0) <= hi, v.g, T(0)));
    });
    op.record().a = lo;
    op.record().b = hi;
    xt::noalias(op.out()) = xt::clip(x.value(), lo, hi);
    return op.done();
}

// d tanh x = (1 - y^2) g
template <class T>
Var<T> tanh(const Var<T>& x)
{
    Op<T> op("tanh", {x}, [](Vjp<T>& v) { v.acc(0, v.g * (T(1) - v.y * v.y)); });
    xt::noalias(op.out()) = xt::tanh(x.value());
    return op.done();
}

// d sigmoid x = y (1 - y) g, at most g / 4
template <class T>
Var<T> sigmoid(const Var<T>& x)
{
    Op<T> op("sigmoid", {x}, [](Vjp<T>& v) { v.acc(0, v.g * v.y * (T(1) - v.y)); });
    xt::noalias(op.out()) = T(1) / (T(1) + xt::exp(-x.value()));
    return op.done();
}

// d relu x = g [x > 0]
template <class T>
Var<T> relu(const Var<T>& x)
{
    Op<T> op("relu", {x}, [](Vjp<T>& v) {
        if (!v.wants(0)) return;
        bool first;
        T* dx = v.slot(0, first).data();
        const T *y = v.y.data(), *g = v.g.data();  // y > 0 exactly where x > 0
        const std::size_t n = v.y.size();
        if (first)
            for (std::size_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? g[i] : T(0);
        else
            for (std::size_t i = 0; i < n; ++i) dx[i] += y[i] > T(0) ? g[i] : T(0);
    });
    auto& y = op.out();
    y.resize(x.shape());
    const T* xp = x.value().data();
    T* yp = y.data();
    for (std::size_t i = 0, n = y.size(); i < n; ++i) yp[i] = xp[i] > T(0) ? xp[i] : T(0);
    return op.done();
}

// d leaky_relu x = g (x > 0 ? 1 : alpha)
template <class T>
Var<T> leaky_relu(const Var<T>& x, Scalar<T> alpha)
{
    Op<T> op("leaky_relu", {x}, [](Vjp<T>& v) {
        v.acc(0, xt::where(v.x(0) > T(0), v.g, static_cast<T>(v.r.a) * v.g));
    });
    op.record().a = alpha;
    xt::noalias(op.out()) = xt::where(x.value() > T(0), x.value(), alpha * x.value());
    return op.done();
}

// elu x = x for x > 0, alpha (e^x - 1) otherwise; d = g (x > 0 ? 1 : y + alpha)
template <class T>
Var<T> elu(const Var<T>& x, Scalar<T> alpha)
{
    Op<T> op("elu", {x}, [](Vjp<T>& v) {
        v.acc(0, xt::where(v.x(0) > T(0), v.g, v.g * (v.y + static_cast<T>(v.r.a))));
    });
    op.record().a = alpha;
    xt::noalias(op.out()) = xt::where(x.value() > T(0), x.value(), alpha * (xt::exp(x.value()) - T(1)));
    return op.done();
}

// selu x = scale elu(x, alpha) with the self-normalising constants of Klambauer et al. (2017)
template <class T>
Var<T> selu(const Var<T>& x)
{
    Op<T> op("selu", {x}, [](Vjp<T>& v) {
        const T alpha = T(selu_alpha), scale = T(selu_scale);
        v.acc(0, xt::where(v.x(0) > T(0), scale * v.g, v.g * (v.y + scale * alpha)));
    });
    const T alpha = T(selu_alpha), scale = T(selu_scale);
    xt::noalias(op.out()) = scale * xt::where(x.value() > T(0), x.value(), alpha * (xt::exp(x.value()) - T(1)));
    return op.done();
}

// softplus x = max(x, 0) + log(1 + e^-|x|), finite for any x; d = sigmoid(x) g
template <class T>
Var<T> softplus(const Var<T>& x)
{
    Op<T> op("softplus", {x}, [](Vjp<T>& v) {
        v.acc(0, v.g / (T(1) + xt::exp(-v.x(0))));
    });
    xt::noalias(op.out()) = xt::maximum(x.value(), T(0)) + xt::log1p(xt::exp(-xt::abs(x.value())));
    return op.done();
}

// gelu x = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2; d = (Phi(x) + x phi(x)) g
template <class T>
Var<T> gelu(const Var<T>& x)
{
    Op<T> op("gelu", {x}, [](Vjp<T>& v) {
        const T inv_sqrt2 = T(0.70710678118654752440);
        const T inv_sqrt_2pi = T(0.39894228040143267794);
        const auto& x = v.x(0);
        v.acc(0, v.g * (T(0.5) * (T(1) + xt::erf(x * inv_sqrt2)) +
                        x * inv_sqrt_2pi * xt::exp(T(-0.5) * x * x)));
    });
    xt::noalias(op.out()) = T(0.5) * x.value() * (T(1) + xt::erf(x.value() * T(0.70710678118654752440)));
    return op.done();
}

// A constant with x's value: no gradient flows through it.
template <class T>
Var<T> detach(const Var<T>& x)
{
    return x.tape().constant(x.value());
}

#define AD_INSTANTIATE(T)                                                      \
    template Var<T> neg(const Var<T>&);                                        \
    template Var<T> add(const Var<T>&, const Var<T>&);                         \
    template Var<T> sub(const Var<T>&, const Var<T>&);                         \
    template Var<T> mul(const Var<T>&, const Var<T>&);                         \
    template Var<T> div(const Var<T>&, const Var<T>&);                         \
    template Var<T> add(const Var<T>&, Scalar<T>);                             \
    template Var<T> mul(const Var<T>&, Scalar<T>);                             \
    template Var<T> rdiv(Scalar<T>, const Var<T>&);                            \
    template Var<T> pow(const Var<T>&, Scalar<T>);                             \
    template Var<T> square(const Var<T>&);                                     \
    template Var<T> sqrt(const Var<T>&);                                       \
    template Var<T> exp(const Var<T>&);                                        \
    template Var<T> log(const Var<T>&);                                        \
    template Var<T> abs(const Var<T>&);                                        \
    template Var<T> sin(const Var<T>&);                                        \
    template Var<T> cos(const Var<T>&);                                        \
    template Var<T> maximum(const Var<T>&, const Var<T>&);                     \
    template Var<T> minimum(const Var<T>&, const Var<T>&);                     \
    template Var<T> clamp(const Var<T>&, Scalar<T>, Scalar<T>);                \
    template Var<T> tanh(const Var<T>&);                                       \
    template Var<T> sigmoid(const Var<T>&);                                    \
    template Var<T> relu(const Var<T>&);                                       \
    template Var<T> leaky_relu(const Var<T>&, Scalar<T>);                      \
    template Var<T> elu(const Var<T>&, Scalar<T>);                             \
    template Var<T> selu(const Var<T>&);                                       \
    template Var<T> softplus(const Var<T>&);                                   \
    template Var<T> gelu(const Var<T>&);                                       \
    template Var<T> detach(const Var<T>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
