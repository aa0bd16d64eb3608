// Heap allocations in steady state, counted for real by the benchmarks' replacement of malloc
// and friends (bench/alloc_count.cpp, which forwards to glibc's own): exits non-zero if a
// training step of the example GPT (examples/char_model.hpp: embeddings, causal attention,
// pre-LN blocks, cross-entropy over [B, T, V]) with clipping and AdamW allocates anything after
// its first steps, at a small width and at one whose linear layers take affine's two-halves path, or if a Hessian-vector product (grad with create_graph, then backward)
// through residual blocks of affine, layer_norm and relu allocates more with more blocks: the
// ops its graph VJPs record reuse the tape's buffers, and only the few vectors that grad()
// returns are new; or if the first recording of a chain of one-element ops on a fresh tape
// allocates anything per op (such values are held in the records themselves, which come 256 to
// a chunk). One BLAS thread: a threaded OpenBLAS GEMM allocates its own job descriptors per call.
// Not built under sanitizers, which replace malloc themselves.
#include "alloc_count.hpp"
#include "char_model.hpp"
#include "autodiff/threads.hpp"
#include "nn/clip.hpp"
#include "nn/optim.hpp"

#include <cstdio>
#include <random>
#include <vector>

namespace {

// Heap allocations of one Hessian-vector product through `blocks` residual blocks, in steady
// state (the mean over 5 after 3).
double hvp_allocations(std::size_t blocks)
{
    const std::size_t width = 8, batch = 4;
    std::mt19937_64 gen(7);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    auto random = [&](ad::Shape s) {
        ad::Tensor<float> t = ad::Tensor<float>::from_shape(s);
        for (auto& v : t) v = normal(gen);
        return t;
    };
    std::vector<ad::Parameter<float>> p;
    for (std::size_t l = 0; l < blocks; ++l) {
        p.emplace_back(random({width, width}));
        p.emplace_back(random({width}));
        p.emplace_back(random({width}) + 1.0f);
        p.emplace_back(random({width}));
    }
    std::vector<ad::Parameter<float>*> ptrs;
    std::vector<ad::Tensor<float>> v;
    for (auto& q : p) {
        ptrs.push_back(&q);
        v.push_back(random(q.value().shape()));
    }
    const ad::Tensor<float> x = random({batch, width}), target = random({batch, width});
    ad::Tape<float> tape;
    auto hvp = [&] {
        tape.clear();
        ad::Var<float> h = tape.constant(x);
        for (std::size_t l = 0; l < blocks; ++l) {
            const auto z = ad::affine(h, tape.param(p[4 * l]), tape.param(p[4 * l + 1]));
            h = h + ad::relu(ad::layer_norm(z, tape.param(p[4 * l + 2]), tape.param(p[4 * l + 3])));
        }
        const auto g = ad::grad(ad::mse(h, tape.constant(target)), ptrs, ad::create_graph);
        auto s = ad::sum(g[0] * tape.constant(v[0]));
        for (std::size_t i = 1; i < g.size(); ++i) s = s + ad::sum(g[i] * tape.constant(v[i]));
        for (auto& q : p) q.zero_grad();
        ad::backward(s);
    };
    for (int i = 0; i < 3; ++i) hvp();
    const auto before = bench::allocations();
    for (int i = 0; i < 5; ++i) hvp();
    return double(bench::allocations() - before) / 5;
}

// Heap allocations of recording, on a fresh tape, n ops of the cycle tanh, * a, + b, sin, exp
// on one-element values of rank `rank`, and of sweeping it.
double scalar_chain_allocations(std::size_t n, std::size_t rank)
{
    const ad::Shape one(rank, 1);
    const auto before = bench::allocations();
    {
        ad::Tape<double> tape;
        const auto x = tape.variable(xt::full_like(ad::Tensor<double>::from_shape(one), 0.3));
        const auto a = tape.variable(xt::full_like(ad::Tensor<double>::from_shape(one), 0.9));
        const auto b = tape.variable(xt::full_like(ad::Tensor<double>::from_shape(one), 0.1));
        ad::Var<double> v = x;
        for (std::size_t k = 0; k < n; ++k) {
            switch (k % 5) {
                case 0: v = ad::tanh(v); break;
                case 1: v = v * a; break;
                case 2: v = v + b; break;
                case 3: v = ad::sin(v); break;
                default: v = ad::exp(v); break;
            }
        }
        ad::grad(ad::sum(v), {x, a, b});
    }
    return double(bench::allocations() - before);
}

// Heap allocations of 5 training steps of the example GPT after 3 (AdamW, clipping), on
// batches of `batch` sequences of the model's context; prints them with the last loss.
long char_model_allocations(const examples::CharModelConfig& c, std::size_t batch)
{
    ad::nn::Rng rng(3);
    examples::CharTransformer<float> model(c, rng);
    ad::nn::AdamWOptions o;
    o.lr = 1e-3;
    ad::nn::AdamW<float> adamw(model, o);
    const ad::nn::ParameterList<float> params(model);
    std::mt19937_64 gen(5);
    std::uniform_int_distribution<std::int64_t> id(0, std::int64_t(c.vocab) - 1);
    xt::xarray<std::int64_t> x = xt::zeros<std::int64_t>({batch, c.context}), y = x;
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
    std::printf("char model training step (B %zu, T %zu, width %zu, %zu heads, %zu blocks): %ld heap allocations over "
                "5 steps after 3, loss %.4f\n",
                batch, c.context, c.width, c.heads, c.blocks, made, last);
    return made;
}

}  // namespace

int main()
{
    ad::set_num_threads(1);  // OpenBLAS's threaded driver allocates per call
    examples::CharModelConfig c;
    c.vocab = 11, c.context = 8, c.width = 16, c.heads = 2, c.blocks = 2;
    // Wide enough that its linear layers' gradients run in halves of their outputs (affine's
    // VJP past kernels::concurrent_gemm_min: 128 rows x 64 x 64 and more), beside the broadcast
    // reductions of other shapes in the same sweep.
    examples::CharModelConfig wide = c;
    wide.context = 32, wide.width = 64, wide.heads = 4;
    const long made = char_model_allocations(c, 3) + char_model_allocations(wide, 4);
    const double two = hvp_allocations(2), eight = hvp_allocations(8);
    std::printf("Hessian-vector product through residual blocks: %.1f heap allocations with 2 blocks, %.1f with 8\n",
                two, eight);
    const std::size_t chain = 20000;
    const double chain_allocations = scalar_chain_allocations(chain, 1);
    const double chain_allocations_rank4 = scalar_chain_allocations(chain, 4);
    std::printf("recording and sweeping a %zu-op chain of one-element values on a fresh tape: %.0f heap allocations "
                "(shape [1]), %.0f (shape [1, 1, 1, 1])\n",
                chain, chain_allocations, chain_allocations_rank4);
    int status = 0;
    // A record per op is a 128-byte slot in a chunk of 256; a tensor per value would be at least
    // two allocations per op (the xarray and its buffer). One per 100 ops leaves room for the
    // chunks, the slabs they come from, and the few buffers the sweep and grad() make.
    for (const double made_by_chain : {chain_allocations, chain_allocations_rank4})
        if (made_by_chain > double(chain) / 100) {
            std::fprintf(stderr, "one-element chain: expected fewer than one allocation per 100 ops\n");
            status = 1;
        }
    if (made != 0) {
        std::fprintf(stderr, "training step: expected no allocation\n");
        status = 1;
    }
    if (eight != two) {
        std::fprintf(stderr, "Hessian-vector product: expected as many allocations with 8 blocks as with 2\n");
        status = 1;
    }
    return status;
}
