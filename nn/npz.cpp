#include "nn/npz.hpp"

#include "nn/file_io.hpp"

#include <zip.h>

#include <cstdint>
#include <ctime>

namespace ad::nn {

namespace {

// Deflate cannot expand data by more than about 1032:1; a larger claim is a corrupt header (or
// a bomb), refused before any memory is reserved for it.
constexpr std::uint64_t max_deflate_ratio = 1032;
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

// One archive member's bytes, inflated by libzip only as far as each read asks: nothing is
// inflated before the .npy header has been checked, and no more than the member's declared size
// (and one byte to find that the data end there).
class ZipMember : public NpyStream {
public:
    ZipMember(zip_file_t* member, std::uint64_t size, const std::string& where)
        : NpyStream(size, where), member_(member)
    {
    }
    ~ZipMember() override { zip_fclose(member_); }

    // After the last byte: the data must end here. libzip compares the CRC-32 (and the size) with
    // the directory's when it reads the end.
    void finish()
    {
        std::uint8_t extra;
        const zip_int64_t r = zip_fread(member_, &extra, 1);
        if (r > 0)
            throw Error(where() + ": corrupt: its data run past the " + std::to_string(size()) +
                        " bytes the directory declares");
        if (r < 0) throw Error(where() + ": " + member_error(done()));
    }

protected:
    void fill(std::uint8_t* out, std::size_t n) override
    {
        for (std::size_t got = 0; got < n;) {
            const zip_int64_t r = zip_fread(member_, out + got, n - got);
            if (r < 0) throw Error(where() + ": " + member_error(done() + got));
            if (r == 0)
                throw Error(where() + ": truncated or corrupt: its data end after " + std::to_string(done() + got) +
                            " bytes, the directory says " + std::to_string(size()));
            got += std::size_t(r);
        }
    }

private:
    std::string member_error(std::uint64_t at) const
    {
        zip_error_t* e = zip_file_get_error(member_);
        const std::string text = zip_error_strerror(e);
        if (zip_error_code_zip(e) == ZIP_ER_CRC) return "CRC-32 mismatch: corrupt data (libzip: " + text + ")";
        return "corrupt data after " + std::to_string(at) + " bytes (libzip: " + text + ")";
    }

    zip_file_t* member_;
};

}  // namespace

// --- reading ---

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
        ZipMember stream(member, usize, where);
        bool skipped = false;
        NpyArray a = decode_npy_stream(stream, where, name, options, budget, skipped);
        if (!skipped) stream.finish();
        out.emplace_back(name, std::move(a));
    }
    return out;
}

NpzArchive read_npz(const std::string& path, const NpzReadOptions& options)
{
    const std::uint64_t cap = options.max_bytes > UINT64_MAX - max_file_overhead ? UINT64_MAX
                                                                                : options.max_bytes + max_file_overhead;
    return decode_npz(read_regular_file(path, cap, "npz file"), path, options);
}

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

void NpzWriter::add(const std::string& name, const Tensor<float>& t) { add_npy(name, encode_npy(t)); }
void NpzWriter::add(const std::string& name, const Tensor<double>& t) { add_npy(name, encode_npy(t)); }
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
