// Op table entries: Neural-network functions and linear algebra.
#include "op_table.hpp"

namespace optable {

void add_nn_linalg_ops(std::vector<Entry>& table)
{
    (void)table;
}

}  // namespace optable
