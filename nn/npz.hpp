// Reading and writing .npz files: NumPy's format for several named arrays, which numpy.load
// reads and numpy.savez / numpy.savez_compressed write.
//
// An .npz file is a zip archive with one entry "<name>.npy" per array. Each .npy holds the magic
// "\x93NUMPY", a version, a header that is a Python dict literal
//     {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces to a multiple of 64 bytes and ended by '\n', then the elements.
//
// The zip container is read and written by libzip; the .npy inside each entry by this file.
//
// Writing: stored (uncompressed) zip entries, .npy version 1.0, dtype '<f4' for float and '<f8'
// for double, C order; libzip adds zip64 records when an archive needs them. The archive is
// built in memory, written to a temporary file in the target's directory and renamed over the
// target, so a write that fails midway leaves any previous file untouched.
//
// Reading: stored or deflated entries (savez and savez_compressed), zip64 as numpy writes it,
// .npy versions 1.0, 2.0 and 3.0, dtypes '<f4', '<f8' and '<i8' (converted to the requested type;
// an int64 beyond 2^53, which float64 would round, is refused), C or Fortran order. libzip checks the container (ZIP_CHECKCONS: local headers against the central
// directory) and each entry's CRC-32; the declared sizes are checked against the limits before
// anything is inflated, and an entry is inflated only up to its declared size. A truncated or
// corrupt file raises ad::Error naming the file (and the entry, once one is being read) and
// what is wrong; nothing is read out of bounds.
#pragma once

#include "autodiff/tensor.hpp"

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ad::nn {

// One array of an archive. The elements are kept in double, which holds every float exactly.
struct NpyArray {
    std::string dtype;           // "<f4", "<f8" or "<i8", as stored in the file
    Shape shape;                 // () for a scalar
    std::vector<double> data;    // row-major (C order)
    bool has_data = true;        // false: NpzReadOptions::filter skipped it (shape and dtype only)

    // The array as a tensor of T (a '<f8' array read as float is rounded to nearest).
    template <class T>
    Tensor<T> to_tensor() const;
};

// The arrays of an archive in the order they are stored, named without the ".npy" suffix.
using NpzArchive = std::vector<std::pair<std::string, NpyArray>>;

// Builds an archive in memory; add() checks the name, write() puts it on disk.
class NpzWriter {
public:
    // Names must be non-empty, unique, without NUL bytes and at most 65000 bytes; "<name>.npy" is
    // the entry.
    void add(const std::string& name, const Tensor<float>& t);
    void add(const std::string& name, const Tensor<double>& t);
    // A one-element array of shape () in '<f8', for counters and hyperparameters.
    void add_scalar(const std::string& name, double value);

    std::vector<std::uint8_t> bytes() const;  // the whole .npz file
    // Temporary file in the same directory, then rename over `path`. On failure the temporary
    // file is removed, `path` is as it was, and ad::Error names the path and the reason.
    void write(const std::string& path) const;

private:
    struct Entry {
        std::string name;
        std::vector<std::uint8_t> npy;
    };
    void add_npy(const std::string& name, std::vector<std::uint8_t> npy);
    std::vector<Entry> entries_;
    std::set<std::string> names_;  // for the check of repeated names: 10,000 arrays in O(n log n)
};

// Limits of a read, checked before anything is inflated or allocated for an array's data.
struct NpzReadOptions {
    // Largest total size of the arrays' data as declared by their .npy headers (4 or 8 bytes an
    // element; in memory each element takes 8). The default, 1 GiB, is far above any model of
    // this project and keeps a decompression bomb from exhausting memory. read_npz also refuses a
    // file larger than this plus 64 MiB for the zip structure and headers.
    std::uint64_t max_bytes = std::uint64_t(1) << 30;
    // Called with each array's name, dtype and shape once its .npy header is read, before its
    // data: false skips the data (the array is returned with has_data false; its bytes are
    // neither inflated nor CRC-checked). Checkpoint loading uses it to compare with the model.
    std::function<bool(const std::string& name, const std::string& dtype, const Shape& shape)> filter;
};

// Parses the bytes of an .npz file; `name` is used in error messages.
NpzArchive decode_npz(const std::vector<std::uint8_t>& bytes, const std::string& name,
                      const NpzReadOptions& options = {});
// Parses the bytes of one .npy file.
NpyArray decode_npy(const std::vector<std::uint8_t>& bytes, const std::string& name,
                    const NpzReadOptions& options = {});
// Reads a file and decodes it; a missing file, a directory, anything but a regular file (a FIFO,
// /dev/zero: refused without reading, never waited on), a file over the limit or a read error
// raise ad::Error naming the path.
NpzArchive read_npz(const std::string& path, const NpzReadOptions& options = {});

// The whole of a regular file of at most max_bytes; anything else raises ad::Error starting with
// `what` and the path. Opened with O_NONBLOCK, so a FIFO is refused rather than waited on.
std::vector<std::uint8_t> read_regular_file(const std::string& path, std::uint64_t max_bytes,
                                            const std::string& what);

// Writes `path` atomically (temporary file in the same directory, fsync, rename). A symbolic
// link is followed: its target is replaced, the link stays. A new file gets mode 0666 less the
// umask, an existing one keeps its mode. Temporaries left by a killed save are removed by the
// next save of the same file.
void write_file_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes);

// Convenience forms: named tensors to one file, and back.
template <class T>
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor<T>>>& arrays);
template <class T>
std::vector<std::pair<std::string, Tensor<T>>> load_npz(const std::string& path);

extern template Tensor<float> NpyArray::to_tensor<float>() const;
extern template Tensor<double> NpyArray::to_tensor<double>() const;

}  // namespace ad::nn
