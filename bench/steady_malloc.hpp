// Fixed glibc heap thresholds for the benches that time a peer.
//
// glibc gives the top of its heap back to the system once more than M_TRIM_THRESHOLD is free
// there, and moves that threshold (and M_MMAP_THRESHOLD) with the sizes freed. A library that
// allocates its tensors every step, as libtorch does, then pays page faults on every step, by
// an amount that depends on what else the process keeps on the heap: libtorch's CNN step took
// 6.9 ms beside this engine's im2col buffers and 26 ms beside its oneDNN buffers, and 5-8 ms
// with the thresholds fixed, either way. Fixed thresholds time every library at its best.
#pragma once

#include <malloc.h>

namespace bench {

inline void steady_malloc()
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest: blocks below it come from the heap
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace bench
