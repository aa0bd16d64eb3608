// The floor a tape could reach: the same training step written by hand, with no tape. Every
// buffer is allocated once; matrix products go through xt::blas::gemm into their destination;
// the backward pass is the closed-form chain rule written out per layer; weight gradients are
// overwritten by their GEMM (beta = 0), so nothing needs zeroing.
#include "configs.hpp"

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cmath>

namespace bench {

namespace {

using Matrix = xt::xtensor<float, 2>;
using Vector = xt::xtensor<float, 1>;

Matrix matrix(const std::vector<float>& data, std::size_t rows, std::size_t cols)
{
    Matrix m = Matrix::from_shape({rows, cols});
    std::copy(data.begin(), data.end(), m.begin());
    return m;
}

Vector vector(const std::vector<float>& data)
{
    Vector v = Vector::from_shape({data.size()});
    std::copy(data.begin(), data.end(), v.begin());
    return v;
}

// sum_j a[j] b[j] with eight independent partial sums, so the loop is not one long chain of
// dependent float additions.
float dot(const float* a, const float* b, std::size_t n)
{
    float part[8] = {};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (std::size_t l = 0; l < 8; ++l) part[l] += a[j + l] * b[j + l];
    float total = 0;
    for (; j < n; ++j) total += a[j] * b[j];
    for (float p : part) total += p;
    return total;
}

float sum(const float* a, std::size_t n)
{
    float part[8] = {};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (std::size_t l = 0; l < 8; ++l) part[l] += a[j + l];
    float total = 0;
    for (; j < n; ++j) total += a[j];
    for (float p : part) total += p;
    return total;
}

// One row of layer norm, residual and ReLU, forward: xhat = (z - mean) inv, n = xhat gain + beta,
// h = x + relu(n). (Loops over rows live in functions whose pointers are __restrict, so the
// compiler vectorises them without run-time alias checks.)
void layer_norm_row(const float* __restrict z, const float* __restrict x, const float* __restrict gain,
                    const float* __restrict beta, float* __restrict xhat, float* __restrict n,
                    float* __restrict h, float& inv_std, std::size_t width)
{
    const float mean = sum(z, width) / float(width);
    for (std::size_t j = 0; j < width; ++j) xhat[j] = z[j] - mean;
    const float inv = 1.0f / std::sqrt(dot(xhat, xhat, width) / float(width) + 1e-5f);
    inv_std = inv;
    for (std::size_t j = 0; j < width; ++j) {
        const float xh = xhat[j] * inv;
        const float v = xh * gain[j] + beta[j];
        xhat[j] = xh;
        n[j] = v;
        h[j] = x[j] + (v > 0.0f ? v : 0.0f);
    }
}

// The same row backward from dh: dn = dh [n > 0], dgain += dn xhat, dbeta += dn,
// dz = inv (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) with dxhat = dn gain.
void layer_norm_row_backward(const float* __restrict dh, const float* __restrict n,
                             const float* __restrict xhat, const float* __restrict gain, float inv_std,
                             float* __restrict dgain, float* __restrict dbeta, float* __restrict dz,
                             std::size_t width)
{
    for (std::size_t j = 0; j < width; ++j) {
        const float dn = n[j] > 0.0f ? dh[j] : 0.0f;
        dgain[j] += dn * xhat[j];
        dbeta[j] += dn;
        dz[j] = dn * gain[j];
    }
    const float m1 = sum(dz, width) / float(width);
    const float m2 = dot(dz, xhat, width) / float(width);
    for (std::size_t j = 0; j < width; ++j) dz[j] = inv_std * (dz[j] - m1 - xhat[j] * m2);
}

struct Layer {
    Matrix W, dW;          // [out, in]
    Vector b, db;          // [out]
    Matrix z, dz;          // pre-activation and its gradient, [batch, out]
    Matrix h, dh;          // the layer's output after activation (or residual sum), [batch, out]
    // layer norm (residual blocks only)
    Vector gain, dgain, beta, dbeta;
    Matrix xhat, n;        // normalised z and gain * xhat + beta
    std::vector<float> inv_std;  // per row
};

class Handwritten : public Trainer {
public:
    Handwritten(const Config& c, const Init& init) : c_(c), labels_(init.labels)
    {
        const auto shapes = c.linear_shapes();
        for (std::size_t l = 0; l < shapes.size(); ++l) {
            const auto [in, out] = shapes[l];
            Layer L;
            L.W = matrix(init.weight[l], out, in);
            L.dW = Matrix::from_shape({out, in});
            L.b = vector(init.bias[l]);
            L.db = Vector::from_shape({out});
            for (Matrix* m : {&L.z, &L.dz, &L.h, &L.dh}) *m = Matrix::from_shape({c.batch, out});
            if (c.residual()) {
                L.gain = Vector::from_shape({out});
                L.gain.fill(1.0f);
                L.beta = Vector::from_shape({out});
                L.beta.fill(0.0f);
                L.dgain = Vector::from_shape({out});
                L.dbeta = Vector::from_shape({out});
                L.xhat = Matrix::from_shape({c.batch, out});
                L.n = Matrix::from_shape({c.batch, out});
                L.inv_std.resize(c.batch);
            }
            layers_.push_back(std::move(L));
        }
        x_ = matrix(init.x, c.batch, c.inputs());
        if (c.loss == Loss::mse) target_ = matrix(init.target, c.batch, c.outputs());
    }

    void step() override
    {
        forward();
        backward();
        update();
    }

    double loss() override { return loss_; }

private:
    const Matrix& input(std::size_t l) const { return l == 0 ? x_ : layers_[l - 1].h; }

    void forward()
    {
        const std::size_t n = layers_.size(), B = c_.batch;
        for (std::size_t l = 0; l < n; ++l) {
            Layer& L = layers_[l];
            const std::size_t out = L.b.size();
            xt::blas::gemm(input(l), L.W, L.z, false, true);
            float* z = L.z.data();
            const float* b = L.b.data();
            for (std::size_t r = 0; r < B; ++r)
                for (std::size_t j = 0; j < out; ++j) z[r * out + j] += b[j];
            float* h = L.h.data();
            if (c_.residual()) {
                const float* x = input(l).data();
                for (std::size_t r = 0; r < B; ++r)
                    layer_norm_row(z + r * out, x + r * out, L.gain.data(), L.beta.data(),
                                   L.xhat.data() + r * out, L.n.data() + r * out, h + r * out,
                                   L.inv_std[r], out);
            } else if (l + 1 < n) {
                if (c_.activation == Activation::tanh)
                    for (std::size_t k = 0; k < B * out; ++k) h[k] = std::tanh(z[k]);
                else
                    for (std::size_t k = 0; k < B * out; ++k) h[k] = std::max(z[k], 0.0f);
            } else {
                std::copy(z, z + B * out, h);
            }
        }
        // loss and its gradient with respect to the last output
        Layer& last = layers_.back();
        const std::size_t out = last.b.size();
        const float* y = last.h.data();
        float* dy = last.dh.data();
        double total = 0;
        if (c_.loss == Loss::mse) {
            const std::size_t N = B * out;
            const float* t = target_.data();
            for (std::size_t k = 0; k < N; ++k) {
                const float d = y[k] - t[k];
                total += double(d) * d;
                dy[k] = 2.0f * d / float(N);
            }
            loss_ = total / double(N);
        } else {
            for (std::size_t r = 0; r < B; ++r) {
                const float* yr = y + r * out;
                const float m = *std::max_element(yr, yr + out);
                float s = 0;
                for (std::size_t j = 0; j < out; ++j) s += std::exp(yr[j] - m);
                total += m + std::log(s) - yr[std::size_t(labels_[r])];
                for (std::size_t j = 0; j < out; ++j)
                    dy[r * out + j] = (std::exp(yr[j] - m) / s - (std::size_t(labels_[r]) == j ? 1.0f : 0.0f)) / float(B);
            }
            loss_ = total / double(B);
        }
    }

    void backward()
    {
        const std::size_t n = layers_.size(), B = c_.batch;
        for (std::size_t l = n; l-- > 0;) {
            Layer& L = layers_[l];
            const std::size_t out = L.b.size();
            const float* dh = L.dh.data();
            float* dz = L.dz.data();
            if (c_.residual()) {
                L.dgain.fill(0.0f);
                L.dbeta.fill(0.0f);
                for (std::size_t r = 0; r < B; ++r)
                    layer_norm_row_backward(dh + r * out, L.n.data() + r * out, L.xhat.data() + r * out,
                                            L.gain.data(), L.inv_std[r], L.dgain.data(), L.dbeta.data(),
                                            dz + r * out, out);
            } else if (l + 1 < n) {
                const float* h = L.h.data();
                if (c_.activation == Activation::tanh)
                    for (std::size_t k = 0; k < B * out; ++k) dz[k] = dh[k] * (1.0f - h[k] * h[k]);
                else
                    for (std::size_t k = 0; k < B * out; ++k) dz[k] = h[k] > 0.0f ? dh[k] : 0.0f;
            } else {
                std::copy(dh, dh + B * out, dz);
            }
            xt::blas::gemm(L.dz, input(l), L.dW, true, false);
            float* db = L.db.data();
            std::fill(db, db + out, 0.0f);
            for (std::size_t r = 0; r < B; ++r)
                for (std::size_t j = 0; j < out; ++j) db[j] += dz[r * out + j];
            if (l > 0) {
                Matrix& dx = layers_[l - 1].dh;
                xt::blas::gemm(L.dz, L.W, dx, false, false);
                if (c_.residual())  // x flows past the block unchanged: its gradient adds dh
                    for (std::size_t k = 0; k < B * out; ++k) dx.data()[k] += dh[k];
            }
        }
    }

    void update()
    {
        const float lr = c_.lr;
        auto sgd = [lr](auto& p, const auto& g) {
            float* pp = p.data();
            const float* gp = g.data();
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
    std::vector<Layer> layers_;
    Matrix x_, target_;
    std::vector<std::int64_t> labels_;
    double loss_ = 0;
};

}  // namespace

std::unique_ptr<Trainer> make_handwritten(const Config& c, const Init& init)
{
    return std::make_unique<Handwritten>(c, init);
}

}  // namespace bench
