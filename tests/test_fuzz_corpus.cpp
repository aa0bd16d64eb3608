// The fuzz targets' seed corpora (tests/fuzz/corpus, written by tests/fuzz/make_corpus.py) and
// the inputs that once found a bug (tests/fuzz/regressions) go through every reader the targets
// fuzz: the .npz and .npy readers, checkpoint loading and the IDX decoder. Each file must give a
// result or an ad::Error, never a crash or another exception; run under the sanitizers this also
// means no memory error, undefined behaviour or leak. The valid seeds must also be read correctly.
#include "fuzz/fuzz_inputs.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
namespace nn = ad::nn;
using ad::Tensor;

namespace {

const fs::path fuzz_dir = fs::path(AD_SOURCE_DIR) / "tests" / "fuzz";

std::vector<fs::path> files_in(const fs::path& dir)
{
    std::vector<fs::path> out;
    if (fs::is_directory(dir))
        for (const auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file()) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::uint8_t> read_bytes(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs `f`; true if it returned, false if it raised ad::Error. Any other exception escapes and
// fails the test.
template <class F>
bool accepted(F&& f)
{
    try {
        f();
        return true;
    } catch (const ad::Error&) {
        return false;
    }
}

bool truncated(const fs::path& p) { return p.filename().string().find("truncated") != std::string::npos; }

}  // namespace

TEST_CASE("fuzz corpus: every seed and regression input is read or refused with ad::Error", "[fuzz]")
{
    std::vector<fs::path> inputs;
    for (const char* kind : {"npz", "npy", "idx"}) {
        const auto files = files_in(fuzz_dir / "corpus" / kind);
        INFO("corpus " << kind);
        CHECK(files.size() >= 5);
        inputs.insert(inputs.end(), files.begin(), files.end());
    }
    const auto regressions = files_in(fuzz_dir / "regressions");
    inputs.insert(inputs.end(), regressions.begin(), regressions.end());

    ad::fuzz::SavedModel model;
    for (const auto& path : inputs) {
        INFO(path.string());
        const auto bytes = read_bytes(path);
        // Every reader on every file: an IDX file given to the npz reader must be refused as cleanly
        // as a broken archive.
        accepted([&] { ad::fuzz::feed_npz(bytes); });
        accepted([&] { ad::fuzz::feed_npy(bytes); });
        accepted([&] { ad::fuzz::feed_idx(bytes); });
        accepted([&] { ad::fuzz::feed_saved_model(model, path.string()); });
    }
}

TEST_CASE("fuzz corpus: the valid seeds are read, the truncated ones refused", "[fuzz]")
{
    const auto kinds = {std::pair<const char*, std::size_t (*)(const std::vector<std::uint8_t>&)>{
                            "npz", ad::fuzz::feed_npz},
                        {"npy", ad::fuzz::feed_npy},
                        {"idx", ad::fuzz::feed_idx}};
    for (const auto& [kind, feed] : kinds) {
        for (const auto& path : files_in(fuzz_dir / "corpus" / kind)) {
            INFO(path.string());
            const auto bytes = read_bytes(path);
            CHECK(accepted([&, feed = feed] { feed(bytes); }) == !truncated(path));
        }
    }
}

TEST_CASE("fuzz corpus: each regression input is refused by the reader it broke", "[fuzz]")
{
    // Named <reader>-<what> (tests/fuzz/make_corpus.py writes them): npy-, npz- or idx-.
    const auto files = files_in(fuzz_dir / "regressions");
    CHECK(files.size() >= 4);
    ad::fuzz::SavedModel model;
    for (const auto& path : files) {
        INFO(path.string());
        const std::string name = path.filename().string();
        const auto bytes = read_bytes(path);
        if (name.rfind("npy-", 0) == 0) {
            CHECK_FALSE(accepted([&] { ad::fuzz::feed_npy(bytes); }));
        } else if (name.rfind("npz-", 0) == 0) {
            CHECK_FALSE(accepted([&] { ad::fuzz::feed_npz(bytes); }));
            CHECK_FALSE(accepted([&] { ad::fuzz::feed_saved_model(model, path.string()); }));
        } else if (name.rfind("idx-", 0) == 0) {
            CHECK_FALSE(accepted([&] { ad::fuzz::feed_idx(bytes); }));
        } else {
            FAIL("a regression input is named <reader>-<what>, reader npy, npz or idx");
        }
    }
}

TEST_CASE("fuzz corpus: the seed checkpoints load into the fuzzed model", "[fuzz]")
{
    const fs::path npz = fuzz_dir / "corpus" / "npz";
    ad::fuzz::SavedModel m;
    for (auto* p : m.model->parameters()) p->mutable_value().fill(0.f);

    // Written from the float model after one Adam step: the optimiser's state and step come back.
    nn::load(*m.model, m.optimizer, (npz / "saved_adam_f4.npz").string());
    CHECK(m.optimizer.step_count() == 1);
    const auto archive = nn::read_npz((npz / "saved_adam_f4.npz").string());
    for (const auto& [name, p] : m.model->named_parameters()) {
        INFO(name);
        const auto it = std::find_if(archive.begin(), archive.end(), [&](const auto& e) { return e.first == name; });
        REQUIRE(it != archive.end());
        CHECK((p->value() == it->second.to_tensor<float>()));
    }

    // The model alone, stored in float and in double; a model-only checkpoint has no optimiser state.
    CHECK(accepted([&] { nn::load(*m.model, (npz / "saved_model_f4.npz").string()); }));
    CHECK(accepted([&] { nn::load(*m.model, (npz / "saved_model_f8.npz").string()); }));
    CHECK_FALSE(accepted([&] { nn::load(*m.model, m.optimizer, (npz / "saved_model_f4.npz").string()); }));
    // Not a checkpoint of this model.
    CHECK_FALSE(accepted([&] { nn::load(*m.model, (npz / "writer_mixed.npz").string()); }));
}

TEST_CASE("fuzz corpus: the seeds hold what make_corpus.py put in them", "[fuzz]")
{
    const fs::path corpus = fuzz_dir / "corpus";
    const auto images = nn::decode_idx(read_bytes(corpus / "idx" / "images-idx3-ubyte.gz"), "images");
    CHECK(images.magic == 0x00000803);
    CHECK(images.shape == std::vector<std::size_t>{3, 4, 5});
    for (std::size_t i = 0; i < images.data.size(); ++i) CHECK(images.data[i] == i * 7 % 256);
    const auto labels = nn::decode_idx(read_bytes(corpus / "idx" / "labels-two-members.gz"), "labels");
    CHECK(labels.data == std::vector<std::uint8_t>{3, 0, 9});

    for (const char* name : {"numpy_savez.npz", "numpy_savez_compressed.npz"}) {
        INFO(name);
        const auto a = nn::decode_npz(read_bytes(corpus / "npz" / name), name);
        REQUIRE(a.size() == 5);
        CHECK(a[0].first == "w");
        CHECK((a[0].second.to_tensor<float>() == Tensor<float>{{-0.625f, -0.375f, -0.125f}, {0.125f, 0.375f, 0.625f}}));
        CHECK(a[3].first == "f");  // Fortran order: read back in C order
        CHECK((a[3].second.to_tensor<double>() == Tensor<double>{{0, 0.125}, {0.25, 0.375}, {0.5, 0.625}}));
        CHECK(a[4].second.shape == ad::Shape{0, 2});
    }
    const auto v3 = nn::decode_npy(read_bytes(corpus / "npy" / "numpy_v3.npy"), "v3");
    CHECK(v3.shape == ad::Shape{3, 4});
    CHECK(v3.data[5] == 5.0 / 16);
}
