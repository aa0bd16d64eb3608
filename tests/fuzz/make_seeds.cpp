// Writes the seeds that come from the project's own writer into a corpus directory:
//     fuzz_make_seeds tests/fuzz/corpus/npz
// an archive of mixed arrays, and checkpoints of ad::fuzz::SavedModel with and without its
// optimiser (in float, as the model is, and in double, which loads into it too).
// tests/fuzz/make_corpus.py runs it and adds numpy's files, IDX files and truncations.
#include "fuzz_inputs.hpp"

#include <cstdio>

namespace nn = ad::nn;
using ad::Tensor;

namespace {

// A double copy of the float model, so its checkpoint holds '<f8' arrays.
std::shared_ptr<nn::Sequential<double>> as_double(nn::Module<float>& m)
{
    nn::Rng rng(7);
    auto d = std::make_shared<nn::Sequential<double>>();
    d->add(std::make_shared<nn::Linear<double>>(3, 4, rng));
    d->add(std::make_shared<nn::BatchNorm1d<double>>(4));
    d->add(std::make_shared<nn::Linear<double>>(4, 2, rng));
    const auto from = m.named_parameters();
    const auto to = d->named_parameters();
    for (std::size_t i = 0; i < from.size(); ++i) to[i].second->set_value(Tensor<double>(from[i].second->value()));
    return d;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];

    nn::NpzWriter w;
    w.add("matrix", Tensor<double>{{0.5, -1.25, 3.0}, {2.0, 0.0, -0.75}});
    w.add("vector", Tensor<float>{1.5f, -2.0f, 0.25f, 8.0f});
    w.add("block.0.weight", Tensor<float>::from_shape({2, 1, 2}));
    w.add("empty", Tensor<double>::from_shape({0, 3}));
    w.add_scalar("scalar", 0.1);
    w.write(dir + "/writer_mixed.npz");

    ad::fuzz::SavedModel m;
    // One optimiser step, so the Adam moments exist and are not all zero.
    for (auto* p : m.model->parameters()) p->grad = 0.5f * p->value() + 0.25f;
    m.optimizer.step();
    nn::save(*m.model, m.optimizer, dir + "/saved_adam_f4.npz");
    nn::save(*m.model, dir + "/saved_model_f4.npz");
    nn::save(*as_double(*m.model), dir + "/saved_model_f8.npz");
    std::printf("wrote the writer's seeds in %s\n", dir.c_str());
    return 0;
}
