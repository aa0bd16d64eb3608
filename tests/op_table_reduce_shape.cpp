// Op table entries: Reductions and shape ops.
#include "op_table.hpp"

namespace optable {

void add_reduce_shape_ops(std::vector<Entry>& table)
{
    (void)table;
}

}  // namespace optable
