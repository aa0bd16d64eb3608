// NumPy's .npy format for one array: the magic "\x93NUMPY", a version, a header that is a
// Python dict literal
//     {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces to a multiple of 64 bytes and ended by '\n', then the elements.
//
// Writing: version 1.0, dtype '<f4' for float and '<f8' for double, C order.
// Reading: versions 1.0, 2.0 and 3.0, dtypes '<f4', '<f8' and '<i8' (converted to the requested
// type; an int64 beyond 2^53, which float64 would round, is refused), C
// or Fortran order. The bytes are read front to back from a stream (NpyStream: memory here, a zip
// member in nn/npz.cpp): the header is checked, and the declared data size compared with the
// limits, before anything is allocated for the data or read of it. A truncated or corrupt array
// raises ad::Error naming it and what is wrong; nothing is read out of bounds.
#pragma once

#include "autodiff/tensor.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ad::nn {

// Limits of a read (of one .npy, or of every array of an .npz together), checked before anything
// is inflated or allocated for an array's data.
struct NpzReadOptions {
    // Largest total size of the arrays' data as declared by their .npy headers (4 or 8 bytes an
    // element; in memory each element takes 8). The default, 1 GiB, is far above any model of
    // this project and keeps a decompression bomb from exhausting memory. read_npz also refuses a
    // file larger than this plus 64 MiB for the zip structure and headers.
    std::uint64_t max_bytes = std::uint64_t(1) << 30;
    // Called with each array's name, dtype and shape once its .npy header is read, before its
    // data: false skips the data (the array is returned with has_data false; its bytes are
    // neither inflated nor CRC-checked). nn::load uses it to compare with the model.
    std::function<bool(const std::string& name, const std::string& dtype, const Shape& shape)> filter;
};

// One array as stored. The elements are kept in double, which holds every float exactly.
struct NpyArray {
    std::string dtype;           // "<f4", "<f8" or "<i8", as stored in the file
    Shape shape;                 // () for a scalar
    std::vector<double> data;    // row-major (C order)
    bool has_data = true;        // false: NpzReadOptions::filter skipped it (shape and dtype only)

    // The array as a tensor of T (a '<f8' array read as float is rounded to nearest).
    template <class T>
    Tensor<T> to_tensor() const;
};

// Parses the bytes of one .npy file; `name` is used in error messages.
NpyArray decode_npy(const std::vector<std::uint8_t>& bytes, const std::string& name,
                    const NpzReadOptions& options = {});
// The same, read straight into a tensor of T, C order ('<f8' into float rounds to nearest);
// options.max_bytes applies, the filter is not consulted.
template <class T>
Tensor<T> decode_npy_tensor(const std::vector<std::uint8_t>& bytes, const std::string& name,
                            const NpzReadOptions& options = {});

// The .npy file of a tensor, '<f4' for float and '<f8' for double.
std::vector<std::uint8_t> encode_npy(const Tensor<float>& t);
std::vector<std::uint8_t> encode_npy(const Tensor<double>& t);

// The bytes of one .npy, read front to back. A subclass supplies them (fill); read() checks that
// the array holds them.
class NpyStream {
public:
    NpyStream(std::uint64_t size, const std::string& where) : size_(size), where_(where) {}
    virtual ~NpyStream() = default;
    NpyStream(const NpyStream&) = delete;
    NpyStream& operator=(const NpyStream&) = delete;

    std::uint64_t size() const { return size_; }
    std::uint64_t remaining() const { return size_ - done_; }

    // Exactly n more bytes, or ad::Error saying the array ends before them.
    void read(std::uint8_t* out, std::size_t n, const char* what);

protected:
    // The next n bytes, which the declared size holds; done() bytes came before them.
    virtual void fill(std::uint8_t* out, std::size_t n) = 0;
    std::uint64_t done() const { return done_; }
    const std::string& where() const { return where_; }

private:
    std::uint64_t size_;
    const std::string& where_;
    std::uint64_t done_ = 0;
};

// One .npy from a stream, `name` given to the filter. `budget` is what is left of
// NpzReadOptions::max_bytes and is charged with the array's data; `skipped` is set when the
// filter skipped the data (the array then has none, and its bytes were not read).
NpyArray decode_npy_stream(NpyStream& s, const std::string& where, const std::string& name,
                           const NpzReadOptions& options, std::uint64_t& budget, bool& skipped);

extern template Tensor<float> NpyArray::to_tensor<float>() const;
extern template Tensor<double> NpyArray::to_tensor<double>() const;
extern template Tensor<float> decode_npy_tensor<float>(const std::vector<std::uint8_t>&, const std::string&,
                                                       const NpzReadOptions&);
extern template Tensor<double> decode_npy_tensor<double>(const std::vector<std::uint8_t>&, const std::string&,
                                                         const NpzReadOptions&);

}  // namespace ad::nn
