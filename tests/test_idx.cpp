// IDX reading: the format's header and sizes, gzip, and every way a file can be wrong.
#include "temp_dir.hpp"

#include "nn/idx.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <iterator>
#include <map>
#include <random>

namespace fs = std::filesystem;
using adtest::TempDir;
using Bytes = std::vector<std::uint8_t>;
using Catch::Matchers::Contains;

namespace {

void put32(Bytes& b, std::uint32_t v)
{
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

Bytes idx(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const Bytes& data)
{
    Bytes b;
    put32(b, magic);
    for (auto d : dims) put32(b, d);
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

// A gzip member (RFC 1952) holding one stored deflate block (RFC 1951, BTYPE 00): written by
// hand from the two RFCs, so the reader is checked against the format, not against itself.
Bytes gzip_stored(const Bytes& data)
{
    REQUIRE(data.size() < 65536);
    Bytes g = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    const auto n = static_cast<std::uint16_t>(data.size());
    g.push_back(0x01);  // BFINAL = 1, BTYPE = 00
    for (std::uint16_t v : {n, std::uint16_t(~n)}) {
        g.push_back(static_cast<std::uint8_t>(v & 0xff));
        g.push_back(static_cast<std::uint8_t>(v >> 8));
    }
    g.insert(g.end(), data.begin(), data.end());
    std::uint32_t crc = 0xffffffffu;
    for (auto byte : data) {
        crc ^= byte;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xffffffffu;
    for (std::uint32_t v : {crc, std::uint32_t(data.size())})
        for (int s = 0; s < 32; s += 8) g.push_back(static_cast<std::uint8_t>(v >> s));
    return g;
}

// Two 2x3 images with pixels 0, 51, 102, ... (multiples of 255/5) and labels 7, 2.
const Bytes pixels = {0, 51, 102, 153, 204, 255, 255, 204, 153, 102, 51, 0};
const Bytes images = idx(0x00000803, {2, 2, 3}, pixels);
const Bytes labels = idx(0x00000801, {2}, {7, 2});

const std::string fashion_dir = "/usr/share/datasets/fashion-mnist";

}  // namespace

TEST_CASE("IDX header: magic, shape and data in row-major order", "[idx]")
{
    const auto a = ad::nn::decode_idx(images, "images");
    CHECK(a.magic == 0x00000803);
    CHECK(a.shape == std::vector<std::size_t>{2, 2, 3});
    CHECK(a.data == pixels);
}

TEST_CASE("gzipped and plain IDX files decode to the same array", "[idx]")
{
    const auto plain = ad::nn::decode_idx(labels, "labels");
    const auto gz = ad::nn::decode_idx(gzip_stored(labels), "labels.gz");
    CHECK(gz.magic == plain.magic);
    CHECK(gz.shape == plain.shape);
    CHECK(gz.data == plain.data);
    // Two gzip members one after the other read as their concatenation, as gunzip reads them.
    Bytes head(images.begin(), images.begin() + 10), tail(images.begin() + 10, images.end());
    Bytes two = gzip_stored(head);
    const Bytes second = gzip_stored(tail);
    two.insert(two.end(), second.begin(), second.end());
    CHECK(ad::nn::decode_idx(two, "two members").data == pixels);
}

TEST_CASE("labelled images are scaled to [0, 1] and flattened", "[idx]")
{
    TempDir dir;
    const auto im = dir.write("im.gz", gzip_stored(images));
    const auto lb = dir.write("lb", labels);
    const auto d = ad::nn::load_labelled_images<double>(im, lb);
    REQUIRE(d.images.shape() == std::vector<std::size_t>{2, 6});
    CHECK(d.rows == 2);
    CHECK(d.cols == 3);
    for (std::size_t i = 0; i < 12; ++i) CHECK(d.images.data()[i] == Approx(pixels[i] / 255.0));
    CHECK(d.images(0, 5) == 1.0);
    CHECK(d.labels == std::vector<std::int64_t>{7, 2});
    SECTION("a limit keeps the first examples")
    {
        const auto one = ad::nn::load_labelled_images<float>(im, lb, 1);
        CHECK(one.images.shape() == std::vector<std::size_t>{1, 6});
        CHECK(one.labels == std::vector<std::int64_t>{7});
    }
}

TEST_CASE("the MNIST layout finds <split>-images-idx3-ubyte with or without .gz", "[idx]")
{
    TempDir dir;
    dir.write("train-images-idx3-ubyte.gz", gzip_stored(images));
    dir.write("train-labels-idx1-ubyte", labels);
    const auto d = ad::nn::load_mnist_split<float>(dir.path.string(), "train");
    CHECK(d.size() == 2);
    CHECK_THROWS_WITH(ad::nn::load_mnist_split<float>(dir.path.string(), "t10k"),
                      Contains("t10k-images-idx3-ubyte.gz") && Contains("no file"));
    CHECK_THROWS_WITH(ad::nn::load_mnist_split<float>((dir.path / "nowhere").string(), "train"),
                      Contains("nowhere") && Contains("does not exist"));
}

TEST_CASE("bad IDX files give an error naming the file and the fault", "[idx][errors]")
{
    TempDir dir;
    using ad::nn::decode_idx;
    using ad::nn::read_idx;

    SECTION("missing file")
    {
        const auto p = (dir.path / "absent.gz").string();
        CHECK_THROWS_AS(read_idx(p), ad::Error);
        CHECK_THROWS_WITH(read_idx(p), Contains("absent.gz") && Contains("does not exist"));
    }
    SECTION("a directory where a file is expected")
    {
        CHECK_THROWS_WITH(read_idx(dir.path.string()), Contains(dir.path.string()) && Contains("is a directory"));
    }
    SECTION("empty and short files")
    {
        CHECK_THROWS_WITH(read_idx(dir.write("empty", {})), Contains("empty") && Contains("too short"));
        CHECK_THROWS_WITH(decode_idx(idx(0x00000803, {2, 2}, {}), "short"),
                          Contains("short") && Contains("truncated header"));
    }
    SECTION("truncated data")
    {
        Bytes cut(images.begin(), images.end() - 1);
        CHECK_THROWS_WITH(read_idx(dir.write("cut", cut)),
                          Contains("cut") && Contains("truncated") && Contains("[2, 2, 3]") &&
                              Contains("12 bytes") && Contains("only 11"));
    }
    SECTION("truncated gzip stream")
    {
        Bytes gz = gzip_stored(images);
        gz.resize(gz.size() - 12);
        CHECK_THROWS_WITH(read_idx(dir.write("cut.gz", gz)), Contains("cut.gz") && Contains("truncated"));
    }
    SECTION("corrupt gzip stream")
    {
        Bytes gz = gzip_stored(images);
        gz[10] = 0x07;  // BTYPE 11 is reserved
        CHECK_THROWS_WITH(decode_idx(gz, "bad.gz"), Contains("bad.gz") && Contains("corrupt gzip"));
        gz = gzip_stored(images);
        gz[gz.size() - 8] ^= 1;  // CRC no longer matches
        CHECK_THROWS_WITH(decode_idx(gz, "crc.gz"), Contains("crc.gz") && Contains("corrupt gzip"));
    }
    SECTION("data after the declared size")
    {
        Bytes longer = labels;
        longer.push_back(9);
        CHECK_THROWS_WITH(decode_idx(longer, "long"), Contains("long") && Contains("1 bytes follow"));
    }
    SECTION("bad magic numbers")
    {
        CHECK_THROWS_WITH(decode_idx(idx(0x12340801, {1}, {0}), "m"), Contains("0x12340801") && Contains("two zero"));
        CHECK_THROWS_WITH(decode_idx(idx(0x00000d01, {1}, {0, 0, 0, 0}), "m"),
                          Contains("0x0000000d") && Contains("unsigned bytes"));
        CHECK_THROWS_WITH(decode_idx(idx(0x00000800, {}, {}), "m"), Contains("0 dimensions"));
        const auto im = dir.write("im", images), lb = dir.write("lb", labels);
        CHECK_THROWS_WITH(ad::nn::load_labelled_images<float>(lb, im),
                          Contains("lb") && Contains("0x00000801") && Contains("expected 0x00000803"));
        CHECK_THROWS_WITH(ad::nn::load_labelled_images<float>(im, im),
                          Contains("expected 0x00000801"));
    }
    SECTION("a shape whose size overflows")
    {
        CHECK_THROWS_WITH(decode_idx(idx(0x00000803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {}), "huge"),
                          Contains("huge") && Contains("too large"));
    }
    SECTION("image and label counts differ")
    {
        const auto im = dir.write("im", images), lb = dir.write("lb", idx(0x00000801, {3}, {1, 2, 3}));
        CHECK_THROWS_WITH(ad::nn::load_labelled_images<float>(im, lb),
                          Contains("2 images") && Contains("3 labels"));
    }
}

TEST_CASE("Fashion-MNIST test split: 10000 images of 28x28, 1000 of each class", "[idx][data]")
{
    if (!fs::exists(fashion_dir)) {
        WARN("Fashion-MNIST is not installed (" << fashion_dir << "); scripts/install-deps installs it");
        return;
    }
    const auto d = ad::nn::load_mnist_split<float>(fashion_dir, "t10k");
    REQUIRE(d.images.shape() == std::vector<std::size_t>{10000, 784});
    CHECK(d.rows == 28);
    std::map<std::int64_t, int> count;
    for (auto l : d.labels) ++count[l];
    CHECK(count.size() == 10);
    for (auto [label, n] : count) CHECK(n == 1000);
    CHECK(*std::min_element(d.images.begin(), d.images.end()) == 0.0f);
    CHECK(*std::max_element(d.images.begin(), d.images.end()) == 1.0f);

    SECTION("the real file cut short is reported as truncated")
    {
        std::ifstream in(fashion_dir + "/t10k-labels-idx1-ubyte.gz", std::ios::binary);
        Bytes gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        gz.resize(gz.size() / 2);
        CHECK_THROWS_WITH(ad::nn::decode_idx(gz, "half.gz"), Contains("half.gz") && Contains("truncated"));
    }
}
