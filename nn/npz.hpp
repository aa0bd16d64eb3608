// Reading and writing .npz files: NumPy's format for several named arrays, which numpy.load
// reads and numpy.savez / numpy.savez_compressed write. An .npz file is a zip archive with one
// entry "<name>.npy" per array (the .npy format: nn/npy.hpp).
//
// The zip container is read and written by libzip; the .npy inside each entry by nn/npy.cpp.
//
// Writing: stored (uncompressed) zip entries; libzip adds zip64 records when an archive needs
// them. The archive is built in memory, written to a temporary file in the target's directory
// and renamed over the target (nn/file_io.hpp), so a write that fails midway leaves any previous
// file untouched.
//
// Reading: stored or deflated entries (savez and savez_compressed), zip64 as numpy writes it.
// libzip checks the container (ZIP_CHECKCONS: local headers against the central directory) and
// each entry's CRC-32; the declared sizes are checked against the limits before anything is
// inflated, and an entry is inflated only up to its declared size. A truncated or corrupt file
// raises ad::Error naming the file (and the entry, once one is being read) and what is wrong;
// nothing is read out of bounds.
#pragma once

#include "autodiff/tensor.hpp"
#include "nn/npy.hpp"

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ad::nn {

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

// Parses the bytes of an .npz file; `name` is used in error messages.
NpzArchive decode_npz(const std::vector<std::uint8_t>& bytes, const std::string& name,
                      const NpzReadOptions& options = {});
// Reads a file and decodes it; a missing file, a directory, anything but a regular file (a FIFO,
// /dev/zero: refused without reading, never waited on), a file over the limit or a read error
// raise ad::Error naming the path.
NpzArchive read_npz(const std::string& path, const NpzReadOptions& options = {});

// Convenience forms: named tensors to one file, and back.
template <class T>
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor<T>>>& arrays);
template <class T>
std::vector<std::pair<std::string, Tensor<T>>> load_npz(const std::string& path);

}  // namespace ad::nn
