#include "nn/npy.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xmanipulation.hpp>

#include <algorithm>
#include <cstring>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.cpp copies '<f4'/'<f8' elements as they are in memory: it needs a little-endian host"
#endif

namespace ad::nn {

namespace {

constexpr std::size_t max_dims = 32;
// numpy writes headers of a few hundred bytes (and itself refuses more than 10000 by default).
constexpr std::size_t max_header_bytes = std::size_t(1) << 20;

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
std::vector<std::uint8_t> encode_as(const Tensor<E>& t, const char* descr)
{
    const Shape& shape = t.shape();
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

// --- reading ---

// A .npy held in memory.
class NpyBytes : public NpyStream {
public:
    NpyBytes(const std::vector<std::uint8_t>& bytes, const std::string& where)
        : NpyStream(bytes.size(), where), bytes_(bytes.data())
    {
    }

protected:
    void fill(std::uint8_t* out, std::size_t n) override { std::memcpy(out, bytes_ + done(), n); }

private:
    const std::uint8_t* bytes_;
};

// What a .npy header declares, checked against the bytes that follow it.
struct NpyLayout {
    NpyHeader header;
    std::uint64_t count;  // elements
    std::size_t item;     // bytes an element: 4 or 8
};

NpyLayout read_layout(NpyStream& s, const std::string& where)
{
    static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    std::uint8_t pre[12];
    if (s.size() < 10) throw Error(where + ": not a .npy array (no \\x93NUMPY magic)");
    s.read(pre, 10, "the .npy magic");
    if (std::memcmp(pre, magic, 6) != 0) throw Error(where + ": not a .npy array (no \\x93NUMPY magic)");
    const unsigned major = pre[6], minor = pre[7];
    std::size_t header_len;
    if (major == 1) {
        header_len = std::size_t(pre[8]) | std::size_t(pre[9]) << 8;
    } else if (major == 2 || major == 3) {
        if (s.remaining() < 2) throw Error(where + ": .npy file truncated in its header length");
        s.read(pre + 10, 2, "the .npy header length");
        header_len = std::size_t(pre[8]) | std::size_t(pre[9]) << 8 | std::size_t(pre[10]) << 16 |
                     std::size_t(pre[11]) << 24;
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
    NpyLayout l{HeaderParser(text, where).parse(), 1, 0};
    const NpyHeader& h = l.header;

    // '<i8': PyTorch's int64 buffers (BatchNorm's num_batches_tracked).
    if (h.descr == "<f8" || h.descr == "<i8")
        l.item = 8;
    else if (h.descr == "<f4")
        l.item = 4;
    else
        throw Error(where + ": dtype '" + h.descr +
                    "' is not supported (only little-endian float32 '<f4', float64 '<f8' and int64 '<i8')");

    // The strides of an array of this shape multiply its dimensions with zeros counted as ones:
    // (0, 2^48, 2^48) holds nothing, yet its strides would overflow.
    std::uint64_t span = 1;
    for (std::size_t d : h.shape) {
        const std::uint64_t e = d ? d : 1;
        if (span > (std::uint64_t(1) << 60) / e)
            throw Error(where + ": shape " + shape_str(h.shape) + " is too large");
        span *= e;
        l.count *= d;
    }
    const std::uint64_t have = s.remaining();
    if (have != l.count * l.item)
        throw Error(where + ": shape " + shape_str(h.shape) + " of " + h.descr + " needs " +
                    std::to_string(l.count * l.item) + " bytes of data, the array has " + std::to_string(have));
    return l;
}

// Compared before anything is allocated or read for the data.
void charge(const NpyLayout& l, const std::string& where, const NpzReadOptions& options, std::uint64_t& budget)
{
    const std::uint64_t bytes = l.count * l.item;
    if (bytes > budget)
        throw Error(where + ": shape " + shape_str(l.header.shape) + " of " + l.header.descr + " declares " +
                    std::to_string(bytes) + " bytes of data; with the arrays before it that is more than the " +
                    std::to_string(options.max_bytes) + " bytes a read may hold (NpzReadOptions::max_bytes)");
    budget -= bytes;
}

// The elements into out[0, count), converted to E and put in C order.
template <class E>
void read_elements(NpyStream& s, const NpyLayout& l, E* out, const std::string& where)
{
    const std::size_t n = std::size_t(l.count), item = l.item;
    std::uint8_t chunk[1 << 16];
    const std::size_t per_chunk = sizeof chunk / item;
    const bool integer = l.header.descr == "<i8";
    for (std::size_t i = 0; i < n;) {
        const std::size_t k = std::min(per_chunk, n - i);
        s.read(chunk, k * item, "the array data");
        for (std::size_t j = 0; j < k; ++j, ++i) {
            if (integer) {
                std::int64_t v;
                std::memcpy(&v, chunk + 8 * j, 8);
                // Beyond 2^53 a double would round the integer: refused rather than changed.
                if (v > (std::int64_t(1) << 53) || v < -(std::int64_t(1) << 53))
                    throw Error(where + ": int64 element " + std::to_string(v) + " at flat index " +
                                std::to_string(i) + " is beyond 2^53, so float64 cannot hold it exactly");
                out[i] = static_cast<E>(double(v));
            } else if (item == 8) {
                double d;
                std::memcpy(&d, chunk + 8 * j, 8);
                out[i] = static_cast<E>(d);
            } else {
                float f;
                std::memcpy(&f, chunk + 4 * j, 4);
                out[i] = static_cast<E>(f);
            }
        }
    }
    const Shape& shape = l.header.shape;
    if (l.header.fortran_order && shape.size() > 1) {
        // Column-major data is the C-order array of the reversed shape, transposed.
        const Shape reversed(shape.rbegin(), shape.rend());
        auto f = xt::adapt(out, n, xt::no_ownership(), reversed);
        const Tensor<E> c = xt::transpose(f);
        std::copy(c.begin(), c.end(), out);
    }
}

}  // namespace

void NpyStream::read(std::uint8_t* out, std::size_t n, const char* what)
{
    if (n > remaining())
        throw Error(where_ + ": truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                    std::to_string(done_) + ", the entry has " + std::to_string(size_));
    fill(out, n);
    done_ += n;
}

NpyArray decode_npy_stream(NpyStream& s, const std::string& where, const std::string& name,
                           const NpzReadOptions& options, std::uint64_t& budget, bool& skipped)
{
    const NpyLayout l = read_layout(s, where);
    NpyArray a;
    a.dtype = l.header.descr;
    a.shape = l.header.shape;
    if (options.filter && !options.filter(name, a.dtype, a.shape)) {
        a.has_data = false;
        skipped = true;
        return a;
    }
    charge(l, where, options, budget);
    a.data.resize(std::size_t(l.count));
    read_elements(s, l, a.data.data(), where);
    return a;
}

NpyArray decode_npy(const std::vector<std::uint8_t>& bytes, const std::string& where, const NpzReadOptions& options)
{
    NpyBytes s(bytes, where);
    std::uint64_t budget = options.max_bytes;
    bool skipped = false;
    return decode_npy_stream(s, where, where, options, budget, skipped);
}

template <class T>
Tensor<T> decode_npy_tensor(const std::vector<std::uint8_t>& bytes, const std::string& where,
                            const NpzReadOptions& options)
{
    NpyBytes s(bytes, where);
    const NpyLayout l = read_layout(s, where);
    std::uint64_t budget = options.max_bytes;
    charge(l, where, options, budget);
    Tensor<T> t = Tensor<T>::from_shape(l.header.shape);
    read_elements(s, l, t.data(), where);
    return t;
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
template Tensor<float> decode_npy_tensor<float>(const std::vector<std::uint8_t>&, const std::string&,
                                                const NpzReadOptions&);
template Tensor<double> decode_npy_tensor<double>(const std::vector<std::uint8_t>&, const std::string&,
                                                  const NpzReadOptions&);

// --- writing ---

std::vector<std::uint8_t> encode_npy(const Tensor<float>& t) { return encode_as(t, "<f4"); }
std::vector<std::uint8_t> encode_npy(const Tensor<double>& t) { return encode_as(t, "<f8"); }

}  // namespace ad::nn
