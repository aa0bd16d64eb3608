#include "nn/npz.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xmanipulation.hpp>

#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npz.cpp copies '<f4'/'<f8' elements as they are in memory: it needs a little-endian host"
#endif

namespace ad::nn {

namespace {

constexpr std::uint32_t local_sig = 0x04034b50;
constexpr std::uint32_t central_sig = 0x02014b50;
constexpr std::uint32_t eocd_sig = 0x06054b50;
constexpr std::uint32_t zip64_eocd_sig = 0x06064b50;
constexpr std::uint32_t zip64_locator_sig = 0x07064b50;
constexpr std::size_t max_dims = 32;
// Deflate cannot expand data by more than about 1032:1; a larger claim is a corrupt header (or
// a bomb), refused before any memory is reserved for it.
constexpr std::uint64_t max_deflate_ratio = 1032;

[[noreturn]] void fail(const std::string& file, const std::string& what)
{
    throw Error("npz file " + file + ": " + what);
}

// Bounds-checked little-endian reads from a byte range.
struct Bytes {
    const std::uint8_t* p;
    std::size_t n;
    const std::string& file;

    void need(std::uint64_t off, std::uint64_t len, const std::string& what) const
    {
        if (off > n || len > n - off)
            fail(file, "truncated or corrupt: " + what + " at offset " + std::to_string(off) + " needs " +
                           std::to_string(len) + " bytes, the file has " + std::to_string(n));
    }
    std::uint64_t le(std::uint64_t off, int width, const char* what) const
    {
        need(off, width, what);
        std::uint64_t v = 0;
        for (int i = width - 1; i >= 0; --i) v = (v << 8) | p[off + i];
        return v;
    }
    std::uint16_t u16(std::uint64_t off, const char* what) const { return std::uint16_t(le(off, 2, what)); }
    std::uint32_t u32(std::uint64_t off, const char* what) const { return std::uint32_t(le(off, 4, what)); }
    std::uint64_t u64(std::uint64_t off, const char* what) const { return le(off, 8, what); }
};

void put16(std::vector<std::uint8_t>& out, std::uint32_t v)
{
    out.push_back(std::uint8_t(v));
    out.push_back(std::uint8_t(v >> 8));
}
void put32(std::vector<std::uint8_t>& out, std::uint32_t v)
{
    put16(out, v & 0xffff);
    put16(out, v >> 16);
}

std::uint32_t crc_of(const std::uint8_t* data, std::size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {  // crc32 takes a uInt length
        const uInt chunk = n > (1u << 30) ? (1u << 30) : uInt(n);
        crc = crc32(crc, data, chunk);
        data += chunk;
        n -= chunk;
    }
    return std::uint32_t(crc);
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

NpyArray decode_npy(const std::vector<std::uint8_t>& bytes, const std::string& where)
{
    static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (bytes.size() < 10 || std::memcmp(bytes.data(), magic, 6) != 0)
        throw Error(where + ": not a .npy array (no \\x93NUMPY magic)");
    const unsigned major = bytes[6], minor = bytes[7];
    std::size_t header_len, header_start;
    if (major == 1) {
        header_len = std::size_t(bytes[8]) | std::size_t(bytes[9]) << 8;
        header_start = 10;
    } else if (major == 2 || major == 3) {
        if (bytes.size() < 12) throw Error(where + ": .npy file truncated in its header length");
        header_len = std::size_t(bytes[8]) | std::size_t(bytes[9]) << 8 | std::size_t(bytes[10]) << 16 |
                     std::size_t(bytes[11]) << 24;
        header_start = 12;
    } else {
        throw Error(where + ": .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                    " is not supported (1.0, 2.0 and 3.0 are)");
    }
    if (header_len > bytes.size() - header_start)
        throw Error(where + ": .npy header of " + std::to_string(header_len) + " bytes runs past the end (" +
                    std::to_string(bytes.size()) + " bytes in all)");
    const std::string text(reinterpret_cast<const char*>(bytes.data()) + header_start, header_len);
    const NpyHeader h = HeaderParser(text, where).parse();

    std::size_t item;
    if (h.descr == "<f8")
        item = 8;
    else if (h.descr == "<f4")
        item = 4;
    else
        throw Error(where + ": dtype '" + h.descr +
                    "' is not supported (only little-endian float32 '<f4' and float64 '<f8')");

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
    const std::size_t data_start = header_start + header_len;
    const std::uint64_t have = bytes.size() - data_start;
    if (have != count * item)
        throw Error(where + ": shape " + shape_str(h.shape) + " of " + h.descr + " needs " +
                    std::to_string(count * item) + " bytes of data, the array has " + std::to_string(have));

    NpyArray a;
    a.dtype = h.descr;
    a.shape = h.shape;
    a.data.resize(std::size_t(count));
    const std::uint8_t* src = bytes.data() + data_start;
    for (std::size_t i = 0; i < a.data.size(); ++i) {
        if (item == 8) {
            std::memcpy(&a.data[i], src + 8 * i, 8);
        } else {
            float f;
            std::memcpy(&f, src + 4 * i, 4);
            a.data[i] = f;
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

NpzArchive decode_npz(const std::vector<std::uint8_t>& bytes, const std::string& file)
{
    const Bytes b{bytes.data(), bytes.size(), file};
    const std::size_t n = bytes.size();
    if (n < 22) fail(file, "too short to be a zip archive (" + std::to_string(n) + " bytes)");

    // The end-of-central-directory record: the last 22 bytes, or earlier if a comment follows it.
    std::size_t eocd = n;
    const std::size_t lowest = n - 22 > 0xffff ? n - 22 - 0xffff : 0;
    for (std::size_t pos = n - 22 + 1; pos-- > lowest;) {
        if (b.u32(pos, "end record") == eocd_sig && pos + 22 + b.u16(pos + 20, "comment length") == n) {
            eocd = pos;
            break;
        }
    }
    if (eocd == n) fail(file, "not a zip archive (no end-of-central-directory record)");
    if (b.u16(eocd + 4, "disk number") != 0 || b.u16(eocd + 6, "disk number") != 0)
        fail(file, "multi-disk zip archives are not supported");
    std::uint64_t entries = b.u16(eocd + 10, "entry count");
    std::uint64_t cd_size = b.u32(eocd + 12, "central directory size");
    std::uint64_t cd_offset = b.u32(eocd + 16, "central directory offset");
    std::uint64_t cd_end_limit = eocd;
    if (entries == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
        // zip64: a locator just before the end record points to the zip64 end record.
        if (eocd < 20 || b.u32(eocd - 20, "zip64 locator") != zip64_locator_sig)
            fail(file, "zip64 fields without a zip64 end-of-central-directory locator");
        const std::uint64_t rec = b.u64(eocd - 20 + 8, "zip64 end record offset");
        if (rec > eocd - 20 || b.u32(rec, "zip64 end record") != zip64_eocd_sig)
            fail(file, "the zip64 end-of-central-directory record is missing or misplaced");
        entries = b.u64(rec + 32, "zip64 entry count");
        cd_size = b.u64(rec + 40, "zip64 central directory size");
        cd_offset = b.u64(rec + 48, "zip64 central directory offset");
        cd_end_limit = rec;
    }
    if (cd_offset > cd_end_limit || cd_size > cd_end_limit - cd_offset)
        fail(file, "truncated or corrupt: the central directory (offset " + std::to_string(cd_offset) + ", " +
                       std::to_string(cd_size) + " bytes) does not fit before the end record at " +
                       std::to_string(cd_end_limit));
    if (entries > cd_size / 46)
        fail(file, "corrupt: " + std::to_string(entries) + " entries cannot fit in a central directory of " +
                       std::to_string(cd_size) + " bytes");

    NpzArchive out;
    std::set<std::string> names;
    std::uint64_t pos = cd_offset;
    const std::uint64_t cd_end = cd_offset + cd_size;
    for (std::uint64_t e = 0; e < entries; ++e) {
        if (cd_end - pos < 46 || b.u32(pos, "central directory entry") != central_sig)
            fail(file, "corrupt central directory entry " + std::to_string(e) + " at offset " + std::to_string(pos));
        const std::uint16_t flags = b.u16(pos + 8, "flags");
        const std::uint16_t method = b.u16(pos + 10, "compression method");
        const std::uint32_t crc = b.u32(pos + 16, "CRC-32");
        std::uint64_t csize = b.u32(pos + 20, "compressed size");
        std::uint64_t usize = b.u32(pos + 24, "size");
        const std::uint16_t name_len = b.u16(pos + 28, "name length");
        const std::uint16_t extra_len = b.u16(pos + 30, "extra length");
        const std::uint16_t comment_len = b.u16(pos + 32, "comment length");
        std::uint64_t local = b.u32(pos + 42, "local header offset");
        const std::uint64_t entry_len = 46ull + name_len + extra_len + comment_len;
        if (entry_len > cd_end - pos)
            fail(file, "corrupt central directory entry " + std::to_string(e) + ": it runs past the directory");
        const std::string entry(reinterpret_cast<const char*>(bytes.data() + pos + 46), name_len);
        const std::string where = "npz file " + file + ", entry '" + entry + "'";

        // zip64 extra field: the 64-bit values of those fields that hold 0xffffffff, in this order.
        const bool need_usize = usize == 0xffffffff, need_csize = csize == 0xffffffff,
                   need_local = local == 0xffffffff;
        if (need_usize || need_csize || need_local) {
            bool found = false;
            std::uint64_t x = pos + 46 + name_len;
            const std::uint64_t x_end = x + extra_len;
            while (x_end - x >= 4) {
                const std::uint16_t id = b.u16(x, "extra field id"), len = b.u16(x + 2, "extra field length");
                if (len > x_end - x - 4) throw Error(where + ": corrupt extra field");
                if (id == 0x0001) {
                    std::uint64_t f = x + 4;
                    const std::uint64_t f_end = f + len;
                    auto next = [&](std::uint64_t& v) {
                        if (f_end - f < 8) throw Error(where + ": zip64 extra field too short");
                        v = b.u64(f, "zip64 extra field");
                        f += 8;
                    };
                    if (need_usize) next(usize);
                    if (need_csize) next(csize);
                    if (need_local) next(local);
                    found = true;
                    break;
                }
                x += 4ull + len;
            }
            if (!found) throw Error(where + ": sizes marked as zip64 but no zip64 extra field");
        }
        pos += entry_len;

        if (flags & 0x1) throw Error(where + ": encrypted entries are not supported");
        if (method != 0 && method != 8)
            throw Error(where + ": compression method " + std::to_string(method) +
                        " is not supported (only stored and deflated)");
        if (name_len < 5 || entry.compare(name_len - 4, 4, ".npy") != 0)
            throw Error(where + ": not a .npy entry (an .npz holds only <name>.npy files)");
        const std::string name = entry.substr(0, name_len - 4);
        if (!names.insert(name).second) throw Error(where + ": the name appears twice in the archive");

        // The local header repeats the name; its extra field may differ from the central one.
        if (local > cd_offset || cd_offset - local < 30 || b.u32(local, "local header") != local_sig)
            throw Error(where + ": corrupt: no local file header at offset " + std::to_string(local));
        const std::uint16_t lname_len = b.u16(local + 26, "local name length");
        const std::uint16_t lextra_len = b.u16(local + 28, "local extra length");
        const std::uint64_t data = local + 30 + lname_len + lextra_len;
        if (data > cd_offset || csize > cd_offset - data)
            throw Error(where + ": truncated or corrupt: its " + std::to_string(csize) + " bytes at offset " +
                        std::to_string(data) + " run into the central directory at " + std::to_string(cd_offset));
        if (lname_len != name_len || std::memcmp(bytes.data() + local + 30, entry.data(), name_len) != 0)
            throw Error(where + ": the local header names a different entry");

        std::vector<std::uint8_t> npy;
        const std::uint8_t* src = bytes.data() + data;
        if (method == 0) {
            if (csize != usize)
                throw Error(where + ": stored entry with compressed size " + std::to_string(csize) +
                            " != size " + std::to_string(usize));
            npy.assign(src, src + csize);
        } else {
            if (usize > csize * max_deflate_ratio + 64)
                throw Error(where + ": corrupt: claims " + std::to_string(usize) + " bytes from " +
                            std::to_string(csize) + " compressed bytes, more than deflate can produce");
            npy.resize(std::size_t(usize));
            z_stream zs{};
            if (inflateInit2(&zs, -15) != Z_OK) throw Error(where + ": zlib could not start inflating");
            std::uint64_t in_left = csize, out_done = 0;
            int rc = Z_OK;
            zs.next_in = const_cast<Bytef*>(src);
            zs.next_out = npy.data();
            // zlib counts in uInt: feed both sides in chunks.
            while (rc == Z_OK) {
                const uInt in_chunk = uInt(std::min<std::uint64_t>(in_left, 1u << 30));
                const uInt out_chunk = uInt(std::min<std::uint64_t>(usize - out_done, 1u << 30));
                zs.avail_in = in_chunk;
                zs.avail_out = out_chunk;
                rc = inflate(&zs, Z_NO_FLUSH);
                in_left -= in_chunk - zs.avail_in;
                out_done += out_chunk - zs.avail_out;
            }  // Z_BUF_ERROR: no progress possible (input exhausted or output full)
            const char* msg = zs.msg;
            inflateEnd(&zs);
            if (rc != Z_STREAM_END)
                throw Error(where + ": corrupt deflate data" + (msg ? std::string(" (") + msg + ")" : std::string()) +
                            (out_done == usize ? ": more data than its stated size " + std::to_string(usize)
                                               : ": the stream ends early"));
            if (out_done != usize || in_left != 0)
                throw Error(where + ": corrupt: inflates to " + std::to_string(out_done) + " bytes from " +
                            std::to_string(csize - in_left) + " compressed, the directory says " +
                            std::to_string(usize) + " from " + std::to_string(csize));
        }
        const std::uint32_t actual = crc_of(npy.data(), npy.size());
        if (actual != crc) {
            char msg[80];
            std::snprintf(msg, sizeof msg, ": CRC-32 mismatch (stored %08x, computed %08x): corrupt data",
                          unsigned(crc), unsigned(actual));
            throw Error(where + msg);
        }
        out.emplace_back(name, decode_npy(npy, where));
    }
    if (pos != cd_end)
        fail(file, "corrupt: the central directory has " + std::to_string(cd_end - pos) + " unexplained bytes");
    return out;
}

NpzArchive read_npz(const std::string& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (!fs::exists(st)) fail(path, "does not exist");
    if (fs::is_directory(st)) fail(path, "is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, "cannot be opened for reading");
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) fail(path, "read error");
    return decode_npz(bytes, path);
}

template <class T>
Tensor<T> NpyArray::to_tensor() const
{
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
    for (const auto& e : entries_)
        if (e.name == name) throw Error("NpzWriter::add: array name '" + name + "' used twice");
    if (entries_.size() >= 0xffff) throw Error("NpzWriter::add: more than 65534 arrays need zip64, not written");
    entries_.push_back({name, std::move(npy)});
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
    // A fixed timestamp (1980-01-01 00:00, the earliest DOS date) keeps files reproducible.
    const std::uint32_t dos_time = 0, dos_date = (0u << 9) | (1u << 5) | 1u;
    std::vector<std::uint8_t> out, central;
    auto too_big = [] { throw Error("NpzWriter: archive larger than 4 GiB needs zip64, not written"); };
    for (const auto& e : entries_) {
        const std::string entry = e.name + ".npy";
        const std::uint32_t crc = crc_of(e.npy.data(), e.npy.size());
        if (e.npy.size() >= 0xffffffffu || out.size() >= 0xffffffffu) too_big();
        const auto size = std::uint32_t(e.npy.size());
        const auto offset = std::uint32_t(out.size());

        put32(out, local_sig);
        put16(out, 20);  // version needed: 2.0
        put16(out, 0);   // flags
        put16(out, 0);   // method: stored
        put16(out, dos_time);
        put16(out, dos_date);
        put32(out, crc);
        put32(out, size);
        put32(out, size);
        put16(out, std::uint32_t(entry.size()));
        put16(out, 0);  // extra length
        out.insert(out.end(), entry.begin(), entry.end());
        out.insert(out.end(), e.npy.begin(), e.npy.end());

        put32(central, central_sig);
        put16(central, (3u << 8) | 20);  // made by: Unix, 2.0
        put16(central, 20);
        put16(central, 0);
        put16(central, 0);
        put16(central, dos_time);
        put16(central, dos_date);
        put32(central, crc);
        put32(central, size);
        put32(central, size);
        put16(central, std::uint32_t(entry.size()));
        put16(central, 0);  // extra length
        put16(central, 0);  // comment length
        put16(central, 0);  // disk
        put16(central, 0);  // internal attributes
        put32(central, 0100644u << 16);  // external attributes: a regular file, rw-r--r--
        put32(central, offset);
        central.insert(central.end(), entry.begin(), entry.end());
    }
    if (out.size() + central.size() >= 0xffffffffu) too_big();
    const auto cd_offset = std::uint32_t(out.size());
    out.insert(out.end(), central.begin(), central.end());
    put32(out, eocd_sig);
    put16(out, 0);
    put16(out, 0);
    put16(out, std::uint32_t(entries_.size()));
    put16(out, std::uint32_t(entries_.size()));
    put32(out, std::uint32_t(central.size()));
    put32(out, cd_offset);
    put16(out, 0);  // comment length
    return out;
}

void write_file_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes)
{
    namespace fs = std::filesystem;
    const fs::path target(path);
    if (target.filename().empty()) throw Error("cannot write " + path + ": the path names no file");
    std::error_code ec;
    if (fs::is_directory(target, ec)) throw Error("cannot write " + path + ": it is a directory");
    const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    std::string tmp = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();

    const int fd = ::mkstemp(tmp.data());
    if (fd < 0)
        throw Error("cannot write " + path + ": cannot create a temporary file in " + dir.string() + ": " +
                    std::strerror(errno));
    auto abandon = [&](const std::string& what) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error("cannot write " + path + ": " + what + ": " + std::strerror(err) + " (the previous file, if any, is unchanged)");
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
    // mkstemp makes the file rw-------; a saved file gets the usual rw-r--r--.
    if (::fchmod(fd, 0644) != 0) abandon("cannot set permissions");
    if (::fsync(fd) != 0) abandon("fsync failed");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + path + ": close failed: " + std::strerror(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + path + ": rename from " + tmp + " failed: " + std::strerror(err));
    }
    // Make the rename itself durable; a failure here leaves a complete file either way.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

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
