// How many threads the library's work may use, as torch.set_num_threads / get_num_threads.
//
// Built with AD_OPENMP (the default), OpenBLAS's GEMMs and the engine's own large loops (the
// elementwise ops and VJPs written as loops, softmax and layer-norm rows, bias sums, im2col and
// col2im, pooling, optimiser updates; autodiff/kernels/parallel.hpp) run on one pool: libgomp's
// threads. OMP_NUM_THREADS sets the
// starting value (OpenBLAS's OpenMP build follows it and ignores OPENBLAS_NUM_THREADS). Built
// with AD_OPENMP=OFF, n sets OpenBLAS's own pool and everything else runs on the calling thread.
// The setting belongs to the calling thread, as OpenMP's does. A tape used on several threads at
// once wants 1 here, so the threads do not oversubscribe the cores.
#pragma once

namespace ad {

// n >= 1; anything else is an ad::Error.
void set_num_threads(int n);
int get_num_threads();

}  // namespace ad
