// Op table entries: Convolutions, pooling, batch norm, decompositions and recomputation.
#include "op_table.hpp"

namespace optable {

void add_conv_decomp_ops(std::vector<Entry>& table)
{
    (void)table;
}

}  // namespace optable
