#include "nn/idx.hpp"

#include <zlib.h>

#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>

namespace ad::nn {

namespace {

constexpr std::uint32_t images_magic = 0x00000803;
constexpr std::uint32_t labels_magic = 0x00000801;
// Far above any IDX data set of this kind (Fashion-MNIST's largest file is 47 MB), and low
// enough that a corrupt header or a compression bomb cannot exhaust memory.
constexpr std::size_t max_decoded_bytes = std::size_t(1) << 31;

std::string hex32(std::uint32_t v)
{
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

[[noreturn]] void fail(const std::string& name, const std::string& what)
{
    throw Error("IDX file " + name + ": " + what);
}

// gzip (windowBits 15 + 16); several members one after another are read as one stream, as gunzip does.
std::vector<std::uint8_t> gunzip(const std::vector<std::uint8_t>& in, const std::string& name)
{
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) fail(name, "zlib could not start inflating");
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    std::vector<std::uint8_t> out(std::max<std::size_t>(in.size() * 4, 1 << 16));
    std::size_t produced = 0;
    int rc = Z_OK;
    for (;;) {
        if (produced == out.size()) {
            if (out.size() >= max_decoded_bytes) {
                inflateEnd(&zs);
                fail(name, "decompresses to more than " + std::to_string(max_decoded_bytes) + " bytes");
            }
            out.resize(std::min(out.size() * 2, max_decoded_bytes));
        }
        zs.next_out = out.data() + produced;
        zs.avail_out = static_cast<uInt>(out.size() - produced);
        rc = inflate(&zs, Z_NO_FLUSH);
        produced = out.size() - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            inflateReset(&zs);  // another gzip member follows
            continue;
        }
        if (rc == Z_BUF_ERROR && zs.avail_out != 0) {  // no progress with room left: input ran out
            inflateEnd(&zs);
            fail(name, "truncated: the gzip stream ends early (after " + std::to_string(produced) +
                           " decompressed bytes)");
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            const std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
            inflateEnd(&zs);
            fail(name, "corrupt gzip data (" + msg + ")");
        }
    }
    inflateEnd(&zs);
    out.resize(produced);
    return out;
}

std::uint32_t be32(const std::uint8_t* p)
{
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

IdxArray parse(const std::vector<std::uint8_t>& b, const std::string& name)
{
    if (b.size() < 4)
        fail(name, "too short for an IDX header (" + std::to_string(b.size()) + " bytes, need at least 4)");
    IdxArray a;
    a.magic = be32(b.data());
    if (b[0] != 0 || b[1] != 0)
        fail(name, "bad magic number " + hex32(a.magic) + "; an IDX file starts with two zero bytes");
    if (b[2] != 0x08)
        fail(name, "magic number " + hex32(a.magic) + " has type code " + hex32(b[2]) +
                       "; only unsigned bytes (0x08) are supported");
    const std::size_t nd = b[3];
    if (nd == 0) fail(name, "magic number " + hex32(a.magic) + " declares 0 dimensions");
    const std::size_t header = 4 + 4 * nd;
    if (b.size() < header)
        fail(name, "truncated header: " + std::to_string(nd) + " dimensions need " + std::to_string(header) +
                       " bytes, the file has " + std::to_string(b.size()));
    // Zeros count as ones in the bound: [0, 2^32-1, 2^32-1] holds nothing, but rows * cols of
    // such an images file would overflow.
    std::size_t count = 1, span = 1;
    for (std::size_t i = 0; i < nd; ++i) {
        const std::size_t d = be32(b.data() + 4 + 4 * i);
        a.shape.push_back(d);
        const std::size_t e = d ? d : 1;
        if (span > max_decoded_bytes / e) fail(name, "shape " + shape_str(a.shape) + "... is too large");
        span *= e;
        count *= d;
    }
    const std::size_t have = b.size() - header;
    if (have < count)
        fail(name, "truncated: the header declares shape " + shape_str(a.shape) + ", " + std::to_string(count) +
                       " bytes of data, but only " + std::to_string(have) + " follow");
    if (have > count)
        fail(name, std::to_string(have - count) + " bytes follow the " + std::to_string(count) +
                       " bytes of data that the header's shape " + shape_str(a.shape) + " declares");
    a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(header), b.end());
    return a;
}

std::string existing(const std::string& base, const char* fn)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::exists(base + ".gz", ec)) return base + ".gz";
    if (fs::exists(base, ec)) return base;
    throw Error(std::string(fn) + ": no file " + base + ".gz (nor " + base + ")");
}

}  // namespace

IdxArray decode_idx(const std::vector<std::uint8_t>& bytes, const std::string& name)
{
    if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return parse(gunzip(bytes, name), name);
    return parse(bytes, name);
}

IdxArray read_idx(const std::string& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (!fs::exists(st)) throw Error("read_idx: no such file: " + path);
    if (fs::is_directory(st)) throw Error("read_idx: " + path + " is a directory; expected an IDX file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("read_idx: cannot open " + path);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error("read_idx: error while reading " + path);
    return decode_idx(bytes, path);
}

template <class T>
LabelledImages<T> load_labelled_images(const std::string& images_path, const std::string& labels_path,
                                       std::size_t limit)
{
    IdxArray im = read_idx(images_path);
    if (im.magic != images_magic || im.shape.size() != 3)
        fail(images_path, "magic number " + hex32(im.magic) + ", expected " + hex32(images_magic) +
                              " (unsigned-byte images of shape [n, rows, cols])");
    IdxArray lb = read_idx(labels_path);
    if (lb.magic != labels_magic || lb.shape.size() != 1)
        fail(labels_path, "magic number " + hex32(lb.magic) + ", expected " + hex32(labels_magic) +
                              " (unsigned-byte labels of shape [n])");
    if (im.shape[0] != lb.shape[0])
        throw Error("load_labelled_images: " + images_path + " holds " + std::to_string(im.shape[0]) +
                    " images but " + labels_path + " holds " + std::to_string(lb.shape[0]) + " labels");

    LabelledImages<T> d;
    d.rows = im.shape[1];
    d.cols = im.shape[2];
    const std::size_t n = limit ? std::min(limit, im.shape[0]) : im.shape[0];
    const std::size_t pixels = d.rows * d.cols;
    d.images = Tensor<T>::from_shape({n, pixels});
    for (std::size_t i = 0; i < n * pixels; ++i) d.images.data()[i] = T(im.data[i]) / T(255);
    d.labels.assign(lb.data.begin(), lb.data.begin() + static_cast<std::ptrdiff_t>(n));
    return d;
}

template <class T>
LabelledImages<T> load_mnist_split(const std::string& dir, const std::string& split, std::size_t limit)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error("load_mnist_split: data directory " + dir + " does not exist");
    const std::string base = (fs::path(dir) / split).string();
    const std::string images = existing(base + "-images-idx3-ubyte", "load_mnist_split");
    const std::string labels = existing(base + "-labels-idx1-ubyte", "load_mnist_split");
    return load_labelled_images<T>(images, labels, limit);
}

template struct LabelledImages<float>;
template struct LabelledImages<double>;
template LabelledImages<float> load_labelled_images<float>(const std::string&, const std::string&, std::size_t);
template LabelledImages<double> load_labelled_images<double>(const std::string&, const std::string&, std::size_t);
template LabelledImages<float> load_mnist_split<float>(const std::string&, const std::string&, std::size_t);
template LabelledImages<double> load_mnist_split<double>(const std::string&, const std::string&, std::size_t);

}  // namespace ad::nn
