#include "nn/loss.hpp"

#include <cmath>
#include <sstream>

namespace ad::nn {

namespace {

template <class T>
void check_same(const char* fn, const Var<T>& a, const Var<T>& b, const char* a_name, const char* b_name)
{
    if (a.shape() != b.shape())
        throw Error(std::string(fn) + ": " + a_name + " of shape " + shape_str(a.shape()) + " and " + b_name +
                    " of shape " + shape_str(b.shape()) + " must have the same shape");
}

template <class T>
Var<T> reduce(const Var<T>& per_element, Reduction r)
{
    return r == Reduction::mean ? mean(per_element) : sum(per_element);
}

}  // namespace

template <class T>
Var<T> mse_loss(const Var<T>& pred, const Var<T>& target, Reduction r)
{
    check_same("mse_loss", pred, target, "prediction", "target");
    if (r == Reduction::mean) return mse(pred, target);
    return sum(square(pred - target));
}

template <class T>
Var<T> mse_loss(const Var<T>& pred, const Tensor<T>& target, Reduction r)
{
    return mse_loss(pred, pred.tape().constant(target), r);
}

template <class T>
Var<T> half_mse(const Var<T>& pred, const Var<T>& target)
{
    check_same("half_mse", pred, target, "prediction", "target");
    if (pred.dimension() == 0 || pred.shape()[0] == 0)
        throw Error("half_mse: prediction of shape " + shape_str(pred.shape()) +
                    " has no examples; expected [n, ...] with n >= 1");
    const T n = T(pred.shape()[0]);
    return sum(square(pred - target)) * (T(1) / (T(2) * n));
}

template <class T>
Var<T> half_mse(const Var<T>& pred, const Tensor<T>& target)
{
    return half_mse(pred, pred.tape().constant(target));
}

template <class T>
Var<T> cross_entropy_loss(const Var<T>& logits, const std::vector<std::int64_t>& labels, Reduction r)
{
    const Var<T> m = cross_entropy(logits, labels);  // the batch mean; validates shapes and labels
    if (r == Reduction::mean) return m;
    return m * T(logits.shape()[0]);
}

template <class T>
std::vector<std::int64_t> labels_from(const Tensor<T>& labels)
{
    const auto& s = labels.shape();
    if (!(s.size() == 1 || (s.size() == 2 && s[1] == 1)))
        throw Error("labels_from: labels of shape " + shape_str(s) + "; expected [n] or [n, 1]");
    std::vector<std::int64_t> out(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const T v = labels.flat(i);
        // 2^53 bounds every integer a double holds exactly, and is far past any class count.
        if (!(v >= 0) || v != std::floor(v) || v > T(9007199254740992.0)) {
            std::ostringstream msg;
            msg << "labels_from: label " << i << " is " << v
                << "; expected a non-negative whole number (a class index)";
            throw Error(msg.str());
        }
        out[i] = static_cast<std::int64_t>(v);
    }
    return out;
}

template <class T>
Var<T> soft_cross_entropy_loss(const Var<T>& logits, const Var<T>& targets, Reduction r)
{
    if (logits.dimension() != 2 || logits.shape()[0] == 0 || logits.shape()[1] == 0)
        throw Error("soft_cross_entropy_loss: logits must be a non-empty [batch, classes], got shape " +
                    shape_str(logits.shape()));
    check_same("soft_cross_entropy_loss", logits, targets, "logits", "targets");
    const Var<T> per_example = -sum(targets * log_softmax(logits, -1), -1);
    return reduce(per_example, r);
}

template <class T>
Var<T> soft_cross_entropy_loss(const Var<T>& logits, const Tensor<T>& targets, Reduction r)
{
    return soft_cross_entropy_loss(logits, logits.tape().constant(targets), r);
}

// softplus(x) - x y rather than the textbook max(x, 0) - x y + log(1 + e^-|x|): the same value,
// and ad::softplus evaluates it stably, but its gradient sigmoid(x) - y holds at x = 0 too,
// where relu'(0) = abs'(0) = 0 would give -y instead of 1/2 - y.
template <class T>
Var<T> bce_with_logits_loss(const Var<T>& logits, const Var<T>& targets, Reduction r)
{
    check_same("bce_with_logits_loss", logits, targets, "logits", "targets");
    if (logits.size() == 0) throw Error("bce_with_logits_loss: logits of shape " + shape_str(logits.shape()) + " are empty");
    return reduce(softplus(logits) - logits * targets, r);
}

template <class T>
Var<T> bce_with_logits_loss(const Var<T>& logits, const Tensor<T>& targets, Reduction r)
{
    return bce_with_logits_loss(logits, logits.tape().constant(targets), r);
}

#define AD_NN_LOSS(T)                                                                       \
    template Var<T> mse_loss(const Var<T>&, const Var<T>&, Reduction);                      \
    template Var<T> mse_loss(const Var<T>&, const Tensor<T>&, Reduction);                   \
    template Var<T> half_mse(const Var<T>&, const Var<T>&);                                 \
    template Var<T> half_mse(const Var<T>&, const Tensor<T>&);                              \
    template Var<T> cross_entropy_loss(const Var<T>&, const std::vector<std::int64_t>&, Reduction); \
    template std::vector<std::int64_t> labels_from(const Tensor<T>&);                        \
    template Var<T> soft_cross_entropy_loss(const Var<T>&, const Var<T>&, Reduction);       \
    template Var<T> soft_cross_entropy_loss(const Var<T>&, const Tensor<T>&, Reduction);    \
    template Var<T> bce_with_logits_loss(const Var<T>&, const Var<T>&, Reduction);          \
    template Var<T> bce_with_logits_loss(const Var<T>&, const Tensor<T>&, Reduction);
AD_NN_LOSS(float)
AD_NN_LOSS(double)

}  // namespace ad::nn
