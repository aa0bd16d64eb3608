// Which kernels float32 convolutions run on, as torch.backends.mkldnn.enabled.
//
// Built with AD_DNNL (the default), conv2d in float32 and its VJP run on oneDNN (Debian's
// libdnnl), whose direct convolutions are 2-3x faster than unfolding the input and multiplying
// (im2col + GEMM) on small channel counts; its threads are the same OpenMP pool as OpenBLAS's
// (threads.hpp). float64, the higher-order ops (conv2d_input_grad and conv2d_weight_grad as tape
// ops) and any geometry oneDNN does not take run on im2col + GEMM, which is also the reference
// the tests compare oneDNN against. Results of the two differ in the last bits (sums in another
// order).
#pragma once

namespace ad {

// Whether this build has oneDNN.
bool dnnl_available();
// Whether conv2d uses it (true by default when available). The setting is the process's; an op
// keeps the kernels it was recorded with for its VJP.
bool dnnl_enabled();
void set_dnnl_enabled(bool enabled);

}  // namespace ad
