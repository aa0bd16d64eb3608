// How many threads the library's work may use, as torch.set_num_threads / get_num_threads.
//
// Today that is the matrix products: OpenBLAS runs each on a pool of its own of up to n threads.
// The engine's other kernels (elementwise ops, reductions, row kernels, optimiser updates) run
// on the calling thread. OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) sets the starting value; a
// tape used on several threads at once wants 1 here, so the threads do not oversubscribe the
// cores.
#pragma once

namespace ad {

// n >= 1; anything else is an ad::Error.
void set_num_threads(int n);
int get_num_threads();

}  // namespace ad
