#include "nn/npz.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xmanipulation.hpp>

#include <zip.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npz.cpp copies '<f4'/'<f8' elements as they are in memory: it needs a little-endian host"
#endif

namespace ad::nn {

namespace {

constexpr std::size_t max_dims = 32;
// Deflate cannot expand data by more than about 1032:1; a larger claim is a corrupt header (or
// a bomb), refused before any memory is reserved for it.
constexpr std::uint64_t max_deflate_ratio = 1032;
// numpy writes headers of a few hundred bytes (and itself refuses more than 10000 by default).
constexpr std::size_t max_header_bytes = std::size_t(1) << 20;
// Room for the zip structure and the .npy headers around the arrays' data.
constexpr std::uint64_t max_file_overhead = std::uint64_t(64) << 20;
// The end-of-central-directory record alone, as an archive without entries is written.
constexpr std::uint8_t empty_zip[22] = {'P', 'K', 5, 6};

[[noreturn]] void fail(const std::string& file, const std::string& what)
{
    throw Error("npz file " + file + ": " + what);
}

// libzip's text for an error ("Not a zip archive", "CRC error"), and the error released.
std::string zip_message(zip_error_t& error)
{
    const std::string text = zip_error_strerror(&error);
    zip_error_fini(&error);
    return text;
}

void put16(std::vector<std::uint8_t>& out, std::uint32_t v)
{
    out.push_back(std::uint8_t(v));
    out.push_back(std::uint8_t(v >> 8));
}

// --- .npy header: a Python dict literal with exactly the keys descr, fortran_order, shape ---

struct NpyHeader {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
};

class HeaderParser {
public:
    HeaderParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

    NpyHeader parse()
    {
        NpyHeader h;
        bool seen_descr = false, seen_order = false, seen_shape = false;
        expect('{');
        for (;;) {
            skip_ws();
            if (peek() == '}') break;
            const std::string key = quoted();
            expect(':');
            if (key == "descr") {
                check_once(seen_descr, key);
                h.descr = quoted();
            } else if (key == "fortran_order") {
                check_once(seen_order, key);
                h.fortran_order = boolean();
            } else if (key == "shape") {
                check_once(seen_shape, key);
                h.shape = tuple();
            } else {
                bad("unexpected key '" + key + "'");
            }
            skip_ws();
            if (peek() == ',') {
                ++i_;
                continue;
            }
            if (peek() != '}') bad("expected ',' or '}'");
        }
        ++i_;  // '}'
        skip_ws();
        if (i_ != s_.size()) bad("text after the closing '}'");
        if (!seen_descr || !seen_order || !seen_shape)
            bad("the keys 'descr', 'fortran_order' and 'shape' must all be present");
        return h;
    }

private:
    [[noreturn]] void bad(const std::string& what) const
    {
        throw Error(where_ + ": bad .npy header (" + what + " at character " + std::to_string(i_) + "): " + s_);
    }
    void check_once(bool& seen, const std::string& key) const
    {
        if (seen) bad("key '" + key + "' repeated");
        seen = true;
    }
    char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
    void skip_ws()
    {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    void expect(char c)
    {
        skip_ws();
        if (peek() != c) bad(std::string("expected '") + c + "'");
        ++i_;
    }
    std::string quoted()
    {
        skip_ws();
        const char q = peek();
        if (q != '\'' && q != '"') bad("expected a quoted string");
        const std::size_t start = ++i_;
        while (i_ < s_.size() && s_[i_] != q) {
            if (s_[i_] == '\\') bad("escapes in strings are not supported");
            ++i_;
        }
        if (i_ == s_.size()) bad("unterminated string");
        return s_.substr(start, i_++ - start);
    }
    bool boolean()
    {
        skip_ws();
        if (s_.compare(i_, 4, "True") == 0) {
            i_ += 4;
            return true;
        }
        if (s_.compare(i_, 5, "False") == 0) {
            i_ += 5;
            return false;
        }
        bad("expected True or False");
    }
    Shape tuple()
    {
        Shape shape;
        expect('(');
        for (;;) {
            skip_ws();
            if (peek() == ')') break;
            if (peek() < '0' || peek() > '9') bad("expected a non-negative integer in the shape");
            std::uint64_t v = 0;
            while (peek() >= '0' && peek() <= '9') {
                v = v * 10 + std::uint64_t(peek() - '0');
                if (v > (std::uint64_t(1) << 48)) bad("dimension too large");
                ++i_;
            }
            shape.push_back(std::size_t(v));
            if (shape.size() > max_dims) bad("more than " + std::to_string(max_dims) + " dimensions");
            skip_ws();
            if (peek() == ',') {
                ++i_;
                continue;
            }
            if (peek() != ')') bad("expected ',' or ')' in the shape");
        }
        ++i_;
        return shape;
    }

    const std::string& s_;
    const std::string& where_;
    std::size_t i_ = 0;
};

std::string shape_tuple(const Shape& shape)
{
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    if (shape.size() == 1) s += ",";
    return s + ")";
}

template <class E>
std::vector<std::uint8_t> encode_npy(const Tensor<E>& t, const char* descr)
{
    const Shape shape(t.shape().begin(), t.shape().end());
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                         shape_tuple(shape) + ", }";
    // Magic (6) + version (2) + length (2) + header, padded so the data starts 64-byte aligned.
    const std::size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header.push_back('\n');
    if (header.size() > 0xffff) throw Error("npz: .npy header too long for shape " + shape_str(shape));

    std::vector<std::uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    put16(out, std::uint32_t(header.size()));
    out.insert(out.end(), header.begin(), header.end());
    // Copy through a C-ordered container: `t` is one already, but its strides are not relied on.
    const std::size_t at = out.size();
    out.resize(at + t.size() * sizeof(E));
    std::size_t k = 0;
    for (const E& v : t) std::memcpy(out.data() + at + sizeof(E) * k++, &v, sizeof(E));
    return out;
}

}  // namespace

// --- reading ---

namespace {

// The bytes of one .npy, read front to back: from memory (decode_npy) or from an archive member
// through libzip, which inflates only as much as each read asks for. So nothing is inflated
// before the .npy header has been checked, and no more than the member's declared size (and one
// byte to find that the data end there).
class EntryStream {
public:
    EntryStream(const std::uint8_t* bytes, std::uint64_t size, const std::string& where)
        : bytes_(bytes), size_(size), where_(where)
    {
    }
    EntryStream(zip_file_t* member, std::uint64_t size, const std::string& where)
        : member_(member), size_(size), where_(where)
    {
    }
    ~EntryStream()
    {
        if (member_) zip_fclose(member_);
    }
    EntryStream(const EntryStream&) = delete;
    EntryStream& operator=(const EntryStream&) = delete;

    std::uint64_t size() const { return size_; }
    std::uint64_t remaining() const { return size_ - done_; }

    // Exactly n more bytes, or ad::Error saying the entry ends before them.
    void read(std::uint8_t* out, std::size_t n, const char* what)
    {
        if (n > remaining())
            throw Error(where_ + ": truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                        std::to_string(done_) + ", the entry has " + std::to_string(size_));
        if (!member_) {
            std::memcpy(out, bytes_ + done_, n);
        } else {
            for (std::size_t got = 0; got < n;) {
                const zip_int64_t r = zip_fread(member_, out + got, n - got);
                if (r < 0) throw Error(where_ + ": " + member_error(done_ + got));
                if (r == 0)
                    throw Error(where_ + ": truncated or corrupt: its data end after " + std::to_string(done_ + got) +
                                " bytes, the directory says " + std::to_string(size_));
                got += std::size_t(r);
            }
        }
        done_ += n;
    }

    // After the last byte of a member: its data must end here. libzip compares the CRC-32 (and
    // the size) with the directory's when it reads the end.
    void finish()
    {
        std::uint8_t extra;
        const zip_int64_t r = zip_fread(member_, &extra, 1);
        if (r > 0)
            throw Error(where_ + ": corrupt: its data run past the " + std::to_string(size_) +
                        " bytes the directory declares");
        if (r < 0) throw Error(where_ + ": " + member_error(done_));
    }

private:
    std::string member_error(std::uint64_t at) const
    {
        zip_error_t* e = zip_file_get_error(member_);
        const std::string text = zip_error_strerror(e);
        if (zip_error_code_zip(e) == ZIP_ER_CRC) return "CRC-32 mismatch: corrupt data (libzip: " + text + ")";
        return "corrupt data after " + std::to_string(at) + " bytes (libzip: " + text + ")";
    }

    const std::uint8_t* bytes_ = nullptr;
    zip_file_t* member_ = nullptr;
    std::uint64_t size_;
    const std::string& where_;
    std::uint64_t done_ = 0;
};

// One .npy from a stream. `budget` is what is left of NpzReadOptions::max_bytes; the filter may
// skip the data (the array then has no data, and its bytes are neither inflated nor checked).
NpyArray decode_npy_stream(EntryStream& s, const std::string& where, const std::string& name,
                           const NpzReadOptions& options, std::uint64_t& budget, bool& skipped)
{
    static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    std::uint8_t pre[12];
    if (s.size() < 10) throw Error(where + ": not a .npy array (no \\x93NUMPY magic)");
    s.read(pre, 10, "the .npy magic");
    if (std::memcmp(pre, magic, 6) != 0) throw Error(where + ": not a .npy array (no \\x93NUMPY magic)");
    const unsigned major = pre[6], minor = pre[7];
    std::size_t header_len, header_start;
    if (major == 1) {
        header_len = std::size_t(pre[8]) | std::size_t(pre[9]) << 8;
        header_start = 10;
    } else if (major == 2 || major == 3) {
        if (s.remaining() < 2) throw Error(where + ": .npy file truncated in its header length");
        s.read(pre + 10, 2, "the .npy header length");
        header_len = std::size_t(pre[8]) | std::size_t(pre[9]) << 8 | std::size_t(pre[10]) << 16 |
                     std::size_t(pre[11]) << 24;
        header_start = 12;
    } else {
        throw Error(where + ": .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                    " is not supported (1.0, 2.0 and 3.0 are)");
    }
    if (header_len > max_header_bytes)
        throw Error(where + ": .npy header of " + std::to_string(header_len) + " bytes is longer than the " +
                    std::to_string(max_header_bytes) + " a header may have");
    if (header_len > s.remaining())
        throw Error(where + ": .npy header of " + std::to_string(header_len) + " bytes runs past the end (" +
                    std::to_string(s.size()) + " bytes in all)");
    std::string text(header_len, '\0');
    s.read(reinterpret_cast<std::uint8_t*>(text.data()), header_len, "the .npy header");
    const NpyHeader h = HeaderParser(text, where).parse();

    std::size_t item;
    const bool integer = h.descr == "<i8";  // PyTorch's int64 buffers (BatchNorm's num_batches_tracked)
    if (h.descr == "<f8" || integer)
        item = 8;
    else if (h.descr == "<f4")
        item = 4;
    else
        throw Error(where + ": dtype '" + h.descr +
                    "' is not supported (only little-endian float32 '<f4', float64 '<f8' and int64 '<i8')");

    // The strides of an array of this shape multiply its dimensions with zeros counted as ones:
    // (0, 2^48, 2^48) holds nothing, yet its strides would overflow.
    std::uint64_t count = 1, span = 1;
    for (std::size_t d : h.shape) {
        const std::uint64_t e = d ? d : 1;
        if (span > (std::uint64_t(1) << 60) / e)
            throw Error(where + ": shape " + shape_str(h.shape) + " is too large");
        span *= e;
        count *= d;
    }
    const std::uint64_t have = s.remaining();
    if (have != count * item)
        throw Error(where + ": shape " + shape_str(h.shape) + " of " + h.descr + " needs " +
                    std::to_string(count * item) + " bytes of data, the array has " + std::to_string(have));
    (void)header_start;

    NpyArray a;
    a.dtype = h.descr;
    a.shape = h.shape;
    if (options.filter && !options.filter(name, a.dtype, a.shape)) {
        a.has_data = false;
        skipped = true;
        return a;
    }
    // Compared before anything is allocated or inflated for the data.
    if (count * item > budget)
        throw Error(where + ": shape " + shape_str(h.shape) + " of " + h.descr + " declares " +
                    std::to_string(count * item) + " bytes of data; with the arrays before it that is more than the " +
                    std::to_string(options.max_bytes) + " bytes a read may hold (NpzReadOptions::max_bytes)");
    budget -= count * item;

    a.data.resize(std::size_t(count));
    std::uint8_t chunk[1 << 16];
    const std::size_t per_chunk = sizeof chunk / item;
    for (std::size_t i = 0; i < a.data.size();) {
        const std::size_t k = std::min(per_chunk, a.data.size() - i);
        s.read(chunk, k * item, "the array data");
        for (std::size_t j = 0; j < k; ++j, ++i) {
            if (integer) {
                std::int64_t v;
                std::memcpy(&v, chunk + 8 * j, 8);
                // Beyond 2^53 a double would round the integer: refused rather than changed.
                if (v > (std::int64_t(1) << 53) || v < -(std::int64_t(1) << 53))
                    throw Error(where + ": int64 element " + std::to_string(v) + " at flat index " + std::to_string(i) +
                                " is beyond 2^53, so float64 cannot hold it exactly");
                a.data[i] = double(v);
            } else if (item == 8) {
                std::memcpy(&a.data[i], chunk + 8 * j, 8);
            } else {
                float f;
                std::memcpy(&f, chunk + 4 * j, 4);
                a.data[i] = f;
            }
        }
    }
    if (h.fortran_order && h.shape.size() > 1) {
        // Column-major data is the C-order array of the reversed shape, transposed.
        Shape reversed(h.shape.rbegin(), h.shape.rend());
        auto f = xt::adapt(a.data, reversed);
        Tensor<double> c = xt::transpose(f);
        a.data.assign(c.begin(), c.end());
    }
    return a;
}

}  // namespace

NpyArray decode_npy(const std::vector<std::uint8_t>& bytes, const std::string& where, const NpzReadOptions& options)
{
    EntryStream s(bytes.data(), bytes.size(), where);
    std::uint64_t budget = options.max_bytes;
    bool skipped = false;
    return decode_npy_stream(s, where, where, options, budget, skipped);
}

NpzArchive decode_npz(const std::vector<std::uint8_t>& bytes, const std::string& file, const NpzReadOptions& options)
{
    // libzip opens an empty buffer as an empty archive; anything shorter than an end record is
    // refused here.
    if (bytes.size() < sizeof empty_zip)
        fail(file, "too short to be a zip archive (" + std::to_string(bytes.size()) + " bytes)");

    // libzip reads the container in place (nothing is copied). ZIP_CHECKCONS adds its
    // consistency checks: each local header must agree with its central directory entry, the
    // entries must lie before the central directory, which must end at the end record, nothing
    // may follow the archive's comment, and no two entries may have the same name.
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (!source) fail(file, "cannot read it (libzip: " + zip_message(error) + ")");
    zip_t* zip = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
    if (!zip) {
        zip_source_free(source);
        const int code = zip_error_code_zip(&error);
        const char* what = code == ZIP_ER_NOZIP   ? "not a zip archive"
                           : code == ZIP_ER_EXISTS ? "two entries have the same name"
                                                   : "corrupt zip archive";
        fail(file, std::string(what) + " (libzip: " + zip_message(error) + ")");
    }
    struct Discard {
        zip_t* zip;
        ~Discard() { zip_discard(zip); }
    } discard{zip};

    std::uint64_t budget = options.max_bytes;
    NpzArchive out;
    const zip_int64_t entries = zip_get_num_entries(zip, 0);
    for (zip_int64_t i = 0; i < entries; ++i) {
        // The directory's declarations, checked before anything is inflated.
        zip_stat_t st;
        zip_stat_init(&st);
        constexpr zip_uint64_t needed = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD |
                                        ZIP_STAT_ENCRYPTION_METHOD;
        if (zip_stat_index(zip, zip_uint64_t(i), ZIP_FL_ENC_RAW, &st) != 0 || (st.valid & needed) != needed)
            fail(file, "corrupt central directory entry " + std::to_string(i) + " (libzip: " + zip_strerror(zip) + ")");
        const std::string entry = st.name;
        const std::string where = "npz file " + file + ", entry '" + entry + "'";
        if (st.encryption_method != ZIP_EM_NONE) throw Error(where + ": encrypted entries are not supported");
        if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE)
            throw Error(where + ": compression method " + std::to_string(st.comp_method) +
                        " is not supported (only stored and deflated)");
        if (entry.size() < 5 || entry.compare(entry.size() - 4, 4, ".npy") != 0)
            throw Error(where + ": not a .npy entry (an .npz holds only <name>.npy files)");
        const std::string name = entry.substr(0, entry.size() - 4);
        const std::uint64_t usize = st.size, csize = st.comp_size;
        if (csize > bytes.size())
            throw Error(where + ": truncated or corrupt: " + std::to_string(csize) +
                        " compressed bytes declared in a file of " + std::to_string(bytes.size()));
        if (st.comp_method == ZIP_CM_STORE && csize != usize)
            throw Error(where + ": stored entry with compressed size " + std::to_string(csize) + " != size " +
                        std::to_string(usize));
        if (st.comp_method == ZIP_CM_DEFLATE && usize > csize * max_deflate_ratio + 64)
            throw Error(where + ": corrupt: claims " + std::to_string(usize) + " bytes from " + std::to_string(csize) +
                        " compressed bytes, more than deflate can produce");

        zip_file_t* member = zip_fopen_index(zip, zip_uint64_t(i), 0);
        if (!member) throw Error(where + ": cannot read it (libzip: " + zip_strerror(zip) + ")");
        EntryStream stream(member, usize, where);
        bool skipped = false;
        NpyArray a = decode_npy_stream(stream, where, name, options, budget, skipped);
        if (!skipped) stream.finish();
        out.emplace_back(name, std::move(a));
    }
    return out;
}

std::vector<std::uint8_t> read_regular_file(const std::string& path, std::uint64_t max_bytes, const std::string& what)
{
    // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        throw Error(what + " " + path + ": " + (err == ENOENT ? std::string("does not exist") : std::strerror(err)));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(what + " " + path + ": cannot stat: " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw Error(what + " " + path + ": is a directory, not a file");
    if (!S_ISREG(st.st_mode))
        throw Error(what + " " + path + ": is not a regular file (" +
                    (S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
                                                   : S_ISBLK(st.st_mode) ? "a block device"
                                                   : S_ISSOCK(st.st_mode) ? "a socket" : "not a plain file") +
                    "); only regular files are read");
    const std::uint64_t size = std::uint64_t(st.st_size);
    if (size > max_bytes)
        throw Error(what + " " + path + ": the file has " + std::to_string(size) + " bytes, more than the " +
                    std::to_string(max_bytes) + " it may have");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    std::size_t done = 0;
    while (done < bytes.size()) {  // a file that shrinks meanwhile ends the loop; one that grows is cut
        const ssize_t r = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw Error(what + " " + path + ": read error: " + std::strerror(errno));
        if (r == 0) break;
        done += std::size_t(r);
    }
    bytes.resize(done);
    return bytes;
}

NpzArchive read_npz(const std::string& path, const NpzReadOptions& options)
{
    const std::uint64_t cap = options.max_bytes > UINT64_MAX - max_file_overhead ? UINT64_MAX
                                                                                : options.max_bytes + max_file_overhead;
    return decode_npz(read_regular_file(path, cap, "npz file"), path, options);
}

template <class T>
Tensor<T> NpyArray::to_tensor() const
{
    if (!has_data) throw Error("npz: the data of an array of shape " + shape_str(shape) + " were not read (filtered out)");
    Tensor<T> t = Tensor<T>::from_shape(shape);
    std::size_t k = 0;
    for (T& v : t) v = static_cast<T>(data[k++]);
    return t;
}

template Tensor<float> NpyArray::to_tensor<float>() const;
template Tensor<double> NpyArray::to_tensor<double>() const;

// --- writing ---

void NpzWriter::add_npy(const std::string& name, std::vector<std::uint8_t> npy)
{
    if (name.empty()) throw Error("NpzWriter::add: empty array name");
    if (name.size() > 65000) throw Error("NpzWriter::add: array name longer than 65000 bytes");
    if (names_.count(name)) throw Error("NpzWriter::add: array name '" + name + "' used twice");
    if (name.find('\0') != std::string::npos) throw Error("NpzWriter::add: array name contains a NUL byte");
    entries_.push_back({name, std::move(npy)});
    names_.insert(name);
}

void NpzWriter::add(const std::string& name, const Tensor<float>& t) { add_npy(name, encode_npy(t, "<f4")); }
void NpzWriter::add(const std::string& name, const Tensor<double>& t) { add_npy(name, encode_npy(t, "<f8")); }
void NpzWriter::add_scalar(const std::string& name, double value)
{
    Tensor<double> t = Tensor<double>::from_shape({});
    t() = value;
    add(name, t);
}

std::vector<std::uint8_t> NpzWriter::bytes() const
{
    // zip_close removes an archive left without entries instead of writing one.
    if (entries_.empty()) return std::vector<std::uint8_t>(std::begin(empty_zip), std::end(empty_zip));

    // libzip writes the archive into a buffer source, which is then read back. The source is
    // kept alive past zip_close (which releases the archive's reference) and freed here.
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* archive = zip_source_buffer_create(nullptr, 0, 0, &error);
    if (!archive) throw Error("NpzWriter: libzip cannot make a buffer: " + zip_message(error));
    struct Free {
        zip_source_t* source;
        ~Free() { zip_source_free(source); }
    } release{archive};
    zip_source_keep(archive);
    zip_t* zip = zip_open_from_source(archive, ZIP_TRUNCATE, &error);
    if (!zip) {
        zip_source_free(archive);
        throw Error("NpzWriter: libzip cannot start an archive: " + zip_message(error));
    }
    auto abandon = [&](const std::string& what) {
        const std::string text = zip_strerror(zip);
        zip_discard(zip);
        throw Error("NpzWriter: " + what + " (libzip: " + text + ")");
    };
    // A fixed timestamp, the earliest DOS date (1980-01-01 00:00, which libzip stores from local
    // time), keeps files reproducible; stored members and Unix mode rw-r--r-- as numpy.savez.
    std::tm dos_epoch{};
    dos_epoch.tm_year = 80;
    dos_epoch.tm_mday = 1;
    dos_epoch.tm_isdst = -1;
    const std::time_t mtime = std::mktime(&dos_epoch);
    for (const auto& e : entries_) {
        const std::string entry = e.name + ".npy";
        zip_source_t* data = zip_source_buffer(zip, e.npy.data(), e.npy.size(), 0);
        const zip_int64_t i = data ? zip_file_add(zip, entry.c_str(), data, 0) : -1;
        if (i < 0) {
            if (data) zip_source_free(data);
            abandon("cannot add '" + entry + "'");
        }
        if (zip_set_file_compression(zip, zip_uint64_t(i), ZIP_CM_STORE, 0) != 0 ||
            zip_file_set_mtime(zip, zip_uint64_t(i), mtime, 0) != 0 ||
            zip_file_set_external_attributes(zip, zip_uint64_t(i), 0, ZIP_OPSYS_UNIX, 0100644u << 16) != 0)
            abandon("cannot set the attributes of '" + entry + "'");
    }
    if (zip_close(zip) != 0) abandon("cannot write the archive");

    zip_stat_t st;
    zip_stat_init(&st);
    std::vector<std::uint8_t> out;
    bool read_back = zip_source_open(archive) == 0;
    if (read_back) {
        read_back = zip_source_stat(archive, &st) == 0 && (st.valid & ZIP_STAT_SIZE);
        if (read_back) out.resize(std::size_t(st.size));
        read_back = read_back && zip_source_read(archive, out.data(), out.size()) == zip_int64_t(out.size());
        zip_source_close(archive);
    }
    if (!read_back)
        throw Error(std::string("NpzWriter: cannot read the archive back (libzip: ") +
                    zip_error_strerror(zip_source_error(archive)) + ")");
    return out;
}

namespace {

// Temporary files are named ".<target name, at most 200 bytes>.tmp-<pid>-<random>" in the
// target's directory: the same file system, so rename() replaces the target atomically, and a
// name that fits NAME_MAX (255) even for a 255-byte target. A save killed before its rename
// leaves its temporary behind (O_TMPFILE would avoid that, but linkat cannot replace an existing
// file, so a named step remains, and not every file system has O_TMPFILE); the next save of the
// same file removes every such leftover whose process no longer exists, so a save running at
// the same time in another process keeps its own.
std::string temp_prefix(const std::string& filename) { return "." + filename.substr(0, 200) + ".tmp-"; }

void remove_stale_temps(const std::filesystem::path& dir, const std::string& filename)
{
    namespace fs = std::filesystem;
    const std::string prefix = temp_prefix(filename);
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string n = it->path().filename().string();
        if (n.compare(0, prefix.size(), prefix) != 0) continue;
        const char* p = n.c_str() + prefix.size();
        char* stop = nullptr;
        const long pid = std::strtol(p, &stop, 10);
        if (stop == p || *stop != '-' || pid <= 0) continue;
        if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
    }
}

// The file a path finally names: symbolic links are followed (as open() would), so saving
// through a link replaces the link's target and keeps the link.
std::string resolve_links(const std::string& path)
{
    namespace fs = std::filesystem;
    fs::path p(path);
    for (int depth = 0; depth < 40; ++depth) {
        std::error_code ec;
        if (!fs::is_symlink(fs::symlink_status(p, ec))) return p.string();
        const fs::path to = fs::read_symlink(p, ec);
        if (ec) throw Error("cannot write " + path + ": cannot read the symbolic link " + p.string() + ": " + ec.message());
        p = to.is_absolute() ? to : p.parent_path() / to;
    }
    throw Error("cannot write " + path + ": too many levels of symbolic links");
}

}  // namespace

void write_file_atomically(const std::string& requested, const std::vector<std::uint8_t>& bytes)
{
    namespace fs = std::filesystem;
    if (fs::path(requested).filename().empty()) throw Error("cannot write " + requested + ": the path names no file");
    const std::string path = resolve_links(requested);
    const fs::path target(path);
    std::error_code ec;
    if (fs::is_directory(target, ec)) throw Error("cannot write " + requested + ": it is a directory");
    const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    const std::string filename = target.filename().string();
    remove_stale_temps(dir, filename);

    // Created by open() with mode 0666, so the umask applies as to any new file; an existing
    // target's permissions are kept, as a plain overwrite would keep them.
    struct stat old {};
    const bool replacing = ::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode);
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        char suffix[48];
        std::snprintf(suffix, sizeof suffix, "%ld-%08lx", long(::getpid()),
                      static_cast<unsigned long>(std::random_device{}()) & 0xffffffffUL);
        tmp = (dir / (temp_prefix(filename) + suffix)).string();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || attempt > 100))
            throw Error("cannot write " + requested + ": cannot create a temporary file in " + dir.string() + ": " +
                        std::strerror(errno));
    }
    auto abandon = [&](const std::string& what) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error("cannot write " + requested + ": " + what + ": " + std::strerror(err) +
                    " (the previous file, if any, is unchanged)");
    };
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            abandon("write failed after " + std::to_string(done) + " of " + std::to_string(bytes.size()) + " bytes");
        }
        done += std::size_t(w);
    }
    if (replacing && ::fchmod(fd, old.st_mode & 07777) != 0) abandon("cannot keep the file's permissions");
    if (::fsync(fd) != 0) abandon("fsync failed");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + requested + ": close failed: " + std::strerror(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + requested + ": rename from " + tmp + " failed: " + std::strerror(err));
    }
    // Make the rename itself durable; a failure here leaves a complete file either way.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

// Not libzip's own file output (zip_open on a path, then zip_close): libzip 1.7 names its
// temporary "<path>.XXXXXX", too long for a name of more than 248 bytes, renames it without an
// fsync, and renames over a symbolic link instead of replacing the link's target.
void NpzWriter::write(const std::string& path) const { write_file_atomically(path, bytes()); }

template <class T>
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor<T>>>& arrays)
{
    NpzWriter w;
    for (const auto& [name, t] : arrays) w.add(name, t);
    w.write(path);
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>>> load_npz(const std::string& path)
{
    std::vector<std::pair<std::string, Tensor<T>>> out;
    for (const auto& [name, a] : read_npz(path)) out.emplace_back(name, a.template to_tensor<T>());
    return out;
}

template void save_npz<float>(const std::string&, const std::vector<std::pair<std::string, Tensor<float>>>&);
template void save_npz<double>(const std::string&, const std::vector<std::pair<std::string, Tensor<double>>>&);
template std::vector<std::pair<std::string, Tensor<float>>> load_npz<float>(const std::string&);
template std::vector<std::pair<std::string, Tensor<double>>> load_npz<double>(const std::string&);

}  // namespace ad::nn
