// .npz reading and writing (nn/npz.hpp) and saved models (nn/serialize.hpp): round trips, files
// written by numpy (tests/fixtures/make_npz_fixtures.py), every truncation and byte flip of an
// archive, atomic saving under a real write failure, and each way a saved model can fail to
// match a model, which must leave the model and optimiser exactly as they were.
#include "temp_dir.hpp"

#include "nn/batch_norm.hpp"
#include "nn/serialize.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"
#include "nn/npz.hpp"
#include "nn/sequential.hpp"

#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

using ad::Parameter;
using ad::Tensor;
using Catch::Contains;
namespace nn = ad::nn;
namespace fs = std::filesystem;
using adtest::TempDir;

namespace {

const std::string fixtures = std::string(AD_SOURCE_DIR) + "/tests/fixtures/";

std::vector<std::uint8_t> read_bytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    REQUIRE(out.good());
}

bool same_arrays(const nn::NpzArchive& a, const nn::NpzArchive& b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto& [na, x] = a[i];
        const auto& [nb, y] = b[i];
        if (na != nb || x.dtype != y.dtype || x.shape != y.shape || x.data.size() != y.data.size()) return false;
        // Bitwise, so NaNs and signed zeros count; an empty vector's data() may be null, which memcmp may not get.
        if (!x.data.empty() && std::memcmp(x.data.data(), y.data.data(), x.data.size() * sizeof(double)) != 0)
            return false;
    }
    return true;
}

template <class T>
Tensor<T> ramp(const ad::Shape& shape, double scale, double offset)
{
    Tensor<T> t = Tensor<T>::from_shape(shape);
    std::size_t k = 0;
    for (T& x : t) x = T(double(k++) * scale + offset);
    return t;
}

// The arrays of make_npz_fixtures.py, checked by their formulas.
void check_numpy_arrays(const nn::NpzArchive& archive)
{
    std::vector<std::string> names;
    for (const auto& e : archive) names.push_back(e.first);
    REQUIRE(names == std::vector<std::string>{"a", "b32", "scalar", "fortran", "empty", "layer.0.weight"});
    const auto& a = archive[0].second;
    CHECK(a.dtype == "<f8");
    CHECK(a.shape == ad::Shape{2, 3});
    for (std::size_t k = 0; k < 6; ++k) CHECK(a.data[k] == double(k) / 8 - 0.25);
    const auto& b = archive[1].second;
    CHECK(b.dtype == "<f4");
    CHECK(b.data == std::vector<double>{1.5, -2.25, 0.125, double(3.0e38f)});
    const auto& s = archive[2].second;
    CHECK(s.shape.empty());
    CHECK(s.data == std::vector<double>{0.1});
    const auto& f = archive[3].second;  // logical (i, j) = 2 i + j + 0.5, whatever the order on disk
    REQUIRE(f.shape == ad::Shape{3, 2});
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 2; ++j) CHECK(f.data[2 * i + j] == double(2 * i + j) + 0.5);
    CHECK(archive[4].second.shape == ad::Shape{0, 3});
    CHECK(archive[4].second.data.empty());
    const auto& w = archive[5].second;
    REQUIRE(w.shape == ad::Shape{50, 40});
    for (std::size_t k = 0; k < w.data.size(); ++k) {
        if (w.data[k] != double(k % 97) / 16 - 3) FAIL_CHECK("layer.0.weight[" << k << "] = " << w.data[k]);
    }
}

// --- saved models ---

std::shared_ptr<nn::Sequential<double>> make_model(std::size_t width, std::uint64_t seed, bool first_bias = true,
                                                   bool extra_layer = false)
{
    nn::Rng rng(seed);
    auto m = std::make_shared<nn::Sequential<double>>();
    m->add(std::make_shared<nn::Linear<double>>(3, width, rng, nn::Bias{first_bias}));
    m->add(std::make_shared<nn::BatchNorm1d<double>>(width));
    m->add(std::make_shared<nn::LayerNorm<double>>(width));
    m->add(std::make_shared<nn::Linear<double>>(width, 2, rng));
    if (extra_layer) m->add(std::make_shared<nn::Linear<double>>(2, 2, rng));
    return m;
}

// A deterministic stand-in for a training step: gradients from the values, buffers drift.
void fake_step(nn::Module<double>& model, nn::Optimizer<double>& opt, int k)
{
    for (auto* p : model.parameters()) p->grad = 0.3 * p->value() + 0.01 * k - 0.02;
    opt.step();
    for (auto& [name, b] : model.named_buffers()) *b += 0.125 * k;
}

struct Snapshot {
    std::vector<std::pair<std::string, Tensor<double>>> values;
    std::vector<std::uint64_t> versions;
    std::vector<Tensor<double>> state;
    std::uint64_t steps = 0;
    double lr = 0;

    Snapshot(nn::Module<double>& m, nn::Optimizer<double>* opt = nullptr)
    {
        for (auto& [name, p] : m.named_parameters()) {
            values.emplace_back(name, p->value());
            versions.push_back(p->version());
        }
        for (auto& [name, b] : m.named_buffers()) values.emplace_back(name, *b);
        if (opt) {
            for (auto& e : opt->named_state()) state.push_back(*e.second);
            steps = opt->step_count();
            lr = opt->lr();
        }
    }
    bool operator==(const Snapshot& o) const
    {
        if (values.size() != o.values.size() || versions != o.versions || steps != o.steps || lr != o.lr ||
            state.size() != o.state.size())
            return false;
        for (std::size_t i = 0; i < values.size(); ++i)
            if (values[i].first != o.values[i].first || values[i].second != o.values[i].second) return false;
        for (std::size_t i = 0; i < state.size(); ++i)
            if (state[i] != o.state[i]) return false;
        return true;
    }
};

nn::AdamOptions adam_options(double lr)
{
    nn::AdamOptions o;
    o.lr = lr;
    o.amsgrad = true;
    o.weight_decay = 0.01;
    return o;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// .npz

TEST_CASE("npz round trip keeps names, shapes, dtypes and every bit", "[npz]")
{
    TempDir dir;
    const std::string path = dir.file("arrays.npz");
    nn::NpzWriter w;
    w.add("matrix", ramp<double>({2, 3}, 0.1, -0.35));
    w.add("block.0.weight", ramp<float>({2, 3, 4}, 1.0 / 3, -2));
    w.add("vector", ramp<double>({5}, 1e300, 1e-300));
    w.add("empty", Tensor<float>::from_shape({0, 4}));
    w.add_scalar("step", 12345.0);
    w.write(path);

    const nn::NpzArchive a = nn::read_npz(path);
    REQUIRE(a.size() == 5);
    CHECK(a[0].first == "matrix");
    CHECK(a[0].second.dtype == "<f8");
    CHECK((a[0].second.to_tensor<double>() == ramp<double>({2, 3}, 0.1, -0.35)));
    CHECK(a[1].first == "block.0.weight");
    CHECK(a[1].second.dtype == "<f4");
    CHECK((a[1].second.to_tensor<float>() == ramp<float>({2, 3, 4}, 1.0 / 3, -2)));
    CHECK((a[2].second.to_tensor<double>() == ramp<double>({5}, 1e300, 1e-300)));
    CHECK(a[3].second.shape == ad::Shape{0, 4});
    CHECK(a[4].second.shape.empty());
    CHECK(a[4].second.data == std::vector<double>{12345.0});

    SECTION("either dtype loads as either type")
    {
        const Tensor<double> as_double = a[1].second.to_tensor<double>();  // float -> double is exact
        CHECK((Tensor<float>(as_double) == ramp<float>({2, 3, 4}, 1.0 / 3, -2)));
        const Tensor<float> as_float = a[0].second.to_tensor<float>();  // double -> float rounds
        CHECK((as_float == Tensor<float>(ramp<double>({2, 3}, 0.1, -0.35))));
    }
    SECTION("save_npz / load_npz")
    {
        nn::save_npz<double>(dir.file("pair.npz"), {{"x", ramp<double>({3}, 2, 1)}, {"y", ramp<double>({1, 1}, 0, 7)}});
        const auto loaded = nn::load_npz<float>(dir.file("pair.npz"));
        REQUIRE(loaded.size() == 2);
        CHECK(loaded[1].first == "y");
        CHECK((loaded[0].second == Tensor<float>{1.f, 3.f, 5.f}));
    }
}

TEST_CASE("npz writer: .npy 1.0 headers padded to 64 bytes, stored entries, a fixed layout", "[npz]")
{
    nn::NpzWriter w;
    w.add("w", Tensor<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    const auto bytes = w.bytes();
    REQUIRE(bytes.size() > 30);
    CHECK(std::memcmp(bytes.data(), "PK\x03\x04", 4) == 0);
    CHECK(bytes[8] == 0);  // method: stored
    const std::string name(bytes.begin() + 30, bytes.begin() + 35);
    CHECK(name == "w.npy");
    const std::size_t npy = 35;
    CHECK(std::memcmp(bytes.data() + npy, "\x93NUMPY\x01\x00", 8) == 0);
    const std::size_t header_len = bytes[npy + 8] | bytes[npy + 9] << 8;
    CHECK((10 + header_len) % 64 == 0);
    const std::string header(bytes.begin() + npy + 10, bytes.begin() + npy + 10 + header_len);
    CHECK(header.rfind("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
    CHECK(header.back() == '\n');
    double first;
    std::memcpy(&first, bytes.data() + npy + 10 + header_len, 8);
    CHECK(first == 1.0);

    nn::NpzWriter v;
    v.add("v", Tensor<float>{1.f});
    const auto vb = v.bytes();
    const std::string vh(vb.begin() + 35 + 10, vb.begin() + 35 + 128);
    CHECK(vh.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 0) == 0);
}

TEST_CASE("npz files written by numpy.savez and numpy.savez_compressed load with their values", "[npz]")
{
    SECTION("savez: stored entries with zip64 local headers") { check_numpy_arrays(nn::read_npz(fixtures + "numpy_savez.npz")); }
    SECTION("savez_compressed: deflated entries") { check_numpy_arrays(nn::read_npz(fixtures + "numpy_savez_compressed.npz")); }
}

// One .npy of int64 values, written by hand as numpy does (version 1.0, header padded to 64 bytes).
static std::vector<std::uint8_t> int64_npy(const std::vector<std::int64_t>& values)
{
    std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + std::to_string(values.size()) + ",), }";
    header.resize(63, ' ');
    header += '\n';
    std::vector<std::uint8_t> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, std::uint8_t(header.size()), 0};
    bytes.insert(bytes.end(), header.begin(), header.end());
    for (std::int64_t v : values) {
        std::uint8_t b[8];
        std::memcpy(b, &v, 8);
        bytes.insert(bytes.end(), b, b + 8);
    }
    return bytes;
}

TEST_CASE("npz loader reads int64 arrays (PyTorch's counters) exactly and refuses those float64 would round",
          "[npz][errors]")
{
    const nn::NpzArchive a = nn::read_npz(fixtures + "numpy_int64.npz");  // numpy.savez(a=numpy.arange(3))
    REQUIRE(a.size() == 1);
    CHECK(a[0].second.dtype == "<i8");
    CHECK(a[0].second.data == std::vector<double>{0, 1, 2});
    const std::int64_t top = std::int64_t(1) << 53;
    CHECK(nn::decode_npy(int64_npy({-top, top, -7}), "ok.npy").data == std::vector<double>{-double(top), double(top), -7});
    CHECK_THROWS_WITH(nn::decode_npy(int64_npy({3, top + 1}), "big.npy"),
                      Contains("big.npy") && Contains("int64 element 9007199254740993 at flat index 1") &&
                          Contains("beyond 2^53"));
    CHECK_THROWS_WITH(nn::decode_npy(int64_npy({-top - 1}), "small.npy"), Contains("-9007199254740993"));
}

TEST_CASE("npz loader refuses what it cannot read, naming the file and the problem", "[npz][errors]")
{
    CHECK_THROWS_WITH(nn::read_npz(fixtures + "numpy_bigendian.npz"),
                      Contains("numpy_bigendian.npz") && Contains("'a.npy'") && Contains("dtype '>f8' is not supported"));
    CHECK_THROWS_WITH(nn::read_npz(fixtures + "not_npy.npz"), Contains("'readme.txt'") && Contains("not a .npy entry"));
    CHECK_THROWS_WITH(nn::read_npz(fixtures + "optim_fixtures.txt"), Contains("not a zip archive"));
    CHECK_THROWS_WITH(nn::read_npz(fixtures + "no_such_file.npz"), Contains("no_such_file.npz") && Contains("does not exist"));
    CHECK_THROWS_WITH(nn::read_npz(fixtures), Contains("is a directory"));
    CHECK_THROWS_WITH(nn::decode_npz({}, "empty.npz"), Contains("empty.npz") && Contains("too short"));

    SECTION("a flipped data byte fails the CRC")
    {
        auto bytes = read_bytes(fixtures + "numpy_savez.npz");
        // The first entry's data: local header (30 bytes), its name "a.npy", the zip64 extra
        // field numpy writes (20 bytes), then the .npy; its last byte is an element.
        const std::size_t a_end = 30 + 5 + 20 + 176;
        bytes[a_end - 1] ^= 0x01;
        CHECK_THROWS_WITH(nn::decode_npz(bytes, "flipped.npz"), Contains("'a.npy'") && Contains("CRC-32 mismatch"));
    }
    SECTION("bad .npy headers")
    {
        const std::vector<std::uint8_t> magic = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        auto npy = [&](const std::string& header, std::size_t data_bytes) {
            std::vector<std::uint8_t> b = magic;
            b.push_back(std::uint8_t(header.size()));
            b.push_back(std::uint8_t(header.size() >> 8));
            b.insert(b.end(), header.begin(), header.end());
            b.resize(b.size() + data_bytes);
            return b;
        };
        CHECK_NOTHROW(nn::decode_npy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 16), "x"));
        CHECK_THROWS_WITH(nn::decode_npy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 15), "x"),
                          Contains("needs 16 bytes of data, the array has 15"));
        CHECK_THROWS_WITH(nn::decode_npy(npy("{'descr': '<f8', 'shape': (2,), }\n", 16), "x"), Contains("must all be present"));
        CHECK_THROWS_WITH(nn::decode_npy(npy("{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,), }", 16), "x"),
                          Contains("True or False"));
        CHECK_THROWS_WITH(nn::decode_npy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, -1), }", 16), "x"),
                          Contains("non-negative integer"));
        CHECK_THROWS_WITH(nn::decode_npy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}", 16), "x"),
                          Contains("unexpected key 'x'"));
        CHECK_THROWS_WITH(
            nn::decode_npy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", 16), "x"),
            Contains("too large"));
        std::vector<std::uint8_t> v9 = magic;
        v9[6] = 9;
        v9.resize(64);
        CHECK_THROWS_WITH(nn::decode_npy(v9, "x"), Contains("version 9.0"));
        std::vector<std::uint8_t> long_header = magic;
        long_header.push_back(0xff);
        long_header.push_back(0x00);
        CHECK_THROWS_WITH(nn::decode_npy(long_header, "x"), Contains("runs past the end"));
    }
}

TEST_CASE("decode_npy_tensor reads a .npy straight into a tensor of either type, in C order", "[npz]")
{
    auto npy = [](const std::string& header, const void* data, std::size_t data_bytes) {
        std::vector<std::uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        b.push_back(std::uint8_t(header.size()));
        b.push_back(std::uint8_t(header.size() >> 8));
        b.insert(b.end(), header.begin(), header.end());
        const auto* p = static_cast<const std::uint8_t*>(data);
        b.insert(b.end(), p, p + data_bytes);
        return b;
    };
    // x[i][j] = 10 i + j + 1/2, stored column by column.
    const float column_major[6] = {0.5f, 10.5f, 1.5f, 11.5f, 2.5f, 12.5f};
    const auto f = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", column_major, sizeof column_major);
    const Tensor<double> x = nn::decode_npy_tensor<double>(f, "f");
    CHECK((x == Tensor<double>{{0.5, 1.5, 2.5}, {10.5, 11.5, 12.5}}));
    CHECK((nn::decode_npy_tensor<float>(f, "f") == Tensor<float>{{0.5f, 1.5f, 2.5f}, {10.5f, 11.5f, 12.5f}}));

    const double tenth[2] = {0.1, -1e-3};
    const auto d = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", tenth, sizeof tenth);
    const Tensor<float> rounded = nn::decode_npy_tensor<float>(d, "d");  // to nearest, as a cast rounds
    CHECK(rounded(0) == 0.1f);
    CHECK(rounded(1) == -1e-3f);
    CHECK(nn::decode_npy_tensor<double>(d, "d")(0) == 0.1);

    nn::NpzReadOptions small;
    small.max_bytes = 15;
    CHECK_THROWS_WITH(nn::decode_npy_tensor<double>(d, "d", small),
                      Contains("declares 16 bytes") && Contains("NpzReadOptions::max_bytes"));
    std::vector<std::uint8_t> cut = d;
    cut.pop_back();
    CHECK_THROWS_WITH(nn::decode_npy_tensor<double>(cut, "cut"), Contains("cut") && Contains("needs 16 bytes of data"));
}

TEST_CASE("npz loader refuses two entries of the same name", "[npz][errors]")
{
    nn::NpzWriter w;
    w.add("a", Tensor<double>{1.0});
    w.add("b", Tensor<double>{2.0});
    auto bytes = w.bytes();
    // "b.npy" in its local header and its central directory entry becomes "a.npy"; the CRC-32
    // covers the data only, so the archive stays consistent otherwise.
    const std::string from = "b.npy";
    int renamed = 0;
    for (auto it = bytes.begin(); (it = std::search(it, bytes.end(), from.begin(), from.end())) != bytes.end(); ++renamed)
        *it = 'a';
    REQUIRE(renamed == 2);
    CHECK_THROWS_WITH(nn::decode_npz(bytes, "twice.npz"), Contains("twice.npz") && Contains("two entries have the same name"));
}

TEST_CASE("every truncation of an npz file is an error, and every byte flip an error or harmless", "[npz][errors]")
{
    for (const std::string file : {"numpy_savez_compressed.npz", "numpy_savez.npz", "written"}) {
        DYNAMIC_SECTION(file)
        {
            std::vector<std::uint8_t> bytes;
            if (file == "written") {
                nn::NpzWriter w;
                w.add("a", ramp<double>({3, 2}, 0.5, -1));
                w.add("b", ramp<float>({4}, 0.25, 0));
                bytes = w.bytes();
            } else {
                bytes = read_bytes(fixtures + file);
            }
            const nn::NpzArchive good = nn::decode_npz(bytes, file);
            std::size_t truncations = 0, flips_refused = 0, flips_harmless = 0;
            for (std::size_t n = 0; n < bytes.size(); ++n) {
                const std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
                try {
                    nn::decode_npz(cut, "cut.npz");
                    FAIL_CHECK("a file truncated to " << n << " of " << bytes.size() << " bytes was accepted");
                } catch (const ad::Error& e) {
                    if (std::string(e.what()).find("cut.npz") == std::string::npos)
                        FAIL_CHECK("error without the file name: " << e.what());
                    ++truncations;
                }
            }
            if (bytes.size() < 5000) {  // one decode per byte; the compressed and written files
                for (std::size_t k = 0; k < bytes.size(); ++k) {
                    std::vector<std::uint8_t> flipped = bytes;
                    flipped[k] ^= 0xff;
                    try {
                        const nn::NpzArchive got = nn::decode_npz(flipped, "flipped.npz");
                        if (!same_arrays(got, good)) FAIL_CHECK("flipping byte " << k << " changed the arrays silently");
                        ++flips_harmless;  // a field the loader does not read (time, version, attributes)
                    } catch (const ad::Error&) {
                        ++flips_refused;
                    }
                }
            }
            INFO(truncations << " truncations refused; byte flips: " << flips_refused << " refused, " << flips_harmless
                             << " harmless");
            CHECK(truncations == bytes.size());
        }
    }
}

TEST_CASE("npz writes are atomic: a failure midway leaves the previous file whole", "[npz][atomic]")
{
    TempDir dir;
    const std::string path = dir.file("model.npz");
    nn::NpzWriter small;
    small.add("w", ramp<double>({4}, 1, 0));
    small.write(path);
    const auto before = read_bytes(path);
    CHECK(dir.entries() == std::vector<std::string>{"model.npz"});
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);

    nn::NpzWriter big;
    big.add("w", ramp<double>({100000}, 1, 0));  // 800 kB

    SECTION("the write itself fails: the file-size limit is hit halfway through")
    {
        // RLIMIT_FSIZE makes write() fail with EFBIG past the limit, for root too. SIGXFSZ,
        // which would end the process, is ignored meanwhile.
        rlimit old {};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
        rlimit lowered = old;
        lowered.rlim_cur = 64 * 1024;
        auto previous = std::signal(SIGXFSZ, SIG_IGN);
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
        std::string message;
        try {
            big.write(path);
        } catch (const ad::Error& e) {
            message = e.what();
        }
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, previous);
        CHECK_THAT(message, Contains(path) && Contains("write failed after 65536 of"));
        CHECK(read_bytes(path) == before);
        CHECK(dir.entries() == std::vector<std::string>{"model.npz"});  // no temporary file left
    }
    SECTION("the directory does not exist")
    {
        const std::string missing = dir.file("no/such/dir/model.npz");
        CHECK_THROWS_WITH(big.write(missing), Contains(missing) && Contains("temporary file"));
        CHECK(dir.entries() == std::vector<std::string>{"model.npz"});
    }
    SECTION("the target is a directory")
    {
        fs::create_directory(dir.file("sub"));
        CHECK_THROWS_WITH(big.write(dir.file("sub")), Contains("is a directory"));
        CHECK(fs::is_directory(dir.file("sub")));
    }
    SECTION("success replaces the file and leaves nothing else")
    {
        big.write(path);
        CHECK(nn::read_npz(path)[0].second.data.size() == 100000);
        CHECK(dir.entries() == std::vector<std::string>{"model.npz"});
    }
}

TEST_CASE("npz writer refuses empty and repeated names", "[npz][errors]")
{
    nn::NpzWriter w;
    w.add("x", Tensor<double>{1.0});
    CHECK_THROWS_WITH(w.add("x", Tensor<float>{1.f}), Contains("'x' used twice"));
    CHECK_THROWS_WITH(w.add("", Tensor<float>{1.f}), Contains("empty"));
    CHECK_THROWS_WITH(w.add(std::string("a\0b", 3), Tensor<float>{1.f}), Contains("NpzWriter::add") && Contains("NUL byte"));
}

TEST_CASE("npz writer: an archive without arrays, and one of more than 65535 arrays (zip64)", "[npz]")
{
    const nn::NpzWriter none;
    const auto empty = none.bytes();
    CHECK(empty.size() == 22);  // the end-of-central-directory record alone
    CHECK(std::memcmp(empty.data(), "PK\x05\x06", 4) == 0);
    CHECK(nn::decode_npz(empty, "empty.npz").empty());

    nn::NpzWriter many;
    const std::size_t n = 70000;
    for (std::size_t i = 0; i < n; ++i) many.add_scalar("s" + std::to_string(i), double(i));
    const auto bytes = many.bytes();
    // The zip64 end record and its locator precede the plain end record, whose count says 0xffff.
    REQUIRE(bytes.size() > 22 + 20 + 56);
    CHECK(std::memcmp(bytes.data() + bytes.size() - 22 - 20 - 56, "PK\x06\x06", 4) == 0);
    const nn::NpzArchive a = nn::decode_npz(bytes, "many.npz");
    REQUIRE(a.size() == n);
    CHECK(a[0].first == "s0");
    CHECK(a[n - 1].first == "s69999");
    CHECK(a[n - 1].second.data == std::vector<double>{69999.0});
}

// ------------------------------------------------------------------------------------------
// saved models

TEST_CASE("a saved model holds the parameters and buffers under their names and restores them", "[serialize]")
{
    TempDir dir;
    const std::string path = dir.file("ckpt.npz");
    auto model = make_model(4, 1);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    fake_step(*model, opt, 1);
    const Snapshot saved(*model);
    nn::save(*model, path);

    std::vector<std::string> keys;
    for (const auto& e : nn::read_npz(path)) keys.push_back(e.first);
    CHECK(keys == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias", "3.weight",
                                           "3.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"});

    fake_step(*model, opt, 2);
    REQUIRE_FALSE(Snapshot(*model) == saved);
    const auto version = model->named_parameters()[0].second->version();
    nn::load(*model, path);
    const Snapshot loaded(*model);
    CHECK(loaded.values.size() == saved.values.size());
    for (std::size_t i = 0; i < saved.values.size(); ++i) {
        INFO(saved.values[i].first);
        CHECK((loaded.values[i].second == saved.values[i].second));
    }
    CHECK(model->named_parameters()[0].second->version() == version + 1);  // loading marks parameters modified

    SECTION("into a fresh model of the same architecture")
    {
        auto other = make_model(4, 99);
        nn::load(*other, path);
        const Snapshot o(*other);
        for (std::size_t i = 0; i < saved.values.size(); ++i) CHECK((o.values[i].second == saved.values[i].second));
    }
    SECTION("a float model reads the saved double model, rounded")
    {
        nn::Rng rng(5);
        nn::Linear<float> first(3, 4, rng);
        nn::NamedParameters<float> named{{"0.weight", &first.weight()}, {"0.bias", first.bias()}};
        TempDir d2;
        const auto all = model->named_parameters();
        nn::save<double>(nn::NamedParameters<double>(all.begin(), all.begin() + 2), d2.file("first.npz"));
        nn::load(named, d2.file("first.npz"));
        CHECK((first.weight().value() == Tensor<float>(saved.values[0].second)));
    }
}

TEST_CASE("a model saved with optimiser state resumes training exactly where it stopped", "[serialize]")
{
    TempDir dir;
    const std::string path = dir.file("train.npz");
    auto run = [&](auto make_opt) {
        auto a = make_model(4, 1);
        auto opt_a = make_opt(*a, 0.01);
        for (int k = 1; k <= 3; ++k) fake_step(*a, *opt_a, k);
        nn::save(*a, *opt_a, path);
        for (int k = 4; k <= 6; ++k) fake_step(*a, *opt_a, k);

        auto b = make_model(4, 2);           // other initial values
        auto opt_b = make_opt(*b, 0.5);      // and another learning rate
        nn::load(*b, *opt_b, path);
        CHECK(opt_b->step_count() == 3);
        CHECK(opt_b->lr() == 0.01);
        for (int k = 4; k <= 6; ++k) fake_step(*b, *opt_b, k);
        const Snapshot sa(*a, opt_a.get()), sb(*b, opt_b.get());
        CHECK(sa.values.size() == sb.values.size());
        for (std::size_t i = 0; i < sa.values.size(); ++i) {
            INFO(sa.values[i].first);
            CHECK((sa.values[i].second == sb.values[i].second));  // bit for bit
        }
        CHECK(sa.state.size() == sb.state.size());
        for (std::size_t i = 0; i < sa.state.size(); ++i) CHECK((sa.state[i] == sb.state[i]));
    };
    SECTION("Adam with AMSGrad")
    {
        run([](nn::Module<double>& m, double lr) { return std::make_unique<nn::Adam<double>>(m, adam_options(lr)); });
        std::vector<std::string> keys;
        for (const auto& e : nn::read_npz(path)) keys.push_back(e.first);
        CHECK(std::count(keys.begin(), keys.end(), "optim.exp_avg.0.weight") == 1);
        CHECK(std::count(keys.begin(), keys.end(), "optim.max_exp_avg_sq.3.bias") == 1);
        CHECK(std::count(keys.begin(), keys.end(), "optim.step") == 1);
    }
    SECTION("SGD with momentum")
    {
        run([](nn::Module<double>& m, double lr) {
            nn::SGDOptions o;
            o.lr = lr;
            o.momentum = 0.9;
            o.dampening = 0.1;
            return std::make_unique<nn::SGD<double>>(m, o);
        });
    }
    SECTION("the model alone loads from a file saved in training, ignoring the optimiser's entries")
    {
        auto a = make_model(4, 1);
        nn::Adam<double> opt(*a, adam_options(0.01));
        fake_step(*a, opt, 1);
        nn::save(*a, opt, path);
        auto b = make_model(4, 2);
        nn::load(*b, path);
        CHECK((b->named_parameters()[0].second->value() == a->named_parameters()[0].second->value()));
    }
}

TEST_CASE("a saved model that does not fit leaves the model and optimiser untouched", "[serialize][errors]")
{
    TempDir dir;
    const std::string path = dir.file("ckpt.npz");
    {
        auto source = make_model(4, 1);
        nn::Adam<double> opt(*source, adam_options(0.01));
        fake_step(*source, opt, 1);
        nn::save(*source, opt, path);
    }
    auto check_refused = [&](nn::Module<double>& model, nn::Optimizer<double>* opt, const std::string& file,
                             const std::vector<std::string>& words) {
        const Snapshot before(model, opt);
        std::string message;
        try {
            if (opt)
                nn::load(model, *opt, file);
            else
                nn::load(model, file);
        } catch (const ad::Error& e) {
            message = e.what();
        }
        INFO(message);
        CHECK(!message.empty());
        for (const auto& w : words) CHECK_THAT(message, Contains(w));
        CHECK(Snapshot(model, opt) == before);
    };

    SECTION("wrong shapes")
    {
        auto model = make_model(5, 3);
        check_refused(*model, nullptr, path, {path, "0.weight has shape [4, 3] in the file but [5, 3] in the model",
                                              "1.running_mean has shape [4]"});
    }
    SECTION("a tensor in the file that the model lacks")
    {
        auto model = make_model(4, 3, /*first_bias=*/false);
        check_refused(*model, nullptr, path, {"unexpected 0.bias [4]"});
    }
    SECTION("a tensor the model has that the file lacks")
    {
        auto model = make_model(4, 3, true, /*extra_layer=*/true);
        check_refused(*model, nullptr, path, {"missing 4.weight [2, 2]", "missing 4.bias [2]"});
    }
    SECTION("an optimiser whose state the file lacks")
    {
        TempDir d2;
        auto plain = make_model(4, 1);
        nn::save(*plain, d2.file("plain.npz"));
        auto model = make_model(4, 3);
        nn::Adam<double> opt(*model, adam_options(0.02));
        fake_step(*model, opt, 1);
        check_refused(*model, &opt, d2.file("plain.npz"), {"missing optim.step", "missing optim.exp_avg.0.weight"});
    }
    SECTION("another optimiser's state")
    {
        auto model = make_model(4, 3);
        nn::SGDOptions o;
        o.momentum = 0.9;
        nn::SGD<double> opt(*model, o);
        check_refused(*model, &opt, path, {"missing optim.momentum_buffer.0.weight", "unexpected optim.exp_avg.0.weight"});
    }
    SECTION("a step count that is not an integer")
    {
        auto model = make_model(4, 3);
        nn::Adam<double> opt(*model, adam_options(0.02));
        nn::NpzWriter w;
        for (const auto& e : nn::read_npz(path))
            if (e.first != "optim.step") w.add(e.first, e.second.to_tensor<double>());
        w.add_scalar("optim.step", 2.5);
        w.write(dir.file("bad_step.npz"));
        check_refused(*model, &opt, dir.file("bad_step.npz"), {"optim.step is 2.5"});
    }
    SECTION("a truncated file")
    {
        auto bytes = read_bytes(path);
        bytes.resize(bytes.size() / 2);
        write_bytes(dir.file("half.npz"), bytes);
        auto model = make_model(4, 3);
        nn::Adam<double> opt(*model, adam_options(0.02));
        check_refused(*model, &opt, dir.file("half.npz"), {"half.npz", "not a zip archive"});
        check_refused(*model, nullptr, dir.file("half.npz"), {"half.npz"});
    }
    SECTION("a corrupt byte in a tensor")
    {
        auto bytes = read_bytes(path);
        const auto archive = nn::read_npz(path);
        // The last element of the first entry (stored, so its bytes are in the file as they are).
        const std::size_t first_end = 30 + std::strlen("0.weight.npy") + 128 + 4 * 3 * 8;
        bytes[first_end - 1] ^= 0x40;
        write_bytes(dir.file("flipped.npz"), bytes);
        auto model = make_model(4, 3);
        check_refused(*model, nullptr, dir.file("flipped.npz"), {"flipped.npz", "'0.weight.npy'", "CRC-32 mismatch"});
    }
    SECTION("a file that does not exist")
    {
        auto model = make_model(4, 3);
        check_refused(*model, nullptr, dir.file("nothing.npz"), {"does not exist"});
    }
}

TEST_CASE("saving a model that cannot be written keeps the previous one", "[serialize][atomic]")
{
    TempDir dir;
    auto model = make_model(4, 1);
    nn::save(*model, dir.file("ckpt.npz"));
    const auto before = read_bytes(dir.file("ckpt.npz"));
    CHECK_THROWS_WITH(nn::save(*model, dir.file("missing/ckpt.npz")), Contains("missing/ckpt.npz"));
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    fake_step(*model, opt, 1);
    rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    rlimit lowered = old;
    lowered.rlim_cur = 256;
    auto previous = std::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
    bool threw = false;
    try {
        nn::save(*model, dir.file("ckpt.npz"));
    } catch (const ad::Error&) {
        threw = true;
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, previous);
    CHECK(threw);
    CHECK(read_bytes(dir.file("ckpt.npz")) == before);
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.npz"});
}

// ------------------------------------------------------------------------------------------
// Run by tests/npz_interop.py (ctest "npz_interop_with_numpy") with AD_NPZ_INTEROP_DIR set:
// the first writes files for numpy to check, the second reads the files numpy wrote.

TEST_CASE("interop: write npz files for numpy", "[.interop]")
{
    const char* dir = std::getenv("AD_NPZ_INTEROP_DIR");
    REQUIRE(dir != nullptr);
    nn::NpzWriter w;
    w.add("f64", ramp<double>({3, 4}, 0.125, -0.75));  // (4 i + j) / 8 - 0.75
    w.add("f32", ramp<float>({5}, 0.25, -0.5));        // k / 4 - 0.5
    w.add("third", ramp<double>({2}, 1.0 / 3, 1.0 / 3));  // 1/3 and 2/3 as doubles round them
    w.add_scalar("scalar", 0.1);
    w.add("empty", Tensor<double>::from_shape({0}));
    w.write(std::string(dir) + "/from_cpp.npz");

    auto model = make_model(4, 1);
    nn::AdamW<double> opt(*model);
    fake_step(*model, opt, 1);
    nn::save(*model, opt, std::string(dir) + "/model.npz");
}

TEST_CASE("interop: read npz files numpy wrote", "[.interop]")
{
    const char* dir = std::getenv("AD_NPZ_INTEROP_DIR");
    REQUIRE(dir != nullptr);
    for (const char* name : {"/from_numpy.npz", "/from_numpy_compressed.npz"}) {
        INFO(name);
        check_numpy_arrays(nn::read_npz(std::string(dir) + name));
    }
}
