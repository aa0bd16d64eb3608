// libFuzzer target: the IDX decoder (plain and gzipped).
// Any input must give a result or an ad::Error.
#include "fuzz_inputs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::vector<std::uint8_t> bytes(data, data + size);
    try {
        ad::fuzz::feed_idx(bytes);
    } catch (const ad::Error&) {
    }
    return 0;
}
