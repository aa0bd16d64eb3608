// Reading IDX files, the format of MNIST and Fashion-MNIST, plain or gzipped.
//
// An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions,
// then each dimension as a 32-bit integer) followed by the elements in row-major order. Only
// unsigned bytes (type 0x08) occur in these data sets and only they are read. Images files have
// magic 0x00000803 ([n, rows, cols]), label files 0x00000801 ([n]).
#pragma once

#include "autodiff/tensor.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ad::nn {

struct IdxArray {
    std::uint32_t magic = 0;
    Shape shape;
    std::vector<std::uint8_t> data;  // row-major, size = product of shape
};

// Decodes the bytes of an IDX file (gzipped if they start with the gzip magic 1f 8b). `name`
// is used in error messages. Raises ad::Error for a truncated or corrupt stream, an unknown
// type code, or a size that disagrees with the header.
IdxArray decode_idx(const std::vector<std::uint8_t>& bytes, const std::string& name);

// Reads and decodes one file. Raises ad::Error naming the file if it is missing, is a directory
// or cannot be read, or for anything decode_idx rejects.
IdxArray read_idx(const std::string& path);

// Images scaled to [0, 1] and flattened to [n, rows * cols], with their integer labels.
template <class T>
struct LabelledImages {
    Tensor<T> images;
    std::vector<std::int64_t> labels;
    std::size_t rows = 0, cols = 0;
    std::size_t size() const { return labels.size(); }
};

// An images file (magic 0x00000803) and its labels file (magic 0x00000801) with the same
// count. limit > 0 keeps only the first `limit` examples.
template <class T>
LabelledImages<T> load_labelled_images(const std::string& images_path, const std::string& labels_path,
                                       std::size_t limit = 0);

// The MNIST file layout: `dir/<split>-images-idx3-ubyte[.gz]` and `dir/<split>-labels-idx1-ubyte[.gz]`,
// split "train" or "t10k" (Fashion-MNIST uses the same names).
template <class T>
LabelledImages<T> load_mnist_split(const std::string& dir, const std::string& split, std::size_t limit = 0);

}  // namespace ad::nn
