// Heap allocations in steady state, counted for real by the benchmarks' replacement of malloc
// and friends (bench/alloc_count.cpp, which forwards to glibc's own): exits non-zero if a
// training step of the example GPT (examples/char_model.hpp: embeddings, causal attention,
// pre-LN blocks, cross-entropy over [B, T, V]) with clipping and AdamW allocates anything after
// its first steps. One BLAS thread: a threaded OpenBLAS GEMM allocates its own job descriptors
// per call. Not built under sanitizers, which replace malloc themselves.
#include "alloc_count.hpp"
#include "char_model.hpp"
#include "autodiff/threads.hpp"
#include "nn/clip.hpp"
#include "nn/optim.hpp"

#include <cstdio>
#include <random>

int main()
{
    ad::set_num_threads(1);  // OpenBLAS's threaded driver allocates per call
    examples::CharModelConfig c;
    c.vocab = 11, c.context = 8, c.width = 16, c.heads = 2, c.blocks = 2;
    ad::nn::Rng rng(3);
    examples::CharTransformer<float> model(c, rng);
    ad::nn::AdamWOptions o;
    o.lr = 1e-3;
    ad::nn::AdamW<float> adamw(model, o);
    const ad::nn::ParameterList<float> params(model);
    std::mt19937_64 gen(5);
    std::uniform_int_distribution<std::int64_t> id(0, std::int64_t(c.vocab) - 1);
    xt::xarray<std::int64_t> x = xt::zeros<std::int64_t>({3, 8}), y = x;
    ad::Tape<float> tape;
    auto step = [&] {
        for (auto& v : x) v = id(gen);  // new tokens every step, same shapes
        for (auto& v : y) v = id(gen);
        tape.clear();
        adamw.zero_grad();
        const auto loss = model.loss(model.logits(x, tape), y);
        ad::backward(loss);
        ad::nn::clip_grad_norm(params, 1.0);
        adamw.step();
        return loss.item();
    };
    for (int i = 0; i < 3; ++i) step();
    const auto before = bench::allocations();
    double last = 0;
    for (int i = 0; i < 5; ++i) last = step();
    const long made = long(bench::allocations() - before);
    std::printf("char model training step (B 3, T 8, width 16, 2 heads, 2 blocks): %ld heap allocations over 5 "
                "steps after 3, loss %.4f\n",
                made, last);
    if (made == 0) return 0;
    std::fprintf(stderr, "expected none\n");
    return 1;
}
