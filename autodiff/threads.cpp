#include "autodiff/threads.hpp"

#include "autodiff/tensor.hpp"

#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace ad {

void set_num_threads(int n)
{
    if (n < 1) throw Error("set_num_threads: got " + std::to_string(n) + "; expected a number of threads >= 1");
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int get_num_threads()
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return openblas_get_num_threads();
#endif
}

}  // namespace ad
