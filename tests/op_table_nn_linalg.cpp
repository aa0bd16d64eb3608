// Op table entries: neural-network functions and linear algebra. Axes, transpose flags and
// labels travel in Sample::ints. References are plain loops on doubles: products as sums over
// the inner index, softmax and its log with the slice maximum subtracted, layer normalisation
// in two passes (the mean, then the biased variance).
#include "op_table.hpp"

#include <algorithm>

namespace optable {

namespace {

// op(a) op(b) for a [m, k] (or [k, m] when ta) and b [k, n] (or [n, k] when tb); a vector a is
// one row, a vector b one column, and their axes are left out of the result.
Tensor<double> product(const Tensor<double>& a, const Tensor<double>& b, bool ta, bool tb)
{
    const Shape as = shape_of(a), bs = shape_of(b);
    const std::size_t a0 = as.size() == 1 ? 1 : as[0], a1 = as.back();
    const std::size_t b0 = bs[0], b1 = bs.size() == 1 ? 1 : bs[1];
    const std::size_t m = ta ? a1 : a0, k = ta ? a0 : a1, n = tb ? b0 : b1;
    Shape ys;
    if (as.size() == 2) ys.push_back(m);
    if (bs.size() == 2) ys.push_back(n);
    Tensor<double> y = empty(ys);
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0;
            for (std::size_t p = 0; p < k; ++p) {
                const double aip = ta ? a.data()[p * a1 + i] : a.data()[i * a1 + p];
                const double bpj = tb ? b.data()[j * b1 + p] : b.data()[p * b1 + j];
                s += aip * bpj;
            }
            y.data()[i * n + j] = s;
        }
    return y;
}

// torch.matmul on batches, written out: a vector is promoted ([k] -> [1, k] on the left, [k, 1]
// on the right) and its axis dropped; the batch axes (all but the last two) broadcast from the
// right, an extent of 1 read for every index.
Tensor<double> batched_product(const Tensor<double>& a, const Tensor<double>& b, bool ta, bool tb)
{
    const Shape as = shape_of(a), bs = shape_of(b);
    const Shape am = as.size() == 1 ? Shape{1, as[0]} : Shape{as[as.size() - 2], as.back()};
    const Shape bm = bs.size() == 1 ? Shape{bs[0], 1} : Shape{bs[bs.size() - 2], bs.back()};
    const Shape ab(as.begin(), as.end() - std::ptrdiff_t(std::min<std::size_t>(as.size(), 2)));
    const Shape bb(bs.begin(), bs.end() - std::ptrdiff_t(std::min<std::size_t>(bs.size(), 2)));
    const std::size_t r = std::max(ab.size(), bb.size());
    Shape batch(r);
    for (std::size_t d = 0; d < r; ++d) {
        const std::size_t x = d + ab.size() >= r ? ab[d + ab.size() - r] : 1;
        const std::size_t y = d + bb.size() >= r ? bb[d + bb.size() - r] : 1;
        batch[d] = x == 1 ? y : x;
    }
    const std::size_t m = ta ? am[1] : am[0], k = ta ? am[0] : am[1], n = tb ? bm[0] : bm[1];
    Shape ys = batch;
    if (as.size() >= 2) ys.push_back(m);
    if (bs.size() >= 2) ys.push_back(n);
    Tensor<double> y = empty(ys);
    const std::size_t asize = am[0] * am[1], bsize = bm[0] * bm[1];
    for_each_index(batch, [&](std::size_t t, const std::vector<std::size_t>& index) {
        const double* A = a.data() + broadcast_offset(index, ab) * asize;
        const double* B = b.data() + broadcast_offset(index, bb) * bsize;
        for (std::size_t i = 0; i < m; ++i)
            for (std::size_t j = 0; j < n; ++j) {
                double s = 0;
                for (std::size_t p = 0; p < k; ++p)
                    s += (ta ? A[p * am[1] + i] : A[i * am[1] + p]) * (tb ? B[j * bm[1] + p] : B[p * bm[1] + j]);
                y.data()[(t * m + i) * n + j] = s;
            }
    });
    return y;
}

// f(slice) -> slice for every slice of x along `axis`, written back in place of the slice.
template <class F>
Tensor<double> map_slices(const Tensor<double>& x, std::ptrdiff_t axis_arg, F f)
{
    const Shape xs = shape_of(x);
    const Around a(xs, axis_of(axis_arg, xs.size()));
    Tensor<double> y = empty(xs);
    std::vector<double> slice(a.n);
    for (std::size_t o = 0; o < a.outer; ++o)
        for (std::size_t i = 0; i < a.inner; ++i) {
            for (std::size_t j = 0; j < a.n; ++j) slice[j] = x.data()[a.at(o, j, i)];
            const std::vector<double> out = f(slice);
            for (std::size_t j = 0; j < a.n; ++j) y.data()[a.at(o, j, i)] = out[j];
        }
    return y;
}

std::vector<double> softmax_of(const std::vector<double>& v)
{
    double m = -inf;
    for (const double x : v) m = std::max(m, x);
    double s = 0;
    for (const double x : v) s += std::exp(x - m);
    std::vector<double> y;
    for (const double x : v) y.push_back(std::exp(x - m) / s);
    return y;
}

std::vector<double> log_softmax_of(const std::vector<double>& v)
{
    const double lse = logsumexp_of(v);
    std::vector<double> y;
    for (const double x : v) y.push_back(x - lse);
    return y;
}

// dropout's mask: element i kept unless 7 i + 3 is a multiple of 4 (every fourth element,
// i = 3, 7, 11, ...), a fixed pattern of the shape alone.
bool kept(std::size_t i) { return (7 * i + 3) % 4 != 0; }
constexpr double dropout_p = 0.25;

// Softmax-like samples along ints[0]: several axes, a size-1 axis, batch 1, empty tensors,
// and value-only edges of large magnitude and -inf.
std::vector<Sample> softmax_samples(std::uint64_t seed)
{
    using adtest::randn;
    return {
        {"[2, 3] along axis -1", {randn({2, 3}, seed)}, {-1}},
        {"[2, 3] along axis 0", {randn({2, 3}, seed + 1)}, {0}},
        {"[2, 3, 2] along axis 1", {randn({2, 3, 2}, seed + 2)}, {1}},
        {"[2, 3, 2] along axis -3", {randn({2, 3, 2}, seed + 3)}, {-3}},
        {"[2, 3, 4] along the last axis (-1)", {randn({2, 3, 4}, seed + 7)}, {-1}},
        {"[2, 2, 3, 3] along the last axis (attention weights)", {randn({2, 2, 3, 3}, seed + 8)}, {-1}},
        {"[5] along axis 0", {randn({5}, seed + 4, 2.0)}, {0}},
        {"[1, 4] along axis 1 (batch 1)", {randn({1, 4}, seed + 5)}, {1}},
        // constant in x, yet NaN at a NaN (as PyTorch): the NaN test would take its outputs
        // as independent of x, so it is a value-only sample
        {"[3, 1] along axis 1 (of size 1)", {randn({3, 1}, seed + 6)}, {1}, {}, false},
        {"empty [0, 3] along axis -1", {empty({0, 3})}, {-1}},
        {"[2, 0] along the empty axis 1", {empty({2, 0})}, {1}},
        {"large magnitudes along axis 1",
         {tensor({3, 3}, {1e3, -1e3, 999.0, -1e3, -1001.0, -1e3, 1e300, 0.0, -1e300})}, {1}, {}, false},
        {"-inf beside finite values along axis 1", {tensor({2, 3}, {-inf, 0.0, 1.0, 2.0, -inf, -inf})}, {1}, {}, false},
    };
}

std::vector<Sample> softmax_refused()
{
    return {{"[2, 3] along axis 2", {adtest::randn({2, 3}, 1)}, {2}},
            {"[2, 3] along axis -3", {adtest::randn({2, 3}, 2)}, {-3}}};
}

// Integer arrays in Sample::ints as {rank, extents..., values...}: embedding's ids and
// cross_entropy's labels with their shape.
xt::xarray<std::int64_t> int_array(const Sample& s)
{
    const std::size_t rank = std::size_t(s.ints[0]);
    const Shape shape(s.ints.begin() + 1, s.ints.begin() + 1 + std::ptrdiff_t(rank));
    xt::xarray<std::int64_t> a = xt::xarray<std::int64_t>::from_shape(shape);
    std::copy(s.ints.begin() + 1 + std::ptrdiff_t(rank), s.ints.end(), a.data());
    return a;
}
std::vector<std::ptrdiff_t> ints(const Shape& shape, const std::vector<std::ptrdiff_t>& values)
{
    std::vector<std::ptrdiff_t> out{std::ptrdiff_t(shape.size())};
    out.insert(out.end(), shape.begin(), shape.end());
    out.insert(out.end(), values.begin(), values.end());
    return out;
}

// Mean over the rows of [rows, classes] (the logits' last axis the classes) of logsumexp - the
// labelled logit.
double mean_cross_entropy(const Tensor<double>& logits, const std::int64_t* labels)
{
    const std::size_t C = logits.shape().back(), B = logits.size() / C;
    double total = 0;
    for (std::size_t b = 0; b < B; ++b) {
        const std::vector<double> row(logits.data() + b * C, logits.data() + (b + 1) * C);
        total += logsumexp_of(row) - row[std::size_t(labels[b])];
    }
    return total / double(B);
}

}  // namespace

void add_nn_linalg_ops(std::vector<Entry>& table)
{
    using adtest::randn;

    // --- linear algebra ---
    {
        auto e = make("matmul", Kind::other, [](const auto& x, const Sample&) { return ad::matmul(x[0], x[1]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) { return product(in[0], in[1], false, false); };
        e.samples = [] {
            return std::vector<Sample>{
                {"[3, 4] x [4, 2]", {randn({3, 4}, 1), randn({4, 2}, 2)}},
                {"[1, 4] x [4, 1]", {randn({1, 4}, 3), randn({4, 1}, 4)}},
                {"[1, 3] x [3, 5] (one row)", {randn({1, 3}, 5), randn({3, 5}, 6)}},
                {"[5, 3] x [3, 1] (one column)", {randn({5, 3}, 7), randn({3, 1}, 8)}},
                {"[2, 1] x [1, 3] (outer product)", {randn({2, 1}, 9), randn({1, 3}, 10)}},
                {"[3, 4] x [4]", {randn({3, 4}, 11), randn({4}, 12)}},
                {"[4] x [4, 2]", {randn({4}, 13), randn({4, 2}, 14)}},
                {"[4] x [4]", {randn({4}, 15), randn({4}, 16)}},
                {"[0, 3] x [3, 2]: [0, 2]", {empty({0, 3}), randn({3, 2}, 17)}},
                {"[2, 0] x [0, 3]: zeros [2, 3]", {empty({2, 0}), empty({0, 3})}},
                {"[3, 2] x [2, 0]: [3, 0]", {randn({3, 2}, 18), empty({2, 0})}},
                {"[0] x [0]: zero", {empty({0}), empty({0})}},
                {"[0, 3] x [3]: [0]", {empty({0, 3}), randn({3}, 19)}},
                {"[2, 0] x [0]: zeros [2]", {empty({2, 0}), empty({0})}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[2, 3] x [4, 2]", {randn({2, 3}, 1), randn({4, 2}, 2)}},
                {"[3] x [4]", {randn({3}, 3), randn({4}, 4)}},
                {"[2, 3] x [2]", {randn({2, 3}, 5), randn({2}, 6)}},
                {"[3] x [2, 3]", {randn({3}, 7), randn({2, 3}, 8)}},
                {"scalar x [3]", {randn({}, 9), randn({3}, 10)}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: {transpose_a, transpose_b}
        auto e = make("matmul with transposes", Kind::other, [](const auto& x, const Sample& s) {
            return ad::matmul(x[0], x[1], ad::Transpose{s.ints[0] != 0, s.ints[1] != 0});
        });
        e.error_name = "matmul";
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return product(in[0], in[1], s.ints[0] != 0, s.ints[1] != 0);
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[4, 3]^T x [4, 2]", {randn({4, 3}, 21), randn({4, 2}, 22)}, {1, 0}},
                {"[3, 4] x [2, 4]^T", {randn({3, 4}, 23), randn({2, 4}, 24)}, {0, 1}},
                {"[4, 3]^T x [2, 4]^T", {randn({4, 3}, 25), randn({2, 4}, 26)}, {1, 1}},
                {"[3, 4] x [4, 2], neither", {randn({3, 4}, 27), randn({4, 2}, 28)}, {0, 0}},
                {"[4, 1]^T x [4, 5] (one row)", {randn({4, 1}, 29), randn({4, 5}, 30)}, {1, 0}},
                {"[5, 3] x [1, 3]^T (one column)", {randn({5, 3}, 31), randn({1, 3}, 32)}, {0, 1}},
                {"[3, 5]^T x [1, 3]^T (one column)", {randn({3, 5}, 33), randn({1, 3}, 34)}, {1, 1}},
                {"[3, 0]^T x [3, 2]: [0, 2]", {empty({3, 0}), randn({3, 2}, 35)}, {1, 0}},
                {"[0, 2]^T x [3, 0]^T: zeros [2, 3]", {empty({0, 2}), empty({3, 0})}, {1, 1}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[4, 3]^T x [3, 2]", {randn({4, 3}, 1), randn({3, 2}, 2)}, {1, 0}},
                {"[3, 4] x [4, 2]^T", {randn({3, 4}, 3), randn({4, 2}, 4)}, {0, 1}},
                {"[4]^T x [4, 2]: a vector transposed", {randn({4}, 5), randn({4, 2}, 6)}, {1, 0}},
                {"[3, 4] x [4]^T: a vector transposed", {randn({3, 4}, 7), randn({4}, 8)}, {0, 1}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: {transpose_a, transpose_b}
        auto e = make("batched matmul", Kind::other, [](const auto& x, const Sample& s) {
            return ad::matmul(x[0], x[1], ad::Transpose{s.ints[0] != 0, s.ints[1] != 0});
        });
        e.error_name = "matmul";
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return batched_product(in[0], in[1], s.ints[0] != 0, s.ints[1] != 0);
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[2, 3, 4] x [2, 4, 2]", {randn({2, 3, 4}, 201), randn({2, 4, 2}, 202)}, {0, 0}},
                {"[2, 2, 3, 2] x [2, 2, 2, 3] (heads)", {randn({2, 2, 3, 2}, 203), randn({2, 2, 2, 3}, 204)}, {0, 0}},
                {"[2, 2, 3, 2] x [2, 2, 3, 2]^T (q k^T)", {randn({2, 2, 3, 2}, 205), randn({2, 2, 3, 2}, 206)}, {0, 1}},
                {"[2, 3, 4] x [4, 2] (one matrix for the batch: folded)", {randn({2, 3, 4}, 207), randn({4, 2}, 208)}, {0, 0}},
                {"[2, 3, 4] x [2, 4]^T (folded)", {randn({2, 3, 4}, 209), randn({2, 4}, 210)}, {0, 1}},
                {"[2, 4, 3]^T x [4, 2] (not folded)", {randn({2, 4, 3}, 211), randn({4, 2}, 212)}, {1, 0}},
                {"[3, 4] x [2, 4, 2] (one matrix on the left)", {randn({3, 4}, 213), randn({2, 4, 2}, 214)}, {0, 0}},
                {"[1, 3, 2] x [2, 2, 3] (batch 1 broadcast)", {randn({1, 3, 2}, 215), randn({2, 2, 3}, 216)}, {0, 0}},
                {"[2, 1, 3, 2] x [3, 2, 2] (both broadcast)", {randn({2, 1, 3, 2}, 217), randn({3, 2, 2}, 218)}, {0, 0}},
                {"[2, 1, 2, 3]^T x [1, 2, 2, 2]^T", {randn({2, 1, 2, 3}, 219), randn({1, 2, 2, 2}, 220)}, {1, 1}},
                {"[2, 3, 4] x [4] (a vector on the right)", {randn({2, 3, 4}, 221), randn({4}, 222)}, {0, 0}},
                {"[4] x [2, 4, 3] (a vector on the left)", {randn({4}, 223), randn({2, 4, 3}, 224)}, {0, 0}},
                {"[3] x [2, 2, 3]^T", {randn({3}, 225), randn({2, 2, 3}, 226)}, {0, 1}},
                {"[4, 3]^T x [4] (rank 2, a vector beside a transpose)", {randn({4, 3}, 227), randn({4}, 228)}, {1, 0}},
                {"[2, 1, 4] x [2, 4, 1] (one row, one column)", {randn({2, 1, 4}, 229), randn({2, 4, 1}, 230)}, {0, 0}},
                {"[0, 3, 4] x [4, 2]: [0, 3, 2]", {empty({0, 3, 4}), randn({4, 2}, 231)}, {0, 0}},
                {"[2, 3, 0] x [2, 0, 2]: zeros", {empty({2, 3, 0}), empty({2, 0, 2})}, {0, 0}},
                {"[1, 3, 2] x [0, 2, 2]: [0, 3, 2]", {randn({1, 3, 2}, 232), empty({0, 2, 2})}, {0, 0}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[2, 3, 4] x [2, 5, 2]: inner 4 and 5", {randn({2, 3, 4}, 1), randn({2, 5, 2}, 2)}, {0, 0}},
                {"[2, 3, 4] x [3, 4, 2]: batch 2 and 3", {randn({2, 3, 4}, 3), randn({3, 4, 2}, 4)}, {0, 0}},
                {"[2, 2, 3, 4] x [3, 4, 2]: batch [2, 2] and [3]", {randn({2, 2, 3, 4}, 5), randn({3, 4, 2}, 6)}, {0, 0}},
                {"[2, 3, 4]^T x [4, 2]", {randn({2, 3, 4}, 7), randn({4, 2}, 8)}, {1, 0}},
                {"[2, 3, 4] x [4]^T: a vector transposed", {randn({2, 3, 4}, 9), randn({4}, 10)}, {0, 1}},
                {"scalar x [2, 3, 4]", {randn({}, 11), randn({2, 3, 4}, 12)}, {0, 0}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("affine", Kind::other, [](const auto& x, const Sample&) { return ad::affine(x[0], x[1], x[2]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const Tensor<double>&x = in[0], &W = in[1], &b = in[2];
            // every leading index of x [..., in] a row
            const std::size_t out = W.shape()[0], n = W.shape()[1];
            Shape ys = shape_of(x);
            ys.back() = out;
            std::size_t rows = 1;
            for (std::size_t d = 0; d + 1 < x.dimension(); ++d) rows *= x.shape()[d];
            Tensor<double> y = empty(ys);
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t o = 0; o < out; ++o) {
                    double s = b.data()[o];
                    for (std::size_t i = 0; i < n; ++i) s += x.data()[r * n + i] * W.data()[o * n + i];
                    y.data()[r * out + o] = s;
                }
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"x [3, 4], W [2, 4], b [2]", {randn({3, 4}, 41), randn({2, 4}, 42), randn({2}, 43)}},
                {"x [1, 4], W [3, 4], b [3] (batch 1)", {randn({1, 4}, 44), randn({3, 4}, 45), randn({3}, 46)}},
                {"x [4], W [3, 4], b [3]", {randn({4}, 47), randn({3, 4}, 48), randn({3}, 49)}},
                {"x [5, 1], W [3, 1], b [3]", {randn({5, 1}, 50), randn({3, 1}, 51), randn({3}, 52)}},
                {"x [2, 3], W [1, 3], b [1] (one output)", {randn({2, 3}, 53), randn({1, 3}, 54), randn({1}, 55)}},
                {"x [0, 4], W [2, 4], b [2]: [0, 2]", {empty({0, 4}), randn({2, 4}, 56), randn({2}, 57)}},
                {"x [3, 0], W [2, 0], b [2]: b in every row", {empty({3, 0}), empty({2, 0}), randn({2}, 58)}},
                {"x [2, 3, 4], W [2, 4], b [2]: [batch, time, in]", {randn({2, 3, 4}, 59), randn({2, 4}, 60), randn({2}, 61)}},
                {"x [2, 1, 2, 3], W [2, 3], b [2]: rank 4", {randn({2, 1, 2, 3}, 62), randn({2, 3}, 63), randn({2}, 64)}},
                {"x [2, 0, 4], W [2, 4], b [2]: [2, 0, 2]", {empty({2, 0, 4}), randn({2, 4}, 65), randn({2}, 66)}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"x [3, 4], W [2, 5], b [2]", {randn({3, 4}, 1), randn({2, 5}, 2), randn({2}, 3)}},
                {"x [3, 4], W [2, 4], b [3]", {randn({3, 4}, 4), randn({2, 4}, 5), randn({3}, 6)}},
                {"x [2, 2, 4], W [2, 5], b [2]", {randn({2, 2, 4}, 7), randn({2, 5}, 8), randn({2}, 9)}},
                {"x scalar, W [2, 1], b [2]", {randn({}, 16), randn({2, 1}, 17), randn({2}, 18)}},
                {"x [3, 4], W [4], b [1]", {randn({3, 4}, 10), randn({4}, 11), randn({1}, 12)}},
                {"x [3, 4], W [2, 4], b [1, 2]", {randn({3, 4}, 13), randn({2, 4}, 14), randn({1, 2}, 15)}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("transpose", Kind::other, [](const auto& x, const Sample&) { return ad::transpose(x[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const Shape xs = shape_of(in[0]);
            const Shape ys(xs.rbegin(), xs.rend());
            Tensor<double> y = empty(ys);
            std::vector<std::size_t> index(xs.size(), 0);  // of x, row-major
            for (std::size_t k = 0; k < in[0].size(); ++k) {
                std::size_t at = 0;  // in y, the index reversed
                for (std::size_t d = xs.size(); d-- > 0;) at = at * ys[xs.size() - 1 - d] + index[d];
                y.data()[at] = in[0].data()[k];
                for (std::size_t d = xs.size(); d-- > 0;) {
                    if (++index[d] < xs[d]) break;
                    index[d] = 0;
                }
            }
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[2, 3]", {randn({2, 3}, 61)}},
                {"[2, 3, 4]", {randn({2, 3, 4}, 62)}},
                {"[1, 4]", {randn({1, 4}, 63)}},
                {"[5]", {randn({5}, 64)}},
                {"scalar", {randn({}, 65)}},
                {"empty [0, 3]", {empty({0, 3})}},
            };
        };
        table.push_back(e);
    }

    // --- neural-network functions ---
    {
        auto e = make("softmax", Kind::other, [](const auto& x, const Sample& s) { return ad::softmax(x[0], s.ints[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) { return map_slices(in[0], s.ints[0], softmax_of); };
        e.samples = [] { return softmax_samples(70); };
        e.refused = softmax_refused;
        table.push_back(e);
    }
    {
        auto e = make("log_softmax", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::log_softmax(x[0], s.ints[0]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return map_slices(in[0], s.ints[0], log_softmax_of);
        };
        e.samples = [] { return softmax_samples(80); };
        e.refused = softmax_refused;
        table.push_back(e);
    }
    {
        // ints: one label per row of the logits
        auto e = make("cross_entropy", Kind::other, [](const auto& x, const Sample& s) {
            return ad::cross_entropy(x[0], std::vector<std::int64_t>(s.ints.begin(), s.ints.end()));
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const std::vector<std::int64_t> labels(s.ints.begin(), s.ints.end());
            return Tensor<double>(mean_cross_entropy(in[0], labels.data()));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[3, 4], labels 0, 3, 1", {randn({3, 4}, 91)}, {0, 3, 1}},
                {"[1, 5], label 2 (batch 1)", {randn({1, 5}, 92)}, {2}},
                {"[4, 2], labels 1, 0, 1, 1", {randn({4, 2}, 93, 2.0)}, {1, 0, 1, 1}},
                {"[2, 3], the same label twice", {randn({2, 3}, 94)}, {2, 2}},
                {"[2, 3, 4], 6 labels in row-major order", {randn({2, 3, 4}, 95)}, {0, 3, 1, 2, 2, 0}},
                {"large logits", {tensor({2, 3}, {1e3, -1e3, 0.0, 1e4, 1e4, 1e4})}, {1, 0}, {}, false},
                {"-inf logits away from the labels", {tensor({2, 3}, {-inf, 0.0, 1.0, 2.0, -inf, -inf})}, {2, 0}, {}, false},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[3, 4] with 2 labels", {randn({3, 4}, 1)}, {0, 1}},
                {"[3, 4] with label 4", {randn({3, 4}, 2)}, {0, 4, 1}},
                {"[3, 4] with label -1", {randn({3, 4}, 3)}, {0, -1, 1}},
                {"logits [4]", {randn({4}, 4)}, {0}},
                {"logits [2, 3, 2] with 2 labels (6 positions)", {randn({2, 3, 2}, 5)}, {0, 1}},
            };
        };
        e.nan_inputs = {0};  // the logits; the labels are integers
        table.push_back(e);
    }
    {
        auto e = make("mse", Kind::other, [](const auto& x, const Sample&) { return ad::mse(x[0], x[1]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            double total = 0;
            for (std::size_t i = 0; i < in[0].size(); ++i) {
                const double d = in[0].data()[i] - in[1].data()[i];
                total += d * d;
            }
            return Tensor<double>(total / double(in[0].size()));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[5]", {randn({5}, 101), randn({5}, 102)}},
                {"[2, 3]", {randn({2, 3}, 103), randn({2, 3}, 104)}},
                {"[2, 1, 3]", {randn({2, 1, 3}, 105), randn({2, 1, 3}, 106)}},
                {"scalar", {randn({}, 107), randn({}, 108)}},
                {"[1, 1]", {randn({1, 1}, 109), randn({1, 1}, 110)}},
                {"[300], more than one block of 256", {randn({300}, 111), randn({300}, 112)}},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[2, 3] and [3]", {randn({2, 3}, 1), randn({3}, 2)}},
                {"[2, 3] and [3, 2]", {randn({2, 3}, 3), randn({3, 2}, 4)}},
            };
        };
        table.push_back(e);
    }
    {
        // The mask is kept(i) over x's elements and p = 0.25; a refused sample may give another p
        // in reals, or another mask shape in ints.
        auto e = make("dropout", Kind::other, [](const auto& x, const Sample& s) {
            using T = typename std::decay_t<decltype(x[0].value())>::value_type;
            // the shape from the sample, not the Var: a stale Var must reach dropout itself
            const Shape shape = s.ints.empty() ? shape_of(s.inputs[0]) : Shape(s.ints.begin(), s.ints.end());
            Tensor<T> mask = Tensor<T>::from_shape(shape);
            for (std::size_t i = 0; i < mask.size(); ++i) mask.data()[i] = kept(i) ? T(1) : T(0);
            return ad::dropout(x[0], mask, T(s.reals.empty() ? dropout_p : s.reals[0]));
        });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            Tensor<double> y = empty(shape_of(in[0]));
            for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = kept(i) ? in[0].data()[i] / (1 - dropout_p) : 0.0;
            return y;
        };
        e.samples = [] {
            // Sizes whose first, middle and last elements are kept: the NaN test puts a NaN
            // there and expects it to reach the output (a dropped NaN gives 0 * NaN = NaN, as in
            // PyTorch, at an output that no finite value there would change).
            return std::vector<Sample>{
                {"scalar", {randn({}, 121)}},
                {"[5]", {randn({5}, 122)}},
                {"[2, 5]", {randn({2, 5}, 123)}},
                {"[3, 3]", {randn({3, 3}, 124)}},
                {"[2, 3, 3]", {randn({2, 3, 3}, 125)}},
                {"empty [0, 3]", {empty({0, 3})}},
                {"large magnitudes", {Tensor<double>{1e300, -1e300, inf, 2.0, -inf}}, {}, {}, false},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[2, 3] with p = 1", {randn({2, 3}, 1)}, {}, {1.0}},
                {"[2, 3] with p = -0.25", {randn({2, 3}, 2)}, {}, {-0.25}},
                {"[2, 3] with a mask [3]", {randn({2, 3}, 3)}, {3}},
            };
        };
        table.push_back(e);
    }
    {
        auto e = make("layer_norm", Kind::other,
                      [](const auto& x, const Sample&) { return ad::layer_norm(x[0], x[1], x[2]); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample&) {
            const Tensor<double>&x = in[0], &gamma = in[1], &beta = in[2];
            const std::size_t n = x.shape().back(), rows = x.size() / n;
            Tensor<double> y = empty(shape_of(x));
            for (std::size_t r = 0; r < rows; ++r) {
                const double* row = x.data() + r * n;
                double mu = 0, var = 0;
                for (std::size_t j = 0; j < n; ++j) mu += row[j];
                mu /= double(n);
                for (std::size_t j = 0; j < n; ++j) var += (row[j] - mu) * (row[j] - mu);
                var /= double(n);
                const double sd = std::sqrt(var + 1e-5);
                for (std::size_t j = 0; j < n; ++j) y.data()[r * n + j] = (row[j] - mu) / sd * gamma.data()[j] + beta.data()[j];
            }
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"x [3, 4]", {randn({3, 4}, 131), randn({4}, 132), randn({4}, 133)}},
                {"x [1, 5] (batch 1)", {randn({1, 5}, 134), randn({5}, 135), randn({5}, 136)}},
                {"x [4], one row", {randn({4}, 137), randn({4}, 138), randn({4}, 139)}},
                {"x [2, 3, 4]", {randn({2, 3, 4}, 140), randn({4}, 141), randn({4}, 142)}},
                {"x [2, 1, 3, 5] (rank 4)", {randn({2, 1, 3, 5}, 150), randn({5}, 151), randn({5}, 152)}},
                {"empty x [2, 0, 3]", {empty({2, 0, 3}), randn({3}, 153), randn({3}, 154)}},
                {"x [2, 9], more than a SIMD block", {randn({2, 9}, 143, 2.0), randn({9}, 144), randn({9}, 145)}},
                {"empty x [0, 3]", {empty({0, 3}), randn({3}, 146), randn({3}, 147)}},
                {"a constant row: beta", {Tensor<double>{2.0, 2.0, 2.0}, randn({3}, 148), randn({3}, 149)}, {}, {}, false},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"x [2, 4], gamma [3]", {randn({2, 4}, 1), randn({3}, 2), randn({4}, 3)}},
                {"x [2, 4], beta [5]", {randn({2, 4}, 4), randn({4}, 5), randn({5}, 6)}},
                {"x [2, 4], gamma [1, 4]", {randn({2, 4}, 7), randn({1, 4}, 8), randn({4}, 9)}},
                {"x a scalar", {randn({}, 10), randn({1}, 11), randn({1}, 12)}},
            };
        };
        table.push_back(e);
    }
    {
        // ints: the labels as {rank, shape..., labels...}, the shape the logits' without the last axis
        auto e = make("cross_entropy over positions", Kind::other,
                      [](const auto& x, const Sample& s) { return ad::cross_entropy(x[0], int_array(s)); });
        e.error_name = "cross_entropy";
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            return Tensor<double>(mean_cross_entropy(in[0], int_array(s).data()));
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[2, 3, 4], labels [2, 3]", {randn({2, 3, 4}, 301)}, ints({2, 3}, {0, 3, 1, 2, 2, 0})},
                {"[1, 4, 3], labels [1, 4], one class throughout", {randn({1, 4, 3}, 302)}, ints({1, 4}, {1, 1, 1, 1})},
                {"[2, 1, 2, 5], labels [2, 1, 2]", {randn({2, 1, 2, 5}, 303)}, ints({2, 1, 2}, {4, 0, 2, 3})},
                {"[3, 4], labels [3] (the rank-2 case)", {randn({3, 4}, 304)}, ints({3}, {0, 3, 1})},
                {"[5], a 0-d label", {randn({5}, 305)}, ints({}, {2})},
                {"large logits [1, 2, 3]", {tensor({1, 2, 3}, {1e3, -1e3, 0.0, 1e4, 1e4, 1e4})}, ints({1, 2}, {1, 0}), {}, false},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[2, 3, 4] with labels [3, 2]", {randn({2, 3, 4}, 1)}, ints({3, 2}, {0, 0, 0, 0, 0, 0})},
                {"[2, 3, 4] with labels [6]", {randn({2, 3, 4}, 2)}, ints({6}, {0, 0, 0, 0, 0, 0})},
                {"[2, 3, 4] with labels [2, 3, 4]", {randn({2, 3, 4}, 3)}, ints({2, 3, 4}, std::vector<std::ptrdiff_t>(24, 0))},
                {"[2, 3, 4] with label 4 at [1, 0]", {randn({2, 3, 4}, 4)}, ints({2, 3}, {0, 1, 2, 4, 0, 0})},
                {"[2, 3, 4] with label -1", {randn({2, 3, 4}, 5)}, ints({2, 3}, {0, 1, 2, -1, 0, 0})},
                {"empty [0, 3, 4] with labels [0, 3]", {empty({0, 3, 4})}, ints({0, 3}, {})},
                {"a scalar with labels []", {randn({}, 6)}, ints({}, {0})},
            };
        };
        e.nan_inputs = {0};
        table.push_back(e);
    }
    {
        // ints: the ids as {rank, shape..., ids...}
        auto e = make("embedding", Kind::other, [](const auto& x, const Sample& s) { return ad::embedding(x[0], int_array(s)); });
        e.reference = [](const std::vector<Tensor<double>>& in, const Sample& s) {
            const auto ids = int_array(s);
            const std::size_t D = in[0].shape()[1];
            Shape ys(ids.shape().begin(), ids.shape().end());
            ys.push_back(D);
            Tensor<double> y = empty(ys);
            for (std::size_t i = 0; i < ids.size(); ++i)
                for (std::size_t d = 0; d < D; ++d) y.data()[i * D + d] = in[0].data()[std::size_t(ids.data()[i]) * D + d];
            return y;
        };
        e.samples = [] {
            return std::vector<Sample>{
                {"[5, 3] by ids [4]: 0, 4, 2, 0 (first, last, repeated)", {randn({5, 3}, 311)}, ints({4}, {0, 4, 2, 0})},
                {"[5, 3] by ids [2, 3]", {randn({5, 3}, 312)}, ints({2, 3}, {1, 1, 4, 0, 3, 1})},
                {"[4, 2] by ids [2, 1, 2]", {randn({4, 2}, 313)}, ints({2, 1, 2}, {3, 2, 3, 3})},
                {"[5, 3] by a 0-d id: [3]", {randn({5, 3}, 314)}, ints({}, {4})},
                {"[1, 4] by ids [3]: the only row thrice", {randn({1, 4}, 315)}, ints({3}, {0, 0, 0})},
                {"[5, 3] by empty ids [0]", {randn({5, 3}, 316)}, ints({0}, {}), {}, false},
                {"[5, 3] by empty ids [2, 0]", {randn({5, 3}, 317)}, ints({2, 0}, {}), {}, false},
                {"[3, 0] by ids [2]: [2, 0]", {empty({3, 0})}, ints({2}, {2, 0})},
            };
        };
        e.refused = [] {
            return std::vector<Sample>{
                {"[5, 3] by id 5", {randn({5, 3}, 1)}, ints({3}, {0, 5, 1})},
                {"[5, 3] by id -1 at [1, 0]", {randn({5, 3}, 2)}, ints({2, 2}, {0, 1, -1, 2})},
                {"an empty table [0, 3] by id 0", {empty({0, 3})}, ints({1}, {0})},
                {"a table [5] of rank 1", {randn({5}, 3)}, ints({1}, {0})},
                {"a table [2, 3, 4] of rank 3", {randn({2, 3, 4}, 4)}, ints({1}, {0})},
            };
        };
        table.push_back(e);
    }
}

}  // namespace optable
