// What the fuzz targets do with one input, shared with tests/test_fuzz_corpus.cpp, which feeds
// every seed and every regression input through the same calls. Each function either returns
// normally or throws ad::Error; anything else (a crash, a sanitizer report, another exception)
// is a bug.
#pragma once

#include "nn/batch_norm.hpp"
#include "nn/serialize.hpp"
#include "nn/idx.hpp"
#include "nn/linear.hpp"
#include "nn/npz.hpp"
#include "nn/optim.hpp"
#include "nn/sequential.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ad::fuzz {

// The model that saved files are loaded into: float, so '<f8' files are converted too, with a buffer
// (BatchNorm's running statistics) and an optimiser with state, so every kind of key occurs.
struct SavedModel {
    std::shared_ptr<nn::Sequential<float>> model = make();
    nn::Adam<float> optimizer{*model, nn::AdamOptions{}};

    static std::shared_ptr<nn::Sequential<float>> make()
    {
        nn::Rng rng(7);
        auto m = std::make_shared<nn::Sequential<float>>();
        m->add(std::make_shared<nn::Linear<float>>(3, 4, rng));
        m->add(std::make_shared<nn::BatchNorm1d<float>>(4));
        m->add(std::make_shared<nn::Linear<float>>(4, 2, rng));
        return m;
    }
};

// An .npz archive, and each of its arrays as float and as double tensors.
inline std::size_t feed_npz(const std::vector<std::uint8_t>& bytes)
{
    const nn::NpzArchive archive = nn::decode_npz(bytes, "fuzz input");
    std::size_t elements = 0;
    for (const auto& [name, a] : archive) {
        elements += a.to_tensor<float>().size();
        elements += a.to_tensor<double>().size();
    }
    return elements;
}

// One .npy array.
inline std::size_t feed_npy(const std::vector<std::uint8_t>& bytes)
{
    return nn::decode_npy(bytes, "fuzz input").to_tensor<double>().size();
}

// An IDX file, plain or gzipped.
inline std::size_t feed_idx(const std::vector<std::uint8_t>& bytes)
{
    return nn::decode_idx(bytes, "fuzz input").data.size();
}

// A saved model file into the model, with and without the optimiser.
inline void feed_saved_model(SavedModel& m, const std::string& path)
{
    try {
        nn::load(*m.model, m.optimizer, path);
    } catch (const Error&) {
        nn::load(*m.model, path);  // a model saved without an optimiser
    }
}

}  // namespace ad::fuzz
