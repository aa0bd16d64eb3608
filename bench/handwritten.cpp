// The floor a tape could reach: the same training step written by hand, with no tape. Every
// buffer is allocated once; matrix products go through xt::blas::gemm into their destination
// (the smallest through the engine's plain loops, as the engine's own products do);
// the backward pass is the closed-form chain rule written out per layer; weight gradients are
// overwritten by their GEMM (beta = 0), so nothing needs zeroing.
#include "configs.hpp"

#include "autodiff/kernels/blas.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cmath>

namespace bench {

namespace {

template <class T>
using Matrix = xt::xtensor<T, 2>;
template <class T>
using Vector = xt::xtensor<T, 1>;

// C = op(A) op(B). Products of at most kernels::small_gemm_max multiply-adds go through the
// same plain loops as the engine's, so that config a's floor pays what the engine pays for them.
template <class T>
void product(const Matrix<T>& A, const Matrix<T>& B, Matrix<T>& C, bool ta, bool tb)
{
    const ad::kernels::Dims a{A.shape()[0], A.shape()[1]}, b{B.shape()[0], B.shape()[1]}, c{C.shape()[0], C.shape()[1]};
    if (c[0] * c[1] * (ta ? a[0] : a[1]) <= ad::kernels::small_gemm_max)
        ad::kernels::gemm_loops(A.data(), a, ta, B.data(), b, tb, C.data(), c, false);
    else
        xt::blas::gemm(A, B, C, ta, tb);
}

template <class T>
Matrix<T> matrix(const std::vector<float>& data, std::size_t rows, std::size_t cols)
{
    Matrix<T> m = Matrix<T>::from_shape({rows, cols});
    std::copy(data.begin(), data.end(), m.begin());
    return m;
}

template <class T>
Vector<T> vector(const std::vector<float>& data)
{
    Vector<T> v = Vector<T>::from_shape({data.size()});
    std::copy(data.begin(), data.end(), v.begin());
    return v;
}

// sum_j a[j] b[j] with eight independent partial sums, so the loop is not one long chain of
// dependent additions.
template <class T>
T dot(const T* a, const T* b, std::size_t n)
{
    T part[8] = {};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (std::size_t l = 0; l < 8; ++l) part[l] += a[j + l] * b[j + l];
    T total = 0;
    for (; j < n; ++j) total += a[j] * b[j];
    for (T p : part) total += p;
    return total;
}

template <class T>
T sum(const T* a, std::size_t n)
{
    T part[8] = {};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (std::size_t l = 0; l < 8; ++l) part[l] += a[j + l];
    T total = 0;
    for (; j < n; ++j) total += a[j];
    for (T p : part) total += p;
    return total;
}

// One row of layer norm, residual and ReLU, forward: xhat = (z - mean) inv, n = xhat gain + beta,
// h = x + relu(n). (Loops over rows live in functions whose pointers are __restrict, so the
// compiler vectorises them without run-time alias checks.)
template <class T>
void layer_norm_row(const T* __restrict z, const T* __restrict x, const T* __restrict gain,
                    const T* __restrict beta, T* __restrict xhat, T* __restrict n,
                    T* __restrict h, T& inv_std, std::size_t width)
{
    const T mean = sum(z, width) / T(width);
    for (std::size_t j = 0; j < width; ++j) xhat[j] = z[j] - mean;
    const T inv = T(1) / std::sqrt(dot(xhat, xhat, width) / T(width) + T(1e-5));
    inv_std = inv;
    for (std::size_t j = 0; j < width; ++j) {
        const T xh = xhat[j] * inv;
        const T v = xh * gain[j] + beta[j];
        xhat[j] = xh;
        n[j] = v;
        h[j] = x[j] + (v > T(0) ? v : T(0));
    }
}

// The same row backward from dh: dn = dh [n > 0], dgain += dn xhat, dbeta += dn,
// dz = inv (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) with dxhat = dn gain.
template <class T>
void layer_norm_row_backward(const T* __restrict dh, const T* __restrict n,
                             const T* __restrict xhat, const T* __restrict gain, T inv_std,
                             T* __restrict dgain, T* __restrict dbeta, T* __restrict dz,
                             std::size_t width)
{
    for (std::size_t j = 0; j < width; ++j) {
        const T dn = n[j] > T(0) ? dh[j] : T(0);
        dgain[j] += dn * xhat[j];
        dbeta[j] += dn;
        dz[j] = dn * gain[j];
    }
    const T m1 = sum(dz, width) / T(width);
    const T m2 = dot(dz, xhat, width) / T(width);
    for (std::size_t j = 0; j < width; ++j) dz[j] = inv_std * (dz[j] - m1 - xhat[j] * m2);
}

template <class T>
struct Layer {
    Matrix<T> W, dW;       // [out, in]
    Vector<T> b, db;       // [out]
    Matrix<T> z, dz;       // pre-activation and its gradient, [batch, out]
    Matrix<T> h, dh;          // the layer's output after activation (or residual sum), [batch, out]
    // layer norm (residual blocks only)
    Vector<T> gain, dgain, beta, dbeta;
    Matrix<T> xhat, n;        // normalised z and gain * xhat + beta
    std::vector<T> inv_std;  // per row
};

template <class T>
class Handwritten : public Trainer {
public:
    Handwritten(const Config& c, const Init& init) : c_(c), labels_(init.labels)
    {
        const auto shapes = c.linear_shapes();
        for (std::size_t l = 0; l < shapes.size(); ++l) {
            const auto [in, out] = shapes[l];
            Layer<T> L;
            L.W = matrix<T>(init.weight[l], out, in);
            L.dW = Matrix<T>::from_shape({out, in});
            L.b = vector<T>(init.bias[l]);
            L.db = Vector<T>::from_shape({out});
            for (Matrix<T>* m : {&L.z, &L.dz, &L.h, &L.dh}) *m = Matrix<T>::from_shape({c.batch, out});
            if (c.residual()) {
                L.gain = Vector<T>::from_shape({out});
                L.gain.fill(T(1));
                L.beta = Vector<T>::from_shape({out});
                L.beta.fill(T(0));
                L.dgain = Vector<T>::from_shape({out});
                L.dbeta = Vector<T>::from_shape({out});
                L.xhat = Matrix<T>::from_shape({c.batch, out});
                L.n = Matrix<T>::from_shape({c.batch, out});
                L.inv_std.resize(c.batch);
            }
            layers_.push_back(std::move(L));
        }
        x_ = matrix<T>(init.x, c.batch, c.inputs());
        if (c.loss == Loss::mse) target_ = matrix<T>(init.target, c.batch, c.outputs());
    }

    void step() override
    {
        forward();
        backward();
        update();
    }

    double loss() override { return loss_; }

private:
    const Matrix<T>& input(std::size_t l) const { return l == 0 ? x_ : layers_[l - 1].h; }

    void forward()
    {
        const std::size_t n = layers_.size(), B = c_.batch;
        for (std::size_t l = 0; l < n; ++l) {
            Layer<T>& L = layers_[l];
            const std::size_t out = L.b.size();
            product(input(l), L.W, L.z, false, true);
            T* z = L.z.data();
            const T* b = L.b.data();
            for (std::size_t r = 0; r < B; ++r)
                for (std::size_t j = 0; j < out; ++j) z[r * out + j] += b[j];
            T* h = L.h.data();
            if (c_.residual()) {
                const T* x = input(l).data();
                for (std::size_t r = 0; r < B; ++r)
                    layer_norm_row(z + r * out, x + r * out, L.gain.data(), L.beta.data(),
                                   L.xhat.data() + r * out, L.n.data() + r * out, h + r * out,
                                   L.inv_std[r], out);
            } else if (l + 1 < n) {
                if (c_.activation == Activation::tanh)  // vectorised (xsimd), as the engine's tanh
                    xt::noalias(L.h) = xt::tanh(L.z);
                else
                    for (std::size_t k = 0; k < B * out; ++k) h[k] = std::max(z[k], T(0));
            } else {
                std::copy(z, z + B * out, h);
            }
        }
        // loss and its gradient with respect to the last output
        Layer<T>& last = layers_.back();
        const std::size_t out = last.b.size();
        const T* y = last.h.data();
        T* dy = last.dh.data();
        double total = 0;
        if (c_.loss == Loss::mse) {
            const std::size_t N = B * out;
            const T* t = target_.data();
            for (std::size_t k = 0; k < N; ++k) {
                const T d = y[k] - t[k];
                total += double(d) * d;
                dy[k] = T(2) * d / T(N);
            }
            loss_ = total / double(N);
        } else {
            for (std::size_t r = 0; r < B; ++r) {
                const T* yr = y + r * out;
                const T m = *std::max_element(yr, yr + out);
                T s = 0;
                for (std::size_t j = 0; j < out; ++j) s += std::exp(yr[j] - m);
                total += m + std::log(s) - yr[std::size_t(labels_[r])];
                for (std::size_t j = 0; j < out; ++j)
                    dy[r * out + j] = (std::exp(yr[j] - m) / s - (std::size_t(labels_[r]) == j ? T(1) : T(0))) / T(B);
            }
            loss_ = total / double(B);
        }
    }

    void backward()
    {
        const std::size_t n = layers_.size(), B = c_.batch;
        for (std::size_t l = n; l-- > 0;) {
            Layer<T>& L = layers_[l];
            const std::size_t out = L.b.size();
            const T* dh = L.dh.data();
            T* dz = L.dz.data();
            if (c_.residual()) {
                L.dgain.fill(T(0));
                L.dbeta.fill(T(0));
                for (std::size_t r = 0; r < B; ++r)
                    layer_norm_row_backward(dh + r * out, L.n.data() + r * out, L.xhat.data() + r * out,
                                            L.gain.data(), L.inv_std[r], L.dgain.data(), L.dbeta.data(),
                                            dz + r * out, out);
            } else if (l + 1 < n) {
                const T* h = L.h.data();
                if (c_.activation == Activation::tanh)
                    for (std::size_t k = 0; k < B * out; ++k) dz[k] = dh[k] * (T(1) - h[k] * h[k]);
                else
                    for (std::size_t k = 0; k < B * out; ++k) dz[k] = h[k] > T(0) ? dh[k] : T(0);
            } else {
                std::copy(dh, dh + B * out, dz);
            }
            product(L.dz, input(l), L.dW, true, false);
            T* db = L.db.data();
            std::fill(db, db + out, T(0));
            for (std::size_t r = 0; r < B; ++r)
                for (std::size_t j = 0; j < out; ++j) db[j] += dz[r * out + j];
            if (l > 0) {
                Matrix<T>& dx = layers_[l - 1].dh;
                product(L.dz, L.W, dx, false, false);
                if (c_.residual())  // x flows past the block unchanged: its gradient adds dh
                    for (std::size_t k = 0; k < B * out; ++k) dx.data()[k] += dh[k];
            }
        }
    }

    void update()
    {
        const T lr = T(c_.lr);
        auto sgd = [lr](auto& p, const auto& g) {
            T* pp = p.data();
            const T* gp = g.data();
            for (std::size_t k = 0; k < p.size(); ++k) pp[k] -= lr * gp[k];
        };
        for (auto& L : layers_) {
            sgd(L.W, L.dW);
            sgd(L.b, L.db);
            if (c_.residual()) {
                sgd(L.gain, L.dgain);
                sgd(L.beta, L.dbeta);
            }
        }
    }

    const Config& c_;
    std::vector<Layer<T>> layers_;
    Matrix<T> x_, target_;
    std::vector<std::int64_t> labels_;
    double loss_ = 0;
};

}  // namespace

std::unique_ptr<Trainer> make_handwritten(const Config& c, const Init& init, Precision p)
{
    if (p == Precision::f64) return std::make_unique<Handwritten<double>>(c, init);
    return std::make_unique<Handwritten<float>>(c, init);
}

}  // namespace bench
