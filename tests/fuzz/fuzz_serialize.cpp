// libFuzzer target: loading a saved model into a small model and its optimiser
// (ad::fuzz::SavedModel). The loader takes a path, so each input is written to a file first.
// Any input must load or raise an ad::Error.
#include "fuzz_inputs.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace {

struct Scratch {
    std::string dir;
    std::string file;
    Scratch()
    {
        namespace fs = std::filesystem;
        // /dev/shm when there is one: a file per input costs little in memory.
        const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        std::string tmpl = (base / "ad_fuzz_serialize_XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) std::abort();
        dir = tmpl;
        file = dir + "/input.npz";
    }
    ~Scratch()
    {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static Scratch scratch;
    static ad::fuzz::SavedModel model;
    {
        std::ofstream out(scratch.file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
        if (!out) std::abort();
    }
    try {
        ad::fuzz::feed_saved_model(model, scratch.file);
    } catch (const ad::Error&) {
    }
    return 0;
}
