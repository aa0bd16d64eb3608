#include "nn/idx.hpp"

#include "nn/file_io.hpp"

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
// enough that a corrupt header cannot exhaust memory. A gzip stream is inflated only up to the
// size its header declares, so a compression bomb stops there.
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

std::uint32_t be32(const std::uint8_t* p)
{
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

// The bytes of an IDX stream, plain or gzipped, read front to back: the header is read and
// checked before any memory is reserved for the data, and a gzip stream is inflated only up to
// the size its header declares (several gzip members one after another are read as one stream,
// as gunzip does).
class Source {
public:
    Source(const std::vector<std::uint8_t>& in, const std::string& name) : in_(in), name_(name)
    {
        gz_ = in.size() >= 2 && in[0] == 0x1f && in[1] == 0x8b;
        if (gz_ && inflateInit2(&zs_, 15 + 16) != Z_OK) fail(name, "zlib could not start inflating");
        zs_.next_in = const_cast<Bytef*>(in.data());
    }
    ~Source()
    {
        if (gz_) inflateEnd(&zs_);
    }
    Source(const Source&) = delete;
    Source& operator=(const Source&) = delete;

    // Up to n bytes into out; returns how many there were (fewer only at the end of the data).
    std::size_t read(std::uint8_t* out, std::size_t n)
    {
        if (!gz_) {
            const std::size_t k = std::min(n, in_.size() - pos_);
            std::copy_n(in_.data() + pos_, k, out);
            pos_ += k;
            return k;
        }
        std::size_t got = 0;
        while (got < n && !(ended_ && pos_ == in_.size())) {
            if (ended_) {  // another gzip member follows
                inflateReset(&zs_);
                ended_ = false;
            }
            const uInt in_chunk = uInt(std::min<std::size_t>(in_.size() - pos_, 1u << 30));
            zs_.next_in = const_cast<Bytef*>(in_.data() + pos_);
            zs_.avail_in = in_chunk;
            zs_.next_out = out + got;
            zs_.avail_out = uInt(std::min<std::size_t>(n - got, 1u << 30));
            const uInt room = zs_.avail_out;
            const int rc = inflate(&zs_, Z_NO_FLUSH);
            pos_ += in_chunk - zs_.avail_in;
            got += room - zs_.avail_out;
            if (rc == Z_STREAM_END) {
                ended_ = true;
                continue;
            }
            if (rc == Z_BUF_ERROR && room == zs_.avail_out)  // no progress with room left: input ran out
                fail(name_, "truncated: the gzip stream ends early (after " + std::to_string(total_ + got) +
                                " decompressed bytes)");
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                fail(name_, "corrupt gzip data (" + std::string(zs_.msg ? zs_.msg : "error " + std::to_string(rc)) + ")");
        }
        total_ += got;
        return got;
    }

    const char* kind() const { return gz_ ? "decompressed " : ""; }
    bool gzipped() const { return gz_; }
    // Input bytes not yet consumed.
    std::size_t input_left() const { return in_.size() - pos_; }

private:
    const std::vector<std::uint8_t>& in_;
    const std::string& name_;
    bool gz_ = false, ended_ = false;
    z_stream zs_{};
    std::size_t pos_ = 0, total_ = 0;
};

IdxArray parse(Source& src, const std::string& name)
{
    std::uint8_t head[4 + 4 * 255];
    const std::size_t got = src.read(head, 4);
    if (got < 4)
        fail(name, "too short for an IDX header (" + std::to_string(got) + " " + src.kind() +
                       "bytes, need at least 4)");
    IdxArray a;
    a.magic = be32(head);
    if (head[0] != 0 || head[1] != 0)
        fail(name, "bad magic number " + hex32(a.magic) + "; an IDX file starts with two zero bytes");
    if (head[2] != 0x08)
        fail(name, "magic number " + hex32(a.magic) + " has type code " + hex32(head[2]) +
                       "; only unsigned bytes (0x08) are supported");
    const std::size_t nd = head[3];
    if (nd == 0) fail(name, "magic number " + hex32(a.magic) + " declares 0 dimensions");
    const std::size_t header = 4 + 4 * nd;
    const std::size_t dims = src.read(head + 4, 4 * nd);
    if (dims < 4 * nd)
        fail(name, "truncated header: " + std::to_string(nd) + " dimensions need " + std::to_string(header) +
                       " bytes, the file has " + std::to_string(4 + dims));
    // Zeros count as ones in the bound: [0, 2^32-1, 2^32-1] holds nothing, but rows * cols of
    // such an images file would overflow.
    std::size_t count = 1, span = 1;
    for (std::size_t i = 0; i < nd; ++i) {
        const std::size_t d = be32(head + 4 + 4 * i);
        a.shape.push_back(d);
        const std::size_t e = d ? d : 1;
        if (span > max_decoded_bytes / e)
            fail(name, "the header declares shape " + shape_str(a.shape) + "..., too large: more than the " +
                           std::to_string(max_decoded_bytes) + " bytes an IDX file may hold");
        span *= e;
        count *= d;
    }
    // Before anything is allocated: the data must fit in what is left of the file (deflate
    // cannot expand data by more than about 1032:1).
    if (!src.gzipped() && count > src.input_left())
        fail(name, "truncated: the header declares shape " + shape_str(a.shape) + ", " + std::to_string(count) +
                       " bytes of data, but only " + std::to_string(src.input_left()) + " follow");
    if (src.gzipped() && count / 1032 > src.input_left())
        fail(name, "the header declares shape " + shape_str(a.shape) + ", " + std::to_string(count) +
                       " bytes of data, more than the " + std::to_string(src.input_left()) +
                       " compressed bytes left can inflate to");
    // The header is checked; now exactly the declared data, and one byte more to see whether
    // anything follows it.
    a.data.resize(count);
    const std::size_t have = src.read(a.data.data(), count);
    if (have < count)
        fail(name, "truncated: the header declares shape " + shape_str(a.shape) + ", " + std::to_string(count) +
                       " bytes of data, but only " + std::to_string(have) + " follow");
    std::uint8_t probe[4096];
    std::size_t extra = src.read(probe, sizeof probe);
    if (extra > 0) {
        // Count what follows only as far as a bound: a bomb's tail is not inflated to be measured.
        for (std::size_t k; extra < (std::size_t(1) << 20) && (k = src.read(probe, sizeof probe)) > 0;) extra += k;
        fail(name, (extra >= (std::size_t(1) << 20) ? "at least " : "") + std::to_string(extra) + " " + src.kind() +
                       "bytes follow the " + std::to_string(count) + " bytes of data that the header's shape " +
                       shape_str(a.shape) + " declares");
    }
    (void)header;
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
    Source src(bytes, name);
    return parse(src, name);
}

IdxArray read_idx(const std::string& path)
{
    // A gzip file of the largest allowed data set is smaller than the data; a plain one has a
    // header of at most 1024 bytes more.
    return decode_idx(read_regular_file(path, max_decoded_bytes + 1024, "IDX file"), path);
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
