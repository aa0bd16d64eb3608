// libFuzzer target: the .npz archive reader (the zip container through libzip: directory,
// deflate, CRC; then the declared sizes and each .npy).
// Any input must give a result or an ad::Error.
#include "fuzz_inputs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::vector<std::uint8_t> bytes(data, data + size);
    try {
        ad::fuzz::feed_npz(bytes);
    } catch (const ad::Error&) {
    }
    return 0;
}
