// Data-parallel training under mpirun -np 2: each rank trains on its part of every global batch,
// and every rank also trains a reference model in a single process on the whole global batch
// (no MPI involved). After every step the replicas must hold the same bits, and after several SGD
// and Adam steps the data-parallel parameters must equal the reference to 1e-12 relative, in
// double, for even and odd global batches, one bucket or many.
//
// Every test case here is collective: each rank runs them all, in the same order (no filters).
#define CATCH_CONFIG_RUNNER
#include "nn/distributed.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

#include <catch2/catch.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

using ad::Tensor;
namespace nn = ad::nn;
namespace dist = ad::dist;

namespace {

constexpr std::size_t kInputs = 5, kClasses = 3;

struct Data {
    Tensor<double> x;                 // [n, kInputs]
    std::vector<std::int64_t> y;      // [n]
};

Data make_data(std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal(0, 1);
    Data d;
    d.x = Tensor<double>::from_shape({n, kInputs});
    for (auto& v : d.x) v = normal(gen);
    for (std::size_t i = 0; i < n; ++i) d.y.push_back(static_cast<std::int64_t>(gen() % kClasses));
    return d;
}

// 5-8-8-3 with layer norm and tanh: six parameters of several sizes.
std::shared_ptr<nn::Sequential<double>> make_model(std::uint64_t seed)
{
    nn::MLPOptions m;
    m.sizes = {kInputs, 8, 8, kClasses};
    m.activation = nn::Activation::tanh;
    m.layer_norm = true;
    nn::Rng rng(seed);
    return nn::mlp<double>(m, rng);
}

// The rows `idx` of the data set.
Data take(const Data& d, const std::vector<std::size_t>& idx)
{
    Data out;
    out.x = Tensor<double>::from_shape({idx.size(), kInputs});
    for (std::size_t i = 0; i < idx.size(); ++i) {
        std::copy_n(d.x.data() + idx[i] * kInputs, kInputs, out.x.data() + i * kInputs);
        out.y.push_back(d.y[idx[i]]);
    }
    return out;
}

enum class Opt { sgd, adam };

std::unique_ptr<nn::Optimizer<double>> make_optimizer(nn::Module<double>& model, Opt which)
{
    if (which == Opt::sgd) {
        nn::SGDOptions o;
        o.lr = 0.1;
        o.momentum = 0.9;
        o.weight_decay = 1e-3;
        return std::make_unique<nn::SGD<double>>(model, o);
    }
    nn::AdamOptions o;
    o.lr = 0.01;
    o.weight_decay = 1e-3;
    return std::make_unique<nn::Adam<double>>(model, o);
}

using Params = std::vector<Tensor<double>>;

Params values_of(nn::Module<double>& model)
{
    Params out;
    for (auto* p : model.parameters()) out.push_back(p->value());
    return out;
}

// The single-process reference: the same model trained with the whole global batch.
Params train_single(const Data& data, std::size_t batch, int steps, Opt which, std::uint64_t seed)
{
    auto model = make_model(seed);
    auto opt = make_optimizer(*model, which);
    dist::Sampler sampler(data.y.size(), batch, 7, 0, 1);
    ad::Tape<double> tape;
    for (int s = 0; s < steps; ++s) {
        const auto step = static_cast<std::size_t>(s) % sampler.steps();
        if (step == 0) sampler.set_epoch(static_cast<std::uint64_t>(s) / sampler.steps());
        const Data b = take(data, sampler.indices(step));
        tape.clear();
        opt->zero_grad();
        ad::backward(nn::cross_entropy_loss((*model)(tape.constant(b.x)), b.y));
        opt->step();
    }
    return values_of(*model);
}

// The same run data-parallel over every rank of MPI_COMM_WORLD. Rank r builds its model from
// seed + r: the constructor's broadcast must give every rank rank 0's model.
Params train_parallel(const Data& data, std::size_t batch, int steps, Opt which, std::uint64_t seed,
                      dist::DataParallelOptions options = {})
{
    const int r = dist::rank(), P = dist::size();
    auto model = make_model(seed + static_cast<std::uint64_t>(r));
    auto opt = make_optimizer(*model, which);
    dist::DataParallel<double> dp(*model, *opt, options);
    dp.check_replicas();
    auto sampler = dist::make_sampler(data.y.size(), batch, 7, r, P);
    ad::Tape<double> tape;
    for (int s = 0; s < steps; ++s) {
        const auto step = static_cast<std::size_t>(s) % sampler.steps();
        if (step == 0) sampler.set_epoch(static_cast<std::uint64_t>(s) / sampler.steps());
        const auto shard = sampler.shard(step);
        dp.zero_grad();
        if (shard.count() > 0) {
            const Data b = take(data, sampler.indices(step));
            tape.clear();
            dp.backward(nn::cross_entropy_loss((*model)(tape.constant(b.x)), b.y), shard.weight());
        }
        dp.step();
        dp.check_replicas();
    }
    CHECK(dp.steps() == std::uint64_t(steps));
    dp.finish();
    return values_of(*model);
}

// max |a - b| / max |b| over each tensor, the largest over all tensors.
double relative_error(const Params& a, const Params& b)
{
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        double diff = 0, scale = 0;
        for (std::size_t j = 0; j < a[i].size(); ++j) {
            diff = std::max(diff, std::abs(a[i].flat(j) - b[i].flat(j)));
            scale = std::max(scale, std::abs(b[i].flat(j)));
        }
        worst = std::max(worst, diff / scale);
    }
    return worst;
}

// max |a - b| / max |b| over all the elements of all tensors at once.
double overall_change(const Params& a, const Params& b)
{
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t j = 0; j < a[i].size(); ++j) {
            diff = std::max(diff, std::abs(a[i].flat(j) - b[i].flat(j)));
            scale = std::max(scale, std::abs(b[i].flat(j)));
        }
    return diff / scale;
}

bool same_bits(const Params& a, const Params& b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].shape() != b[i].shape() ||
            std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(double)) != 0)
            return false;
    return true;
}

}  // namespace

TEST_CASE("shard: the parts of a global batch are disjoint, cover it in order, and the first B % P ranks take one more", "[mpi][shard]")
{
    for (std::size_t B : {0, 1, 2, 7, 8, 128, 1001})
        for (int P : {1, 2, 3, 5}) {
            std::size_t next = 0;
            double weights = 0;
            for (int r = 0; r < P; ++r) {
                const auto s = dist::shard(B, r, P);
                CHECK(s.begin == next);
                CHECK(s.global == B);
                const std::size_t expected = B / std::size_t(P) + (std::size_t(r) < B % std::size_t(P) ? 1 : 0);
                CHECK(s.count() == expected);
                weights += s.weight();
                next = s.end;
            }
            CHECK(next == B);
            if (B > 0) CHECK(weights == Approx(1.0).epsilon(1e-15));
        }
    CHECK_THROWS_WITH(dist::shard(8, 2, 2), Catch::Contains("rank 2 of 2 ranks"));
    CHECK_THROWS_WITH(dist::shard(8, 0, 0), Catch::Contains("expected size >= 1"));
    CHECK_THROWS_WITH(dist::Sampler(10, 0, 1, 0, 2), Catch::Contains("at least one example"));
}

TEST_CASE("Sampler: every rank draws the same permutation and the ranks' parts of each global batch partition it", "[mpi][shard]")
{
    const int r = dist::rank(), P = dist::size();
    const std::size_t n = 23, B = 5;  // 5 global batches, the last of 3 examples
    auto sampler = dist::make_sampler(n, B, 42, r, P);
    REQUIRE(sampler.steps() == 5);
    for (std::uint64_t epoch : {0, 1}) {
        sampler.set_epoch(epoch);
        // The permutation is one: gather every rank's and compare with rank 0's.
        std::vector<std::uint64_t> mine(sampler.order().begin(), sampler.order().end());
        std::vector<std::uint64_t> all(n * std::size_t(P));
        MPI_Allgather(mine.data(), int(n), MPI_UINT64_T, all.data(), int(n), MPI_UINT64_T, MPI_COMM_WORLD);
        for (int q = 1; q < P; ++q)
            CHECK(std::equal(all.begin(), all.begin() + long(n), all.begin() + long(n) * q));
        std::vector<std::size_t> sorted(mine.begin(), mine.end());
        std::sort(sorted.begin(), sorted.end());
        for (std::size_t i = 0; i < n; ++i) CHECK(sorted[i] == i);
        // This rank's indices of step s are its shard's slice of the permutation.
        for (std::size_t s = 0; s < sampler.steps(); ++s) {
            const auto sh = sampler.shard(s);
            const auto idx = sampler.indices(s);
            CHECK(sh.global == std::min(B, n - s * B));
            REQUIRE(idx.size() == sh.count());
            for (std::size_t i = 0; i < idx.size(); ++i) CHECK(idx[i] == sampler.order()[sh.begin + i]);
        }
    }
    sampler.set_epoch(0);
    const auto first = sampler.order();
    sampler.set_epoch(1);
    CHECK(first != sampler.order());
}

TEST_CASE("two ranks with half the global batch each equal one process with the whole batch to 1e-12 (SGD with momentum and Adam, even and odd batches)", "[mpi][equivalence]")
{
    const Data data = make_data(40, 3);
    struct Case {
        const char* name;
        Opt opt;
        std::size_t batch;
        std::size_t bucket_bytes;
        std::size_t message_bytes = std::size_t(1) << 20;
    };
    const Case cases[] = {
        {"SGD, batch 8, one bucket", Opt::sgd, 8, std::size_t(4) << 20},
        {"SGD, batch 7, a bucket per 100 bytes", Opt::sgd, 7, 100},
        {"Adam, batch 8, a bucket per 100 bytes", Opt::adam, 8, 100},
        {"Adam, batch 7, one bucket", Opt::adam, 7, std::size_t(4) << 20},
        {"Adam, batch 1 (one rank has no example)", Opt::adam, 1, 256},
        {"SGD, batch 9, one bucket sent in pieces of 3 doubles", Opt::sgd, 9, std::size_t(4) << 20, 24},
        {"Adam, batch 8, buckets of 100 bytes in pieces of 40", Opt::adam, 8, 100, 40},
        // Gradients of a quarter message or more are sent from .grad itself, smaller ones packed:
        // every gradient from .grad in the two cases above, none in the ones before, and here the
        // weights (128 bytes and more) from .grad and the 64-byte biases and layer-norm gains packed,
        // in one bucket.
        {"SGD, batch 8, one bucket, weights sent from .grad, biases packed", Opt::sgd, 8, std::size_t(4) << 20, 400},
    };
    const int steps = 8;
    for (const auto& c : cases) {
        dist::DataParallelOptions o;
        o.bucket_bytes = c.bucket_bytes;
        o.message_bytes = c.message_bytes;
        const Params single = train_single(data, c.batch, steps, c.opt, 11);
        const Params parallel = train_parallel(data, c.batch, steps, c.opt, 11, o);
        const Params start = values_of(*make_model(11));
        const double err = relative_error(parallel, single);
        if (dist::rank() == 0)
            std::printf("equivalence, %s, %d steps on %d ranks: largest relative difference %.3g "
                        "(parameters moved by %.3g relative)\n",
                        c.name, steps, dist::size(), err, overall_change(single, start));
        INFO(c.name);
        CHECK(err <= 1e-12);
        // The steps did something: the parameters moved far more than the tolerance.
        CHECK(overall_change(single, start) > 1e-3);
    }
}

TEST_CASE("the same data-parallel run twice gives the same bits, with the allreduce overlapped or after the sweep", "[mpi][determinism]")
{
    const Data data = make_data(40, 4);
    dist::DataParallelOptions o;
    o.bucket_bytes = 200;
    const Params a = train_parallel(data, 9, 6, Opt::adam, 5, o);
    const Params b = train_parallel(data, 9, 6, Opt::adam, 5, o);
    o.overlap = false;
    const Params c = train_parallel(data, 9, 6, Opt::adam, 5, o);
    CHECK(same_bits(a, b));
    CHECK(same_bits(a, c));
}

TEST_CASE("DataParallel buckets the parameters in reverse order by size and starts from rank 0's model and buffers", "[mpi][data_parallel]")
{
    const int r = dist::rank();
    // Linear(5, 8) 40 + 8, BatchNorm1d(8) 8 + 8 and buffers, Linear(8, 3) 24 + 3 doubles.
    auto make = [](std::uint64_t seed) {
        nn::Rng rng(seed);
        auto m = std::make_shared<nn::Sequential<double>>();
        m->add(std::make_shared<nn::Linear<double>>(kInputs, 8, rng));
        m->add(std::make_shared<nn::BatchNorm1d<double>>(8));
        m->add(std::make_shared<nn::Linear<double>>(8, kClasses, rng));
        return m;
    };
    auto model = make(100 + std::uint64_t(r));
    // Buffers that differ by rank, as after some local training.
    for (auto& [name, t] : model->named_buffers()) *t += double(r + 1);
    const auto reference = make(100);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    dist::DataParallelOptions o;
    // From the last parameter, a bucket closing once it holds 216 bytes: {2.bias, 2.weight} 216
    // bytes, {1.bias, 1.weight, 0.bias, 0.weight} 512.
    o.bucket_bytes = 27 * 8;
    dist::DataParallel<double> dp(*model, opt, o);
    CHECK(dp.buckets() == 2);
    o.bucket_bytes = 100;         // {2.bias, 2.weight}, {1.bias, 1.weight}, {0.bias, 0.weight}
    CHECK(dist::DataParallel<double>(*model, opt, o).buckets() == 3);
    o.bucket_bytes = 1;           // one per parameter
    CHECK(dist::DataParallel<double>(*model, opt, o).buckets() == 6);
    REQUIRE_NOTHROW(dp.check_replicas());
    CHECK(same_bits(values_of(*model), values_of(*reference)));
    // Buffers are rank 0's: the initial values + 1.
    const auto mine = model->named_buffers(), initial = reference->named_buffers();
    REQUIRE(mine.size() == 3);  // running_mean, running_var, num_batches_tracked
    for (std::size_t i = 0; i < mine.size(); ++i) {
        INFO(mine[i].first);
        for (std::size_t j = 0; j < mine[i].second->size(); ++j)
            CHECK(mine[i].second->flat(j) == initial[i].second->flat(j) + 1.0);
    }
}

TEST_CASE("after a DataParallel is made, a freed block of 16 MiB stays in the heap for the next step", "[mpi][data_parallel]")
{
    auto model = make_model(7);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    dist::DataParallel<double> dp(*model, opt);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
    // Without it glibc maps a block this large apart from the heap and unmaps it at free, so
    // OpenMPI's per-message scratch buffers were faulted in afresh every step.
    constexpr std::size_t bytes = std::size_t(16) << 20;
    const struct mallinfo2 before = mallinfo2();
    auto* block = static_cast<volatile char*>(std::malloc(bytes));
    REQUIRE(block != nullptr);
    block[0] = 1;
    block[bytes - 1] = 1;
    const struct mallinfo2 during = mallinfo2();
    std::free(const_cast<char*>(block));
    const struct mallinfo2 after = mallinfo2();
    CHECK(during.hblks == before.hblks);  // from the heap, not a mapping of its own
    CHECK(during.arena >= bytes);
    CHECK(after.arena == during.arena);   // kept: the heap was not trimmed
#else
    WARN("not glibc's allocator (or under AddressSanitizer): nothing to check");
#endif
}

TEST_CASE("a gradient accumulated before DataParallel::backward is averaged whole: sum_r w_r (g_before,r + g_r)", "[mpi][data_parallel]")
{
    // After zero_grad() the sweep starts from the weight w_r; here a local backward came first, so
    // the hook weights each whole .grad. The reference replays both sweeps without MPI and sums
    // w_r .grad over the ranks with MPI_Allreduce: the same operations in the same order, so the
    // same bits.
    const int r = dist::rank(), P = dist::size();
    const Data data = make_data(7, 21);
    auto model = make_model(31), reference = make_model(31);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    dist::DataParallelOptions o;
    o.message_bytes = 400;  // the weights sent from .grad, the biases and gains packed
    dist::DataParallel<double> dp(*model, opt, o);
    const auto shard = dist::shard(7, r, P);  // 4 and 3 rows: w = 4/7 and 3/7
    std::vector<std::size_t> mine;
    for (std::size_t i = shard.begin; i < shard.end; ++i) mine.push_back(i);
    const Data earlier = take(data, {std::size_t(r) % 7, 6}), now = take(data, mine);
    ad::Tape<double> tape;
    auto loss = [&](nn::Module<double>& m, const Data& b) {
        tape.clear();
        return nn::cross_entropy_loss(m(tape.constant(b.x)), b.y);
    };
    dp.zero_grad();
    ad::backward(loss(*model, earlier));
    dp.backward(loss(*model, now), shard.weight());
    dp.synchronize();
    ad::backward(loss(*reference, earlier));
    ad::backward(loss(*reference, now));
    const auto got = model->parameters(), ref = reference->parameters();
    REQUIRE(got.size() == ref.size());
    const double w = shard.weight();
    for (std::size_t k = 0; k < got.size(); ++k) {
        Tensor<double> expected = ref[k]->grad;
        for (auto& v : expected) v = static_cast<double>(w) * v;
        MPI_Allreduce(MPI_IN_PLACE, expected.data(), static_cast<int>(expected.size()), MPI_DOUBLE, MPI_SUM,
                      MPI_COMM_WORLD);
        INFO("parameter " << k);
        CHECK(same_bits({got[k]->grad}, {expected}));
    }
    dp.step();
}

TEST_CASE("check_replicas names the parameter and the rank that differ by one bit", "[mpi][data_parallel]")
{
    auto model = make_model(1);
    auto opt = make_optimizer(*model, Opt::sgd);
    dist::DataParallel<double> dp(*model, *opt);
    REQUIRE_NOTHROW(dp.check_replicas());
    if (dist::size() < 2) return;
    if (dist::rank() == 1) {
        auto& v = model->named_parameters().at(2).second->mutable_value();
        v.flat(3) = std::nextafter(v.flat(3), 10.0);
    }
    const std::string name = model->named_parameters().at(2).first;
    CHECK_THROWS_WITH(dp.check_replicas(), Catch::Contains("'" + name + "' differs from rank 0's on rank 1"));
}

TEST_CASE("DataParallel refuses a second backward before the step, a weight outside [0, 1], messages smaller than one element and an optimiser of other parameters", "[mpi][data_parallel]")
{
    auto model = make_model(1);
    auto opt = make_optimizer(*model, Opt::sgd);
    dist::DataParallel<double> dp(*model, *opt);
    const Data d = make_data(4, 1);
    ad::Tape<double> tape;
    const auto loss = nn::cross_entropy_loss((*model)(tape.constant(d.x)), d.y);
    CHECK_THROWS_WITH(dp.backward(loss, 1.5), Catch::Contains("weight 1.5") && Catch::Contains("outside [0, 1]"));
    dp.backward(loss, 0.5);
    CHECK_THROWS_WITH(dp.backward(loss, 0.5), Catch::Contains("called twice without step()"));
    dp.step();

    dist::DataParallelOptions tiny;
    tiny.message_bytes = 4;
    CHECK_THROWS_WITH(dist::DataParallel<double>(*model, *opt, tiny),
                      Catch::Contains("message_bytes must hold at least one element (8 bytes), got 4"));

    auto other = make_model(2);
    nn::SGD<double> wrong(*other, nn::SGDOptions{});
    CHECK_THROWS_WITH(dist::DataParallel<double>(*model, wrong),
                      Catch::Contains("the optimiser must update exactly the model's parameters"));
}

TEST_CASE("a checkpoint is written by rank 0 only, and loading it gives every rank rank 0's parameters and optimiser state", "[mpi][serialize]")
{
    const int r = dist::rank();
    const Data data = make_data(16, 9);
    auto model = make_model(3);
    auto opt = make_optimizer(*model, Opt::adam);
    dist::DataParallel<double> dp(*model, *opt);
    ad::Tape<double> tape;
    auto sampler = dist::make_sampler(16, 8, 1, r, dist::size());
    for (std::size_t s = 0; s < 2; ++s) {
        const Data b = take(data, sampler.indices(s));
        tape.clear();
        dp.zero_grad();
        dp.backward(nn::cross_entropy_loss((*model)(tape.constant(b.x)), b.y), sampler.shard(s).weight());
        dp.step();
    }
    const Params saved = values_of(*model);
    const auto dir = std::filesystem::path("mpi_checkpoint");
    const std::string path = (dir / "model.npz").string();
    if (r == 0) {
        std::filesystem::create_directories(dir);
        std::filesystem::remove(path);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    dist::save(dp, path);
    CHECK(std::filesystem::exists(path));  // rank 0 wrote it before anyone returned

    // Each rank drifts its own way, then loads.
    for (auto* p : model->parameters()) p->mutable_value() += 0.25 * double(r + 1);
    opt->set_step_count(99 + std::uint64_t(r));
    dist::load(dp, path);
    CHECK(same_bits(values_of(*model), saved));
    CHECK(opt->step_count() == 2);
    REQUIRE_NOTHROW(dp.check_replicas());
    // The optimiser's state, too: hash every state tensor and compare across ranks.
    double sum = 0;
    for (auto& [name, t] : opt->named_state())
        for (double v : *t) sum += v;
    double lo = 0, hi = 0;
    MPI_Allreduce(&sum, &lo, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&sum, &hi, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
    CHECK(sum != 0);

    // A file rank 0 cannot read is an error on every rank, and no model changes.
    for (auto* p : model->parameters()) p->mutable_value() += 1.0;
    const Params before = values_of(*model);
    CHECK_THROWS_WITH(dist::load(dp, (dir / "missing.npz").string()),
                      Catch::Contains("load") && Catch::Contains("missing.npz"));
    CHECK(same_bits(values_of(*model), before));
    CHECK_THROWS_WITH(dist::save(dp, (dir / "no-such-dir" / "x.npz").string()),
                      Catch::Contains("save"));
}

namespace {

// Linear(5, hidden) then Linear(hidden, 3), and `extra` Linear(3, 3) after them.
std::shared_ptr<nn::Sequential<double>> linears(std::size_t hidden, int extra = 0)
{
    nn::Rng rng(1);
    auto m = std::make_shared<nn::Sequential<double>>();
    m->add(std::make_shared<nn::Linear<double>>(kInputs, hidden, rng));
    m->add(std::make_shared<nn::Linear<double>>(hidden, kClasses, rng));
    for (int i = 0; i < extra; ++i) m->add(std::make_shared<nn::Linear<double>>(kClasses, kClasses, rng));
    return m;
}

// One step of `dp` on the first four examples of make_data(4, 1).
void one_step(dist::DataParallel<double>& dp)
{
    const Data d = make_data(4, 1);
    ad::Tape<double> tape;
    dp.zero_grad();
    dp.backward(nn::cross_entropy_loss(dp.model()(tape.constant(d.x)), d.y), 1.0 / dist::size());
    dp.step();
}

}  // namespace

TEST_CASE("DataParallel names the ranks whose models differ in parameter count, shape or element type, on every rank", "[mpi][agreement]")
{
    if (dist::size() != 2) return;  // the messages below name ranks 0 and 1
    const int r = dist::rank();
    {
        auto model = r == 0 ? linears(8) : linears(8, 1);
        nn::SGD<double> opt(*model, nn::SGDOptions{});
        CHECK_THROWS_WITH(dist::DataParallel<double>(*model, opt),
                          Catch::Contains("DataParallel: the ranks disagree: parameters: 4 on rank 0, 6 on rank 1") &&
                              Catch::Contains("rank 0 has 4 parameters, rank 1 has 6; parameter 4 ('2.weight' [3, 3]) "
                                              "is on rank 1 only"));
    }
    {
        auto model = linears(r == 0 ? 8 : 9);
        nn::SGD<double> opt(*model, nn::SGDOptions{});
        CHECK_THROWS_WITH(dist::DataParallel<double>(*model, opt),
                          Catch::Contains("parameter 0 ('0.weight') has shape [8, 5] on rank 0 and [9, 5] on rank 1"));
    }
    if (r == 0) {
        auto model = linears(8);
        nn::SGD<double> opt(*model, nn::SGDOptions{});
        CHECK_THROWS_WITH(dist::DataParallel<double>(*model, opt),
                          Catch::Contains("bytes per element: 8 on rank 0, 4 on rank 1"));
    } else {
        nn::Rng rng(1);
        auto model = std::make_shared<nn::Sequential<float>>();
        model->add(std::make_shared<nn::Linear<float>>(kInputs, 8, rng));
        model->add(std::make_shared<nn::Linear<float>>(8, kClasses, rng));
        nn::SGD<float> opt(*model, nn::SGDOptions{});
        CHECK_THROWS_WITH(dist::DataParallel<float>(*model, opt),
                          Catch::Contains("bytes per element: 8 on rank 0, 4 on rank 1"));
    }
    // Models that agree still work afterwards: nothing was left under way.
    auto model = linears(8);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    dist::DataParallel<double> dp(*model, opt);
    one_step(dp);
    CHECK(dp.steps() == 1);
    REQUIRE_NOTHROW(dp.check_replicas());
}

TEST_CASE("Sampler names each rank's seed, data set size, batch or epoch when they differ, on every rank", "[mpi][agreement]")
{
    if (dist::size() != 2) return;
    const int r = dist::rank(), P = dist::size();
    // With its own seed each rank would take its shard of a different permutation: 16 of 64
    // examples twice and 16 never, every epoch.
    CHECK_THROWS_WITH(dist::make_sampler(64, 16, 1 + std::uint64_t(r), r, P),
                      Catch::StartsWith("Sampler: the ranks disagree: seed: 1 on rank 0, 2 on rank 1"));
    CHECK_THROWS_WITH(dist::make_sampler(64 - 16 * std::size_t(r), 16, 1, r, P),
                      Catch::StartsWith("Sampler: the ranks disagree: data set size: 64 on rank 0, 48 on rank 1"));
    CHECK_THROWS_WITH(dist::make_sampler(64, 16 + std::size_t(r), 1, r, P),
                      Catch::StartsWith("Sampler: the ranks disagree: global batch: 16 on rank 0, 17 on rank 1"));
    // Every rank passing rank 0 would take the same shard.
    CHECK_THROWS_WITH(dist::make_sampler(64, 16, 1, 0, P),
                      Catch::Contains("rank argument equal to the MPI rank (1 yes, 0 no): 1 on rank 0, 0 on rank 1"));
    CHECK_THROWS_WITH(dist::make_sampler(64, 16, 1, 1 - r, P),
                      Catch::Contains("rank " + std::to_string(1 - r) + " given on the process of rank " +
                                      std::to_string(r)));
    auto sampler = dist::make_sampler(64, 16, 1, r, P);
    CHECK_THROWS_WITH(sampler.set_epoch(3 + std::uint64_t(r)),
                      Catch::StartsWith("Sampler: the ranks disagree: epoch: 3 on rank 0, 4 on rank 1"));
    REQUIRE_NOTHROW(sampler.set_epoch(5));
    // One process with MPI running needs no agreement.
    if (r == 1) REQUIRE_NOTHROW(dist::make_sampler(10, 4, 99, 0, 1));
}

TEST_CASE("a rank that finishes while another steps: every rank names both, and neither makes another collective call", "[mpi][agreement]")
{
    if (dist::size() != 2) return;
    const int r = dist::rank();
    auto model = linears(8);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    dist::DataParallel<double> dp(*model, opt);
    one_step(dp);
    one_step(dp);
    const std::string expected = "the ranks are in different calls: rank 0: in DataParallel::step after 2 steps; "
                                 "rank 1: finished after 2 steps (DataParallel::finish or its destructor)";
    if (r == 0) CHECK_THROWS_WITH(one_step(dp), Catch::StartsWith("DataParallel::step: " + expected));
    else CHECK_THROWS_WITH(dp.finish(), Catch::StartsWith("DataParallel::finish: " + expected));
    // Refused locally from now on (a collective call could only hang); the destructor is silent.
    CHECK_THROWS_WITH(dp.check_replicas(), Catch::Contains("the ranks disagreed earlier"));
    CHECK_THROWS_WITH(one_step(dp), Catch::Contains("the ranks disagreed earlier"));
}

TEST_CASE("a rank in check_replicas while another steps, and steps after finish, are named", "[mpi][agreement]")
{
    if (dist::size() != 2) return;
    const int r = dist::rank();
    {
        auto model = linears(8);
        nn::SGD<double> opt(*model, nn::SGDOptions{});
        dist::DataParallel<double> dp(*model, opt);
        one_step(dp);
        const std::string expected = "the ranks are in different calls: rank 0: in check_replicas after 1 step; "
                                     "rank 1: in DataParallel::step after 1 step";
        if (r == 0) CHECK_THROWS_WITH(dp.check_replicas(), Catch::StartsWith("check_replicas: " + expected));
        else CHECK_THROWS_WITH(one_step(dp), Catch::StartsWith("DataParallel::step: " + expected));
    }
    auto model = linears(8);
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    dist::DataParallel<double> dp(*model, opt);
    one_step(dp);
    REQUIRE_NOTHROW(dp.finish());
    CHECK(dp.steps() == 1);
    CHECK_THROWS_WITH(one_step(dp), Catch::Contains("DataParallel::step: called after finish()"));
    REQUIRE_NOTHROW(dp.check_replicas());  // every rank finished alike: collective calls still agree
}

TEST_CASE("set_timeout takes seconds > 0 or infinity", "[mpi][agreement]")
{
    const double before = dist::timeout();
    CHECK(before > 0);
    CHECK_THROWS_WITH(dist::set_timeout(0), Catch::Contains("expected a number > 0"));
    CHECK_THROWS_WITH(dist::set_timeout(-1), Catch::Contains("expected a number > 0"));
    CHECK_THROWS_WITH(dist::set_timeout(std::nan("")), Catch::Contains("expected a number > 0"));
    dist::set_timeout(std::numeric_limits<double>::infinity());
    CHECK(dist::timeout() == std::numeric_limits<double>::infinity());
    dist::set_timeout(before);
}

int main(int argc, char** argv)
{
    MPI_Init(&argc, &argv);
    const int result = Catch::Session().run(argc, argv);
    int worst = 0;
    MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return worst;
}
