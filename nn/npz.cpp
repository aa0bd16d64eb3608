#include "nn/npz.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xmanipulation.hpp>

#include <zlib.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
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
// numpy writes headers of a few hundred bytes (and itself refuses more than 10000 by default).
constexpr std::size_t max_header_bytes = std::size_t(1) << 20;
// Room for the zip structure and the .npy headers around the arrays' data.
constexpr std::uint64_t max_file_overhead = std::uint64_t(64) << 20;

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

namespace {

// The bytes of one entry, read front to back: a range of the file (stored) or inflated as they
// are asked for (deflated), so nothing is inflated before the .npy header has been checked, and
// never more than the entry's declared size. A running CRC-32 covers what was read.
class EntryStream {
public:
    EntryStream(const std::uint8_t* src, std::uint64_t csize, std::uint64_t usize, bool deflated,
                const std::string& where)
        : src_(src), csize_(csize), usize_(usize), deflated_(deflated), where_(where)
    {
        if (deflated_ && inflateInit2(&zs_, -15) != Z_OK) throw Error(where_ + ": zlib could not start inflating");
        zs_.next_in = const_cast<Bytef*>(src_);
    }
    ~EntryStream()
    {
        if (deflated_) inflateEnd(&zs_);
    }
    EntryStream(const EntryStream&) = delete;
    EntryStream& operator=(const EntryStream&) = delete;

    std::uint64_t size() const { return usize_; }
    std::uint64_t remaining() const { return usize_ - done_; }

    // Exactly n more bytes, or ad::Error saying the entry ends before them.
    void read(std::uint8_t* out, std::size_t n, const char* what)
    {
        if (n > remaining())
            throw Error(where_ + ": truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                        std::to_string(done_) + ", the entry has " + std::to_string(usize_));
        if (!deflated_) {
            std::memcpy(out, src_ + done_, n);
        } else {
            std::size_t got = 0;
            while (got < n) {
                const int rc = pump(out + got, n - got, got);
                if (rc == Z_STREAM_END && got < n)
                    throw Error(where_ + ": corrupt: the deflate stream ends after " + std::to_string(done_ + got) +
                                " bytes, the directory says " + std::to_string(usize_));
            }
        }
        crc_ = crc32(crc_, out, uInt(n));
        done_ += n;
    }

    // After the last byte: the stream must end exactly here, use every compressed byte, and
    // match the directory's CRC-32.
    void finish(std::uint32_t expected_crc)
    {
        if (deflated_ && !ended_) {
            std::uint8_t extra;
            std::size_t got = 0;
            const int rc = pump(&extra, 1, got);
            if (got != 0)
                throw Error(where_ + ": corrupt deflate data: more data than its stated size " + std::to_string(usize_));
            if (rc != Z_STREAM_END) throw Error(where_ + ": corrupt deflate data: the stream does not end");
        }
        if (deflated_ && in_used_ != csize_)
            throw Error(where_ + ": corrupt: inflates to " + std::to_string(usize_) + " bytes from " +
                        std::to_string(in_used_) + " compressed, the directory says " + std::to_string(usize_) +
                        " from " + std::to_string(csize_));
        if (crc_ != expected_crc) {
            char msg[80];
            std::snprintf(msg, sizeof msg, ": CRC-32 mismatch (stored %08x, computed %08x): corrupt data",
                          unsigned(expected_crc), unsigned(crc_));
            throw Error(where_ + msg);
        }
    }

private:
    // One inflate call into out[0, n); adds what it produced to `got`. zlib counts in uInt, so
    // the input is fed in chunks.
    int pump(std::uint8_t* out, std::size_t n, std::size_t& got)
    {
        const uInt in_chunk = uInt(std::min<std::uint64_t>(csize_ - in_used_, 1u << 30));
        zs_.next_in = const_cast<Bytef*>(src_ + in_used_);
        zs_.avail_in = in_chunk;
        zs_.next_out = out;
        zs_.avail_out = uInt(std::min<std::size_t>(n, 1u << 30));
        const uInt out_room = zs_.avail_out;
        const int rc = inflate(&zs_, Z_NO_FLUSH);
        in_used_ += in_chunk - zs_.avail_in;
        got += out_room - zs_.avail_out;
        if (rc == Z_STREAM_END) ended_ = true;
        if (rc == Z_BUF_ERROR && out_room - zs_.avail_out == 0)
            throw Error(where_ + ": corrupt deflate data: the stream ends early, after " +
                        std::to_string(done_ + got) + " of " + std::to_string(usize_) + " bytes");
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            throw Error(where_ + ": corrupt deflate data" + (zs_.msg ? std::string(" (") + zs_.msg + ")" : std::string()));
        return rc;
    }

    const std::uint8_t* src_;
    std::uint64_t csize_, usize_;
    bool deflated_;
    const std::string& where_;
    z_stream zs_{};
    bool ended_ = false;
    std::uint64_t in_used_ = 0, done_ = 0;
    uLong crc_ = crc32(0L, Z_NULL, 0);
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
            if (item == 8) {
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
    EntryStream s(bytes.data(), bytes.size(), bytes.size(), false, where);
    std::uint64_t budget = options.max_bytes;
    bool skipped = false;
    return decode_npy_stream(s, where, where, options, budget, skipped);
}

NpzArchive decode_npz(const std::vector<std::uint8_t>& bytes, const std::string& file, const NpzReadOptions& options)
{
    std::uint64_t budget = options.max_bytes;
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

        if (method == 0 && csize != usize)
            throw Error(where + ": stored entry with compressed size " + std::to_string(csize) + " != size " +
                        std::to_string(usize));
        if (method == 8 && usize > csize * max_deflate_ratio + 64)
            throw Error(where + ": corrupt: claims " + std::to_string(usize) + " bytes from " + std::to_string(csize) +
                        " compressed bytes, more than deflate can produce");
        EntryStream stream(bytes.data() + data, csize, usize, method == 8, where);
        bool skipped = false;
        NpyArray a = decode_npy_stream(stream, where, name, options, budget, skipped);
        if (!skipped) stream.finish(crc);
        out.emplace_back(name, std::move(a));
    }
    if (pos != cd_end)
        fail(file, "corrupt: the central directory has " + std::to_string(cd_end - pos) + " unexplained bytes");
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
    if (entries_.size() >= 0xffff) throw Error("NpzWriter::add: more than 65534 arrays need zip64, not written");
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
