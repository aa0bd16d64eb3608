// The table itself and the sample helpers its entries share.
#include "op_table.hpp"

#include <stdexcept>

namespace optable {

const std::vector<Entry>& table()
{
    static const std::vector<Entry> t = [] {
        std::vector<Entry> all;
        add_elementwise_ops(all);
        add_reduce_shape_ops(all);
        add_nn_linalg_ops(all);
        add_conv_decomp_ops(all);
        return all;
    }();
    return t;
}

const Entry& entry(const std::string& name)
{
    for (const auto& e : table())
        if (e.name == name) return e;
    throw std::invalid_argument("op table: no entry named " + name);
}

namespace {
std::string shape_text(const Shape& s) { return ad::shape_str(s); }
}  // namespace

double max_of(const std::vector<double>& v)
{
    double m = -inf;
    for (const double x : v) {
        if (std::isnan(x)) return x;
        m = std::max(m, x);
    }
    return m;
}

double logsumexp_of(const std::vector<double>& v)
{
    const double m = max_of(v);
    if (std::isnan(m) || std::isinf(m)) return m;
    double s = 0;
    for (const double x : v) s += std::exp(x - m);
    return m + std::log(s);
}

std::vector<Sample> elementwise_samples(double lo, double hi, std::uint64_t seed)
{
    std::vector<Sample> out;
    for (const auto& s : adtest::elementwise_shapes())
        out.push_back({"shape " + shape_text(s), {adtest::uniform(s, lo, hi, seed++)}});
    out.push_back({"empty [0, 3]", {Tensor<double>::from_shape({0, 3})}});
    return out;
}

std::vector<Sample> broadcasting_samples(double lo, double hi, std::uint64_t seed)
{
    std::vector<Sample> out;
    for (const auto& [a, b] : adtest::broadcast_pairs())
        out.push_back({"broadcast " + shape_text(a) + " with " + shape_text(b),
                       {adtest::uniform(a, lo, hi, seed), adtest::uniform(b, lo, hi, seed + 1)}});
    out.push_back({"empty [0, 3] with [3]",
                   {Tensor<double>::from_shape({0, 3}), adtest::uniform({3}, lo, hi, seed + 2)}});
    return out;
}

std::vector<Sample> non_broadcasting_pairs()
{
    return {{"[2, 3] with [4]", {adtest::randn({2, 3}, 1), adtest::randn({4}, 2)}},
            {"[3, 2] with [2, 3]", {adtest::randn({3, 2}, 3), adtest::randn({2, 3}, 4)}}};
}

}  // namespace optable
