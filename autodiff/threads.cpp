#include "autodiff/threads.hpp"

#include "autodiff/tensor.hpp"

#include <string>

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace ad {

void set_num_threads(int n)
{
    if (n < 1) throw Error("set_num_threads: got " + std::to_string(n) + "; expected a number of threads >= 1");
    openblas_set_num_threads(n);
}

int get_num_threads() { return openblas_get_num_threads(); }

}  // namespace ad
