#include "nn/clip.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace ad::nn {

namespace {

std::string num(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

// Whether p takes part in a clip: trained, and holding a gradient (none, before any backward()
// reached it since zero_grad(), is skipped, as PyTorch skips a None .grad); a gradient of
// another shape is refused.
template <class T>
bool clipped(const char* fn, const std::string& name, const Parameter<T>& p)
{
    if (!p.requires_grad() || (p.grad.size() == 0 && !p.has_grad())) return false;
    if (!p.has_grad())
        throw Error(std::string(fn) + ": parameter " + name + " has value of shape " + shape_str(p.value().shape()) +
                    " but gradient of shape " + shape_str(p.grad.shape()) + "; expected equal shapes");
    return true;
}

// sum_i g_i^2 in double, in eight independent sums: one serial chain of double additions would
// bound the pass by the adder's latency.
template <class T>
double sum_of_squares(const T* g, std::size_t n)
{
    double lanes[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (std::size_t j = 0; j < 8; ++j) lanes[j] += double(g[i + j]) * double(g[i + j]);
    double sq = 0;
    for (; i < n; ++i) sq += double(g[i]) * double(g[i]);
    for (const double l : lanes) sq += l;
    return sq;
}

void check_bound(const char* fn, const char* what, double c)
{
    if (!std::isfinite(c) || c < 0) throw Error(std::string(fn) + ": " + what + " must be finite and >= 0, got " + num(c));
}

template <class T>
void check_matrix(const char* fn, const Tensor<T>& W)
{
    if (W.dimension() < 2)
        throw Error(std::string(fn) + ": expects a weight matrix [n_out, n_in] or a kernel [out, in, kh, kw] "
                    "(rank >= 2), got shape " + shape_str(W.shape()));
}

// The number of columns of W as a matrix [shape[0], the product of the rest].
template <class T>
std::size_t columns(const Tensor<T>& W)
{
    std::size_t n = 1;
    for (std::size_t k = 1; k < W.dimension(); ++k) n *= W.shape()[k];
    return n;
}

template <class T>
NamedParameters<T> unnamed(const std::vector<Parameter<T>*>& params)
{
    NamedParameters<T> out;
    for (std::size_t i = 0; i < params.size(); ++i) {
        if (!params[i]) throw Error("ParameterList: parameter #" + std::to_string(i) + " of the list is null");
        out.emplace_back("#" + std::to_string(i), params[i]);
    }
    return out;
}

// A row-major m x n matrix in double, so float weights are projected as accurately as doubles.
struct Matrix {
    std::size_t m, n;
    std::vector<double> a;
    double& operator()(std::size_t i, std::size_t j) { return a[i * n + j]; }
    double operator()(std::size_t i, std::size_t j) const { return a[i * n + j]; }
};

double norm2(const std::vector<double>& x)
{
    double s = 0;
    for (double v : x) s += v * v;
    return std::sqrt(s);
}

// A fixed pseudo-random start in [-1, 1) from raw mt19937_64 output (the same on every platform).
std::vector<double> start_vector(std::size_t n)
{
    std::mt19937_64 gen(0x5eed5eedULL);
    std::vector<double> v(n);
    for (double& x : v) x = double(gen() >> 11) * 0x1.0p-52 - 1.0;
    return v;
}

struct Triple {
    double sigma = 0;
    std::vector<double> u, v;
};

// The top singular triple of R by power iteration: v <- R^T R v, normalised. The start vector
// is orthogonalised against `found` (right singular vectors already deflated out of R).
Triple top_singular(const Matrix& R, std::size_t iterations, const std::vector<std::vector<double>>& found)
{
    Triple t;
    t.v = start_vector(R.n);
    for (const auto& f : found) {
        double d = 0;
        for (std::size_t j = 0; j < R.n; ++j) d += f[j] * t.v[j];
        for (std::size_t j = 0; j < R.n; ++j) t.v[j] -= d * f[j];
    }
    double nv = norm2(t.v);
    if (nv == 0) return t;
    for (double& x : t.v) x /= nv;
    t.u.assign(R.m, 0.0);
    for (std::size_t it = 0; it < iterations; ++it) {
        for (std::size_t i = 0; i < R.m; ++i) {
            double s = 0;
            for (std::size_t j = 0; j < R.n; ++j) s += R(i, j) * t.v[j];
            t.u[i] = s;
        }
        const double nu = norm2(t.u);
        if (nu == 0) return Triple{0, t.u, t.v};
        for (double& x : t.u) x /= nu;
        std::fill(t.v.begin(), t.v.end(), 0.0);
        for (std::size_t i = 0; i < R.m; ++i)
            for (std::size_t j = 0; j < R.n; ++j) t.v[j] += R(i, j) * t.u[i];
        t.sigma = norm2(t.v);  // = u^T R v for the normalised v: the Rayleigh estimate of sigma_1
        if (t.sigma == 0) return t;
        for (double& x : t.v) x /= t.sigma;
    }
    return t;
}

template <class T>
Matrix to_matrix(const Tensor<T>& W)
{
    Matrix A{W.shape()[0], columns(W), std::vector<double>(W.size())};  // row-major: a reshape
    std::size_t k = 0;
    for (const T& x : W) A.a[k++] = double(x);
    return A;
}

// --- gradients ---

template <class T>
double clip_norm_named(const NamedParameters<T>& params, double max_norm, bool error_if_nonfinite)
{
    check_bound("clip_grad_norm", "max_norm", max_norm);
    double total_sq = 0;
    for (const auto& [name, p] : params) {
        if (!p) throw Error("clip_grad_norm: parameter " + name + " is null");
        if (!clipped("clip_grad_norm", name, *p)) continue;  // frozen or without a gradient
        total_sq += sum_of_squares(p->grad.data(), p->grad.size());
    }
    const double total = std::sqrt(total_sq);
    if (error_if_nonfinite && !std::isfinite(total))
        throw Error("clip_grad_norm: the total gradient norm is " + num(total) + " (a gradient holds NaN or Inf)");
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1 || std::isnan(coef)) {
        for (const auto& e : params)
            if (e.second->requires_grad() && e.second->has_grad()) e.second->grad *= T(coef);
    }
    return total;
}

template <class T>
void clip_value_named(const NamedParameters<T>& params, double clip_value)
{
    check_bound("clip_grad_value", "clip_value", clip_value);
    for (const auto& [name, p] : params) {
        if (!p) throw Error("clip_grad_value: parameter " + name + " is null");
        clipped("clip_grad_value", name, *p);
    }
    const T c = T(clip_value);
    for (const auto& e : params)
        if (e.second->requires_grad() && e.second->has_grad())
            for (T& g : e.second->grad) g = std::min(std::max(g, -c), c);
}

// --- constraints on one parameter ---

template <class T>
bool frobenius_one(Parameter<T>& W, double c)
{
    check_bound("project_frobenius_norm", "c", c);
    double sq = 0;
    for (const T& x : W.value()) sq += double(x) * double(x);
    const double f = std::sqrt(sq);
    if (f <= c) return false;
    W.mutable_value() *= T(c / f);
    return true;
}

template <class T>
bool elementwise_one(Parameter<T>& W, double c)
{
    check_bound("project_elementwise", "c", c);
    check_matrix("project_elementwise", W.value());
    const double n = double(W.value().shape()[0]) * double(columns(W.value()));
    const T b = T(c / std::sqrt(n));
    const auto clamp = [b](T x) { return std::min(std::max(x, -b), b); };
    // Write access (which counts as a change) only when some element moves.
    const auto& w = W.value();
    if (std::all_of(w.begin(), w.end(), [&](T x) { return clamp(x) == x; })) return false;
    for (T& x : W.mutable_value()) x = clamp(x);
    return true;
}

template <class T>
bool spectral_one(Parameter<T>& W, double c, std::size_t iterations)
{
    check_bound("project_spectral_norm", "c", c);
    check_matrix("project_spectral_norm", W.value());
    if (iterations == 0) throw Error("project_spectral_norm: iterations must be at least 1");
    double sq = 0;
    for (const T& x : W.value()) sq += double(x) * double(x);
    if (std::sqrt(sq) <= c) return false;

    Matrix A = to_matrix(W.value());  // becomes the projection
    Matrix R = A;                   // W with the triples found so far removed
    std::vector<std::vector<double>> found;
    const std::size_t rank_bound = std::min(A.m, A.n);
    bool changed = false;
    for (std::size_t r = 0; r < rank_bound; ++r) {
        const Triple t = top_singular(R, iterations, found);
        if (t.sigma <= c) break;
        for (std::size_t i = 0; i < A.m; ++i)
            for (std::size_t j = 0; j < A.n; ++j) {
                A(i, j) -= (t.sigma - c) * t.u[i] * t.v[j];
                R(i, j) -= t.sigma * t.u[i] * t.v[j];
            }
        found.push_back(t.v);
        changed = true;
    }
    if (!changed) return false;
    std::size_t k = 0;
    for (T& x : W.mutable_value()) x = T(A.a[k++]);
    return true;
}

// The one parameter given alone, or every weight matrix of a collection.
template <class T, class F>
bool project_each(const char* fn, const ParameterList<T>& params, F project)
{
    if (params.single()) return project(*params.named().front().second);
    for (const auto& [name, p] : params.named())
        if (!p) throw Error(std::string(fn) + ": parameter " + name + " is null");
    bool changed = false;
    for (const auto& [name, p] : params.named())
        if (is_weight_matrix(name, *p)) changed = project(*p) || changed;
    return changed;
}

}  // namespace

template <class T>
ParameterList<T>::ParameterList(const std::vector<Parameter<T>*>& params) : params_(unnamed(params))
{
}

template <class T>
double spectral_norm_estimate(const Tensor<T>& W, std::size_t iterations)
{
    check_matrix("spectral_norm_estimate", W);
    if (iterations == 0) throw Error("spectral_norm_estimate: iterations must be at least 1");
    return top_singular(to_matrix(W), iterations, {}).sigma;
}

#define AD_CLIP_INSTANTIATE(T)                                                                          \
    template class ParameterList<T>;                                                                     \
    template double spectral_norm_estimate<T>(const Tensor<T>&, std::size_t);                            \
    double clip_grad_norm(const ParameterList<T>& params, double max_norm, const ClipGradNormOptions& o) \
    {                                                                                                    \
        return clip_norm_named(params.named(), max_norm, o.error_if_nonfinite());                        \
    }                                                                                                    \
    void clip_grad_value(const ParameterList<T>& params, double clip_value)                              \
    {                                                                                                    \
        clip_value_named(params.named(), clip_value);                                                    \
    }                                                                                                    \
    bool project_spectral_norm(const ParameterList<T>& params, double c, std::size_t iterations)         \
    {                                                                                                    \
        return project_each("project_spectral_norm", params,                                             \
                            [&](Parameter<T>& p) { return spectral_one(p, c, iterations); });            \
    }                                                                                                    \
    bool project_frobenius_norm(const ParameterList<T>& params, double c)                                \
    {                                                                                                    \
        return project_each("project_frobenius_norm", params,                                            \
                            [&](Parameter<T>& p) { return frobenius_one(p, c); });                       \
    }                                                                                                    \
    bool project_elementwise(const ParameterList<T>& params, double c)                                   \
    {                                                                                                    \
        return project_each("project_elementwise", params,                                               \
                            [&](Parameter<T>& p) { return elementwise_one(p, c); });                     \
    }

AD_CLIP_INSTANTIATE(float)
AD_CLIP_INSTANTIATE(double)

}  // namespace ad::nn
