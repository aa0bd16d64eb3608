// The readers and the atomic writer against hostile and careless input: decompression bombs in
// .npz and gzip IDX files (refused from their declared sizes, before the data are inflated),
// files that are not regular files (/dev/zero, a FIFO), and the saving rules: no temporaries
// left by a killed save, the umask, symbolic links, long file names, bounded error messages, and
// NaN, Inf or out-of-range values refused when a saved model is loaded.
#include "temp_dir.hpp"

#include "nn/serialize.hpp"
#include "nn/idx.hpp"
#include "nn/linear.hpp"
#include "nn/npz.hpp"
#include "nn/sequential.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xbuilder.hpp>

#include <zlib.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

using ad::Tensor;
using Bytes = std::vector<std::uint8_t>;
using Catch::Contains;
namespace nn = ad::nn;
namespace fs = std::filesystem;
using adtest::TempDir;

namespace {

void put16(Bytes& out, std::uint32_t v)
{
    out.push_back(std::uint8_t(v));
    out.push_back(std::uint8_t(v >> 8));
}
void put32(Bytes& out, std::uint32_t v)
{
    put16(out, v & 0xffff);
    put16(out, v >> 16);
}

// A .npy 1.0 header for a float64 array of `shape` (written by hand, as numpy writes it).
Bytes npy_header(const std::string& shape)
{
    std::string h = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }";
    h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
    h.push_back('\n');
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    put16(b, std::uint32_t(h.size()));
    b.insert(b.end(), h.begin(), h.end());
    return b;
}

// Raw deflate (no zlib or gzip wrapper, as zip entries hold it) of `head` followed by `zeros`
// zero bytes, fed in pieces so that no buffer of `zeros` bytes is ever made. gzip: a gzip
// wrapper instead (for IDX files).
Bytes deflate_zeros(const Bytes& head, std::uint64_t zeros, bool gzip = false)
{
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, gzip ? 15 + 16 : -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    Bytes out;
    std::vector<std::uint8_t> buf(1 << 16), zero(1 << 20, 0);
    auto feed = [&](const std::uint8_t* p, std::size_t n, int flush) {
        zs.next_in = const_cast<Bytef*>(p);
        zs.avail_in = uInt(n);
        do {
            zs.next_out = buf.data();
            zs.avail_out = uInt(buf.size());
            deflate(&zs, flush);
            out.insert(out.end(), buf.data(), buf.data() + (buf.size() - zs.avail_out));
        } while (zs.avail_out == 0);
    };
    feed(head.data(), head.size(), Z_NO_FLUSH);
    for (std::uint64_t left = zeros; left > 0;) {
        const std::size_t k = std::size_t(std::min<std::uint64_t>(left, zero.size()));
        feed(zero.data(), k, Z_NO_FLUSH);
        left -= k;
    }
    feed(nullptr, 0, Z_FINISH);
    deflateEnd(&zs);
    return out;
}

// A zip archive of one deflated entry, its sizes and CRC as given (they may lie).
Bytes zip_one(const std::string& entry, const Bytes& compressed, std::uint32_t usize, std::uint32_t crc)
{
    Bytes out, central;
    put32(out, 0x04034b50);
    for (std::uint32_t v : {20u, 0u, 8u, 0u, 0x21u}) put16(out, v);
    put32(out, crc);
    put32(out, std::uint32_t(compressed.size()));
    put32(out, usize);
    put16(out, std::uint32_t(entry.size()));
    put16(out, 0);
    out.insert(out.end(), entry.begin(), entry.end());
    out.insert(out.end(), compressed.begin(), compressed.end());
    put32(central, 0x02014b50);
    for (std::uint32_t v : {0x314u, 20u, 0u, 8u, 0u, 0x21u}) put16(central, v);
    put32(central, crc);
    put32(central, std::uint32_t(compressed.size()));
    put32(central, usize);
    put16(central, std::uint32_t(entry.size()));
    for (int i = 0; i < 4; ++i) put16(central, 0);
    put32(central, 0);
    put32(central, 0);  // local header at offset 0
    central.insert(central.end(), entry.begin(), entry.end());
    const auto cd_offset = std::uint32_t(out.size());
    out.insert(out.end(), central.begin(), central.end());
    put32(out, 0x06054b50);
    put16(out, 0);
    put16(out, 0);
    put16(out, 1);
    put16(out, 1);
    put32(out, std::uint32_t(central.size()));
    put32(out, cd_offset);
    put16(out, 0);
    return out;
}

// The process's peak resident memory so far, in MB.
double peak_rss_mb()
{
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) / 1024.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const ad::Error& e) {
        return e.what();
    }
    return "";
}

std::shared_ptr<nn::Sequential<float>> small_model()
{
    nn::Rng rng(3);
    auto m = std::make_shared<nn::Sequential<float>>();
    m->add(std::make_shared<nn::Linear<float>>(3, 4, rng));
    return m;
}

}  // namespace

TEST_CASE("an npz bomb is refused from its declared shape, before its data are inflated", "[npz][errors][limits]")
{
    TempDir dir;
    // (20000, 20000) float64: 3.2 GB declared. The entry holds a real deflate stream of the
    // header and 1 MB of zeros, padded to the size deflate would need for 3.2 GB, so the
    // directory's sizes are plausible; the reader must stop at the .npy header.
    const Bytes header = npy_header("(20000, 20000)");
    const std::uint64_t declared = header.size() + 20000ull * 20000ull * 8ull;
    Bytes stream = deflate_zeros(header, 1 << 20);
    stream.resize(std::size_t(declared / 1000), 0);
    const std::string path = dir.write("bomb.npz", zip_one("w.npy", stream, std::uint32_t(declared), 0));
    INFO("file of " << fs::file_size(path) << " bytes");

    const double rss0 = peak_rss_mb();
    const auto t0 = std::chrono::steady_clock::now();
    SECTION("read_npz: the documented 1 GiB cap")
    {
        const std::string msg = error_of([&] { nn::read_npz(path); });
        INFO(msg);
        CHECK_THAT(msg, Contains(path) && Contains("'w.npy'") && Contains("[20000, 20000]") &&
                            Contains("3200000000 bytes") && Contains("1073741824 bytes") &&
                            Contains("NpzReadOptions::max_bytes"));
    }
    SECTION("loading a saved model: compared with the model")
    {
        auto model = small_model();
        const Tensor<float> w0 = model->named_parameters()[0].second->value();
        const std::string msg = error_of([&] { nn::load(*model, path); });
        INFO(msg);
        CHECK_THAT(msg, Contains(path) && Contains("0.weight") && Contains("unexpected w [20000, 20000]"));
        CHECK((model->named_parameters()[0].second->value() == w0));
    }
    const double secs = seconds_since(t0), grown = peak_rss_mb() - rss0;
    INFO(secs << " s, peak memory grew by " << grown << " MB");
    CHECK(grown < 100);
    CHECK(secs < 5);
}

TEST_CASE("a real npz bomb (64 MB of zeros in 65 kB) stops at a lower cap, and loads within it", "[npz][errors][limits]")
{
    TempDir dir;
    const Bytes header = npy_header("(8388608,)");  // 2^23 float64 zeros
    const std::uint64_t usize = header.size() + (std::uint64_t(8) << 23);
    Bytes whole = header;
    whole.resize(std::size_t(usize), 0);
    const auto crc = std::uint32_t(crc32(crc32(0, nullptr, 0), whole.data(), uInt(whole.size())));
    const Bytes stream = deflate_zeros(header, std::uint64_t(8) << 23);
    const std::string path = dir.write("zeros.npz", zip_one("z.npy", stream, std::uint32_t(usize), crc));
    INFO("file of " << fs::file_size(path) << " bytes");

    nn::NpzReadOptions small;
    small.max_bytes = 1 << 20;
    CHECK_THROWS_WITH(nn::read_npz(path, small), Contains(path) && Contains("'z.npy'") &&
                                                     Contains("67108864 bytes") && Contains("1048576 bytes"));
    const auto archive = nn::read_npz(path);  // within the default cap: a valid file
    REQUIRE(archive.size() == 1);
    CHECK(archive[0].second.data.size() == (std::size_t(1) << 23));
    CHECK(archive[0].second.data.back() == 0.0);
}

TEST_CASE("an npz member whose data run past its declared size is refused one byte past it", "[npz][errors][limits]")
{
    TempDir dir;
    // The directory (local header and central entry alike) declares the header and 16 bytes, with
    // their CRC; the deflate stream holds the header and 64 MB of zeros.
    const Bytes header = npy_header("(2,)");
    Bytes declared = header;
    declared.resize(header.size() + 16, 0);
    const auto crc = std::uint32_t(crc32(crc32(0, nullptr, 0), declared.data(), uInt(declared.size())));
    const Bytes stream = deflate_zeros(header, std::uint64_t(64) << 20);
    const std::string path = dir.write("long.npz", zip_one("w.npy", stream, std::uint32_t(declared.size()), crc));
    INFO("file of " << fs::file_size(path) << " bytes");

    const double rss0 = peak_rss_mb();
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = error_of([&] { nn::read_npz(path); });
    const double secs = seconds_since(t0), grown = peak_rss_mb() - rss0;
    INFO(msg << "\n" << secs << " s, peak memory grew by " << grown << " MB");
    CHECK_THAT(msg, Contains(path) && Contains("'w.npy'") &&
                        Contains("its data run past the " + std::to_string(declared.size()) + " bytes the directory declares"));
    CHECK(grown < 50);
    CHECK(secs < 1);
}

TEST_CASE("a gzip IDX file is inflated only as far as its header declares", "[idx][errors][limits]")
{
    TempDir dir;
    // Labels: magic 0x00000801, shape [10], then 200 MB of zeros where 10 bytes belong.
    const Bytes head = {0, 0, 8, 1, 0, 0, 0, 10};
    const std::string bomb = dir.write("bomb-idx1-ubyte.gz", deflate_zeros(head, 200u << 20, true));
    INFO("file of " << fs::file_size(bomb) << " bytes");
    const double rss0 = peak_rss_mb();
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = error_of([&] { nn::read_idx(bomb); });
    const double secs = seconds_since(t0), grown = peak_rss_mb() - rss0;
    INFO(msg << "\n" << secs << " s, peak memory grew by " << grown << " MB");
    CHECK_THAT(msg, Contains(bomb) && Contains("at least 1048576 decompressed bytes follow the 10 bytes of data") &&
                        Contains("[10]"));
    CHECK(grown < 50);
    CHECK(secs < 5);

    // A header declaring more than the rest of the file could inflate to: refused before any
    // memory is reserved for it.
    const Bytes huge = {0, 0, 8, 3, 0, 0x0f, 0x42, 0x40, 0, 0, 0, 28, 0, 0, 0, 28};  // [1000000, 28, 28]
    const std::string liar = dir.write("liar-idx3-ubyte.gz", deflate_zeros(huge, 1000, true));
    CHECK_THROWS_WITH(nn::read_idx(liar), Contains(liar) && Contains("[1000000, 28, 28]") &&
                                              Contains("784000000 bytes of data, more than the") &&
                                              Contains("compressed bytes left can inflate to"));
}

TEST_CASE("readers refuse anything but a regular file, without reading or waiting", "[npz][idx][errors][limits]")
{
    SECTION("/dev/zero, which never ends")
    {
        CHECK_THROWS_WITH(nn::read_npz("/dev/zero"), Contains("/dev/zero") && Contains("not a regular file") &&
                                                         Contains("a character device"));
        CHECK_THROWS_WITH(nn::read_idx("/dev/zero"), Contains("/dev/zero") && Contains("not a regular file"));
        auto model = small_model();
        CHECK_THROWS_WITH(nn::load(*model, "/dev/zero"), Contains("/dev/zero") && Contains("not a regular file"));
    }
    SECTION("a FIFO with no writer, which would block an open() forever")
    {
        TempDir dir;
        const std::string fifo = dir.file("pipe.npz");
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        const auto t0 = std::chrono::steady_clock::now();
        CHECK_THROWS_WITH(nn::read_npz(fifo), Contains(fifo) && Contains("a FIFO"));
        CHECK_THROWS_WITH(nn::read_idx(fifo), Contains(fifo) && Contains("a FIFO"));
        CHECK(seconds_since(t0) < 5);
    }
}

TEST_CASE("a save killed before its rename leaves a temporary that the next save removes", "[npz][atomic]")
{
    TempDir dir;
    const std::string path = dir.file("model.npz");
    // The temporary of a save whose process was killed: a pid that has exited.
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    REQUIRE(child > 0);
    ::waitpid(child, nullptr, 0);
    const std::string stale = ".model.npz.tmp-" + std::to_string(child) + "-0badc0de";
    const std::string live = ".model.npz.tmp-" + std::to_string(::getpid()) + "-00000001";  // a save under way
    const std::string other = ".other.npz.tmp-" + std::to_string(child) + "-0badc0de";    // another file's
    for (const auto& n : {stale, live, other}) std::ofstream(dir.file(n)) << "partial";

    nn::save_npz<double>(path, {{"w", Tensor<double>{1.0, 2.0}}});
    CHECK(dir.entries() == std::vector<std::string>{live, other, "model.npz"});
}

TEST_CASE("saved files get mode 0666 less the umask, and an existing file keeps its mode", "[npz][atomic]")
{
    TempDir dir;
    const std::vector<std::pair<std::string, Tensor<double>>> arrays = {{"w", Tensor<double>{1.0}}};
    auto mode = [&](const std::string& p) {
        struct stat st {};
        REQUIRE(::stat(p.c_str(), &st) == 0);
        return st.st_mode & 0777;
    };
    const mode_t old = ::umask(077);
    nn::save_npz(dir.file("private.npz"), arrays);
    ::umask(002);
    nn::save_npz(dir.file("group.npz"), arrays);
    ::umask(old);
    CHECK(mode(dir.file("private.npz")) == 0600);
    CHECK(mode(dir.file("group.npz")) == 0664);
    REQUIRE(::chmod(dir.file("group.npz").c_str(), 0640) == 0);
    nn::save_npz(dir.file("group.npz"), arrays);
    CHECK(mode(dir.file("group.npz")) == 0640);
}

TEST_CASE("saving through a symbolic link replaces the link's target and keeps the link", "[npz][atomic]")
{
    TempDir dir;
    fs::create_directory(dir.file("runs"));
    const std::string target = dir.file("runs/real.npz");
    nn::save_npz<double>(target, {{"w", Tensor<double>{1.0}}});
    fs::create_symlink("runs/real.npz", dir.file("latest.npz"));  // relative, as ln -s makes them
    nn::save_npz<double>(dir.file("latest.npz"), {{"w", Tensor<double>{2.0}}});
    CHECK(fs::is_symlink(fs::symlink_status(dir.file("latest.npz"))));
    CHECK(nn::read_npz(target)[0].second.data == std::vector<double>{2.0});
    CHECK(dir.entries() == std::vector<std::string>{"latest.npz", "runs"});

    fs::create_symlink("runs/new.npz", dir.file("dangling.npz"));  // a link to a file not yet there
    nn::save_npz<double>(dir.file("dangling.npz"), {{"w", Tensor<double>{3.0}}});
    CHECK(fs::is_symlink(fs::symlink_status(dir.file("dangling.npz"))));
    CHECK(nn::read_npz(dir.file("runs/new.npz"))[0].second.data == std::vector<double>{3.0});
}

TEST_CASE("a 250-character file name saves: the temporary name fits NAME_MAX", "[npz][atomic]")
{
    TempDir dir;
    const std::string name = std::string(246, 'n') + ".npz";
    nn::save_npz<double>(dir.file(name), {{"w", Tensor<double>{1.0}}});
    nn::save_npz<double>(dir.file(name), {{"w", Tensor<double>{2.0}}});  // and replaces it
    CHECK(dir.entries() == std::vector<std::string>{name});
    CHECK(nn::read_npz(dir.file(name))[0].second.data == std::vector<double>{2.0});
}

TEST_CASE("a saved model with 10,000 stray arrays gets an error of bounded length", "[serialize][errors]")
{
    TempDir dir;
    auto model = small_model();
    const std::string path = dir.file("many.npz");
    nn::NpzWriter w;
    for (const auto& [name, p] : model->named_parameters()) w.add(name, p->value());
    for (int i = 0; i < 10000; ++i) w.add_scalar("stray_array_number_" + std::to_string(i), 0.0);
    w.write(path);
    const std::string msg = error_of([&] { nn::load(*model, path); });
    INFO(msg.substr(0, 2000));
    CHECK_THAT(msg, Contains(path) && Contains("unexpected stray_array_number_0 []") &&
                        Contains("unexpected stray_array_number_9 []") && Contains("... and 9,990 more"));
    CHECK(msg.size() < 2000);
}

TEST_CASE("NaN, Inf and values out of the model's range are refused on loading, by array and position",
          "[serialize][errors]")
{
    TempDir dir;
    auto model = small_model();  // float: 0.weight [4, 3], 0.bias [4]
    const Tensor<float> w0 = model->named_parameters()[0].second->value();
    auto file_with = [&](std::size_t row, std::size_t col, double v) {
        Tensor<double> w = xt::zeros<double>({4, 3});
        w(row, col) = v;
        const std::string path = dir.file("bad.npz");
        nn::save_npz<double>(path, {{"0.weight", w}, {"0.bias", Tensor<double>(xt::zeros<double>({4}))}});
        return path;
    };
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const std::string p1 = file_with(1, 2, nan);
    CHECK_THROWS_WITH(nn::load(*model, p1), Contains(p1) && Contains("0.weight holds nan at [1, 2]"));
    const std::string p2 = file_with(3, 0, -inf);
    CHECK_THROWS_WITH(nn::load(*model, p2), Contains("0.weight holds -inf at [3, 0]"));
    const std::string p3 = file_with(0, 1, 1e300);
    CHECK_THROWS_WITH(nn::load(*model, p3), Contains("0.weight holds 1.0000000000000001e+300 at [0, 1]") &&
                                                Contains("outside the range of float"));
    CHECK((model->named_parameters()[0].second->value() == w0));  // nothing was loaded

    // 1e300 is a double: a double model takes it.
    nn::Rng rng(3);
    nn::Sequential<double> dmodel;
    dmodel.add(std::make_shared<nn::Linear<double>>(3, 4, rng));
    nn::load(dmodel, p3);
    CHECK(dmodel.named_parameters()[0].second->value()(0, 1) == 1e300);
}
