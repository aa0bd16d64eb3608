// Op table entries: elementwise ops, unary and broadcasting binary.
#include "op_table.hpp"

namespace optable {

void add_elementwise_ops(std::vector<Entry>& table)
{
    {
        auto e = make("tanh", Kind::elementwise, [](const auto& x, const Sample&) { return ad::tanh(x[0]); });
        e.reference = unary_reference([](double x) { return std::tanh(x); });
        e.samples = [] { return elementwise_samples(-3, 3, 10); };
        table.push_back(e);
    }
    {
        auto e = make("add", Kind::broadcasting, [](const auto& x, const Sample&) { return x[0] + x[1]; });
        e.reference = binary_reference([](double a, double b) { return a + b; });
        e.samples = [] { return broadcasting_samples(-3, 3, 20); };
        e.refused = non_broadcasting_pairs;
        table.push_back(e);
    }
}

}  // namespace optable
