// PyTorch state dicts both ways. tests/fixtures/make_state_dict_fixtures.py builds three models
// in PyTorch (an MLP with LayerNorm, a CNN with BatchNorm2d and BatchNorm1d after training-mode
// batches, the residual flagship MLP), saves each state dict with np.savez, in float32 and
// float64, with an input and PyTorch's output beside it. Here the twin nn/ model loads the file
// with nn::load as it is and must give PyTorch's output; and the models saved here, with known
// weights, must still be written byte for byte as the committed from_cpp_* files, which the ctest
// test state_dict_into_pytorch loads into PyTorch with load_state_dict(strict=True).
//
// Tolerance: the largest |ours - PyTorch| over an output divided by max(1, max |PyTorch|).
// Float32: the outputs are sums of up to 784 products (the residual MLP's first layer) and pass
// through LayerNorm or BatchNorm, computed by another BLAS in another order; a unit roundoff is
// 6e-8, so 1e-6 is about 17 of them on the output's scale. Float64: 1e-12, the same reasoning
// with a unit roundoff of 1.1e-16.
#include "temp_dir.hpp"

#include "nn/nn.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>

using ad::Shape;
using ad::Tape;
using ad::Tensor;
using Catch::Contains;
namespace nn = ad::nn;

namespace {

const std::string fixtures = std::string(AD_SOURCE_DIR) + "/tests/fixtures/state_dict/";
const char* const model_names[] = {"mlp_layernorm", "cnn_batchnorm", "residual_mlp"};

template <class T>
const char* dtype_tag()
{
    return sizeof(T) == 4 ? "f32" : "f64";
}

template <class T>
double tolerance()
{
    return sizeof(T) == 4 ? 1e-6 : 1e-12;
}

// nn::mlp({6, 16, 16, 3}, tanh, layer norm): PyTorch's Sequential(Linear, LayerNorm, Tanh, ...).
template <class T>
std::shared_ptr<nn::Module<T>> mlp_layernorm(nn::Rng& rng)
{
    nn::MLPOptions o;
    o.sizes = {6, 16, 16, 3};
    o.activation = nn::Activation::tanh;
    o.layer_norm = true;
    return nn::mlp<T>(o, rng);
}

// Conv-BN-ReLU-pool twice, Flatten, Linear, BatchNorm1d, ReLU, Linear; [N, 1, 8, 8] inputs.
template <class T>
std::shared_ptr<nn::Module<T>> cnn_batchnorm(nn::Rng& rng)
{
    ad::Conv2dOptions same;
    same.padding = {1, 1};
    auto net = std::make_shared<nn::Sequential<T>>();
    net->add(std::make_shared<nn::Conv2d<T>>(1, 4, 3, rng, same, nn::no_bias));
    net->add(std::make_shared<nn::BatchNorm2d<T>>(4));
    net->add(std::make_shared<nn::ReLU<T>>());
    net->add(std::make_shared<nn::MaxPool2d<T>>(2));
    net->add(std::make_shared<nn::Conv2d<T>>(4, 6, 3, rng, same));
    net->add(std::make_shared<nn::BatchNorm2d<T>>(6));
    net->add(std::make_shared<nn::ReLU<T>>());
    net->add(std::make_shared<nn::MaxPool2d<T>>(2));
    net->add(std::make_shared<nn::Flatten<T>>());
    net->add(std::make_shared<nn::Linear<T>>(24, 12, rng));
    net->add(std::make_shared<nn::BatchNorm1d<T>>(12));
    net->add(std::make_shared<nn::ReLU<T>>());
    net->add(std::make_shared<nn::Linear<T>>(12, 5, rng));
    return net;
}

// The model of examples/fashion_mnist.cpp (residual, layer norm, ReLU, dropout 0.1), 784-64.
template <class T>
std::shared_ptr<nn::Module<T>> residual_mlp(nn::Rng& rng)
{
    nn::MLPOptions o;
    o.sizes = {784, 64, 64, 64, 10};
    o.activation = nn::Activation::relu;
    o.residual = true;
    o.layer_norm = true;
    o.dropout = 0.1;
    return nn::mlp<T>(o, rng);
}

template <class T>
std::shared_ptr<nn::Module<T>> make_model(const std::string& name)
{
    nn::Rng rng(7);  // any: every value is loaded or set
    if (name == "mlp_layernorm") return mlp_layernorm<T>(rng);
    if (name == "cnn_batchnorm") return cnn_batchnorm<T>(rng);
    return residual_mlp<T>(rng);
}

template <class T>
Tensor<T> array(const nn::NpzArchive& archive, const std::string& key)
{
    for (const auto& [name, a] : archive)
        if (name == key) return a.template to_tensor<T>();
    FAIL("no array " << key);
    return {};
}

template <class T>
Tensor<T> evaluate(nn::Module<T>& model, const Tensor<T>& x)
{
    model.eval();
    Tape<T> tape;
    return model(tape.constant(x)).value();
}

// max |ours - theirs| / max(1, max |theirs|), and NaN when the shapes differ.
template <class T>
double worst_difference(const Tensor<T>& ours, const Tensor<T>& theirs)
{
    if (ours.shape() != theirs.shape()) return std::nan("");
    double diff = 0, scale = 1;
    for (std::size_t i = 0; i < ours.size(); ++i) {
        diff = std::max(diff, std::abs(double(ours.flat(i)) - double(theirs.flat(i))));
        scale = std::max(scale, std::abs(double(theirs.flat(i))));
    }
    return diff / scale;
}

template <class T>
std::set<std::string> model_keys(nn::Module<T>& model)
{
    std::set<std::string> keys;
    for (const auto& e : model.named_parameters()) keys.insert(e.first);
    for (const auto& e : model.named_buffers()) keys.insert(e.first);
    return keys;
}

template <class T>
void check_pytorch_fixture(const std::string& name)
{
    const std::string stem = fixtures + name + "_" + dtype_tag<T>();
    INFO(stem);
    auto model = make_model<T>(name);
    std::set<std::string> file_keys;
    for (const auto& e : nn::read_npz(stem + ".npz")) file_keys.insert(e.first);
    CHECK(model_keys(*model) == file_keys);  // PyTorch's keys, exactly

    nn::load(*model, stem + ".npz");
    const nn::NpzArchive io = nn::read_npz(stem + "_io.npz");
    const Tensor<T> y = evaluate(*model, array<T>(io, "input"));
    const double worst = worst_difference(y, array<T>(io, "output"));
    WARN(name << " " << dtype_tag<T>() << ": worst difference from PyTorch " << worst);
    CHECK(worst <= tolerance<T>());
}

// Known values: exact binary fractions, so the file is the same on every machine. Parameters
// in [-11/32, 11/32], running variances in [1/2, 1], counts 5.
template <class T>
void set_known_values(nn::Module<T>& model)
{
    std::size_t j = 0;
    for (auto& [name, p] : model.named_parameters()) {
        Tensor<T> v = Tensor<T>::from_shape(p->value().shape());
        for (std::size_t k = 0; k < v.size(); ++k) v.flat(k) = T(double(int((k * 7 + j * 3) % 23) - 11) / 32);
        p->set_value(std::move(v));
        ++j;
    }
    for (auto& [name, b] : model.named_buffers()) {
        for (std::size_t k = 0; k < b->size(); ++k) {
            if (name.size() >= 11 && name.compare(name.size() - 11, 11, "running_var") == 0)
                b->flat(k) = T(0.5 + double((k * 5 + j) % 9) / 16);
            else if (name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0)
                b->flat(k) = T(5);
            else
                b->flat(k) = T(double(int((k * 3 + j) % 13) - 6) / 16);
        }
        ++j;
    }
}

template <class T>
Shape input_shape(const std::string& name)
{
    if (name == "mlp_layernorm") return {5, 6};
    if (name == "cnn_batchnorm") return {4, 1, 8, 8};
    return {4, 784};
}

template <class T>
Tensor<T> known_input(const Shape& shape)
{
    Tensor<T> x = Tensor<T>::from_shape(shape);
    for (std::size_t k = 0; k < x.size(); ++k) x.flat(k) = T(double(int((k * 13) % 29) - 14) / 8);
    return x;
}

// from_cpp_NAME_D.npz (nn::save of the model with known values) and from_cpp_NAME_D_io.npz (the
// input and this model's output) in `dir`.
template <class T>
void write_for_pytorch(const std::string& name, const std::string& dir)
{
    auto model = make_model<T>(name);
    set_known_values(*model);
    const std::string stem = dir + "/from_cpp_" + name + "_" + dtype_tag<T>();
    nn::save(*model, stem + ".npz");
    const Tensor<T> x = known_input<T>(input_shape<T>(name));
    nn::NpzWriter w;
    w.add("input", x);
    w.add("output", evaluate(*model, x));
    w.write(stem + "_io.npz");
}

std::vector<std::uint8_t> read_bytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("PyTorch state dicts load into the twin models and give PyTorch's outputs", "[state_dict]")
{
    for (const char* name : model_names) {
        check_pytorch_fixture<float>(name);
        check_pytorch_fixture<double>(name);
    }
}

TEST_CASE("a PyTorch state dict loads its buffers, num_batches_tracked from int64", "[state_dict]")
{
    auto model = make_model<double>("cnn_batchnorm");
    const std::string path = fixtures + "cnn_batchnorm_f64.npz";
    nn::load(*model, path);
    const nn::NpzArchive file = nn::read_npz(path);
    for (const auto& [name, b] : model->named_buffers()) {
        INFO(name);
        const bool same = *b == array<double>(file, name);
        CHECK(same);
    }
    auto& bn = dynamic_cast<nn::BatchNorm2d<double>&>((*std::dynamic_pointer_cast<nn::Sequential<double>>(model))[1]);
    CHECK(bn.num_batches_tracked()() == 3.0);  // three training batches in PyTorch
    double moved = 0;  // the running mean is no longer its initial zeros
    for (double m : bn.running_mean()) moved = std::max(moved, std::abs(m));
    CHECK(moved > 0.01);
}

TEST_CASE("a PyTorch state dict that does not match the model is refused, naming keys and shapes",
          "[state_dict][errors]")
{
    nn::Rng rng(3);
    const std::string path = fixtures + "mlp_layernorm_f64.npz";

    SECTION("a layer of another width: the key and both shapes")
    {
        nn::MLPOptions o;
        o.sizes = {6, 16, 17, 3};
        o.activation = nn::Activation::tanh;
        o.layer_norm = true;
        auto model = nn::mlp<double>(o, rng);
        CHECK_THROWS_WITH(nn::load(*model, path),
                          Contains("3.weight has shape [16, 16] in the file but [17, 16] in the model") &&
                              Contains("4.weight has shape [16] in the file but [17] in the model") &&
                              Contains("nothing was loaded"));
    }
    SECTION("a model with a layer more: the missing key")
    {
        nn::MLPOptions o;
        o.sizes = {6, 16, 16, 16, 3};
        o.activation = nn::Activation::tanh;
        o.layer_norm = true;
        auto model = nn::mlp<double>(o, rng);
        CHECK_THROWS_WITH(nn::load(*model, path), Contains("missing 9.weight [3, 16]") && Contains("9.bias [3]"));
    }
    SECTION("a model without the layer norms: the keys the model lacks")
    {
        nn::MLPOptions o;
        o.sizes = {6, 16, 16, 3};
        o.activation = nn::Activation::tanh;
        auto model = nn::mlp<double>(o, rng);
        CHECK_THROWS_WITH(nn::load(*model, path), Contains("unexpected 1.weight [16]"));
    }
    SECTION("the io file is not a state dict")
    {
        auto model = make_model<double>("mlp_layernorm");
        CHECK_THROWS_WITH(nn::load(*model, fixtures + "mlp_layernorm_f64_io.npz"),
                          Contains("missing 0.weight [16, 6]") && Contains("... and 2 more"));  // input, output
    }
}

TEST_CASE("models saved for PyTorch are written byte for byte as the committed files", "[state_dict]")
{
    adtest::TempDir dir;
    for (const char* name : model_names) {
        write_for_pytorch<float>(name, dir.path.string());
        write_for_pytorch<double>(name, dir.path.string());
        for (const char* d : {"f32", "f64"}) {
            const std::string file = std::string("from_cpp_") + name + "_" + d + ".npz";
            INFO(file);
            const auto ours = read_bytes(dir.file(file)), committed = read_bytes(fixtures + file);
            if (ours != committed) {
                // Say which arrays changed before failing.
                const nn::NpzArchive a = nn::read_npz(dir.file(file)), b = nn::read_npz(fixtures + file);
                CHECK(a.size() == b.size());
                for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
                    INFO(a[i].first << " against " << b[i].first);
                    CHECK(a[i].first == b[i].first);
                    CHECK(a[i].second.dtype == b[i].second.dtype);
                    CHECK(a[i].second.shape == b[i].second.shape);
                    CHECK(a[i].second.data == b[i].second.data);
                }
            }
            CHECK(ours == committed);
        }
    }
}

// Run by tests/fixtures/make_state_dict_fixtures.py --check-cpp (the ctest test
// state_dict_into_pytorch), which loads these files into PyTorch.
TEST_CASE("state dict: write the models for PyTorch", "[.pytorch]")
{
    const char* dir = std::getenv("AD_STATE_DICT_OUT_DIR");
    REQUIRE(dir != nullptr);
    for (const char* name : model_names) {
        write_for_pytorch<float>(name, dir);
        write_for_pytorch<double>(name, dir);
    }
}
