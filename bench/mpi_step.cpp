// One data-parallel training step of benchmark configurations c and d (configs.hpp) over MPI,
// timed in this engine (scripts/bench-mpi runs it; not part of CI).
//
//   mpirun -np 2 -x OMP_NUM_THREADS=1 ad_bench_mpi c           every rank takes half the batch
//   OMP_NUM_THREADS=2 ad_bench_mpi c --single                   one process, the whole batch
//
// Under mpirun each rank times, interleaved in rounds so that the machine's drift hits every
// variant alike (median per step, rank 0 prints):
//   overlap   zero the gradients, forward, loss, backward with each bucket's MPI_Iallreduce
//             started from the sweep, wait, SGD update (DataParallel, 4 MiB buckets);
//   after     the same with every allreduce started after the sweep (overlap off);
//   local     the same step on the rank's half batch with no communication at all;
//   allreduce the allreduces alone (the same buckets and pieces, blocking), no computation.
// The overlap hides (after - overlap) / (after - local) of the communication.
// Output: one line per variant, "config variant median_us", for the script to collect.
#include "configs.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/distributed.hpp"
#include "nn/nn.hpp"

#include <xtensor/xadapt.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Model {
    std::shared_ptr<ad::nn::Sequential<float>> net;
    std::unique_ptr<ad::nn::SGD<float>> opt;
    ad::Parameter<float> x, target;  // frozen: the tape reads this shard in place, as DDP's side does
    std::vector<std::int64_t> labels;
    ad::Tape<float> tape;
    const bench::Config* c = nullptr;

    ad::Var<float> loss()
    {
        tape.clear();
        const auto h = (*net)(tape.param(x));
        return c->loss == bench::Loss::mse ? ad::mse(h, tape.param(target)) : ad::cross_entropy(h, labels);
    }
};

// The configuration's MLP with the benchmark's shared initial values, on rows [lo, hi) of its batch.
std::unique_ptr<Model> make_model(const bench::Config& c, const bench::Init& init, std::size_t lo, std::size_t hi)
{
    auto m = std::make_unique<Model>();
    m->c = &c;
    m->net = std::make_shared<ad::nn::Sequential<float>>();
    const auto shapes = c.linear_shapes();
    for (std::size_t l = 0; l < shapes.size(); ++l) {
        const auto [in, out] = shapes[l];
        m->net->add(std::make_shared<ad::nn::Linear<float>>(xt::adapt(init.weight[l], ad::Shape{out, in}),
                                                            xt::adapt(init.bias[l], ad::Shape{out})));
        if (l + 1 < shapes.size()) m->net->add(std::make_shared<ad::nn::ReLU<float>>());
    }
    ad::nn::SGDOptions so;
    so.lr = c.lr;
    m->opt = std::make_unique<ad::nn::SGD<float>>(*m->net, so);
    const std::size_t n = hi - lo, in = c.inputs(), outs = c.outputs();
    m->x.set_value(xt::adapt(init.x.data() + lo * in, n * in, xt::no_ownership(), ad::Shape{n, in}));
    m->x.requires_grad_(false);
    m->target.requires_grad_(false);
    if (c.loss == bench::Loss::mse) {
        m->target.set_value(xt::adapt(init.target.data() + lo * outs, n * outs, xt::no_ownership(), ad::Shape{n, outs}));
    } else {
        m->labels.assign(init.labels.begin() + static_cast<std::ptrdiff_t>(lo),
                         init.labels.begin() + static_cast<std::ptrdiff_t>(hi));
    }
    return m;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

int usage()
{
    std::fprintf(stderr, "usage: ad_bench_mpi c|d [--single] [--steps N] [--rounds R] [--only overlap|after|local|allreduce]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc < 2 || std::strlen(argv[1]) != 1 || (argv[1][0] != 'c' && argv[1][0] != 'd')) return usage();
    const bench::Config& c = bench::config(argv[1][0]);
    bool single = false;
    int only = -1;  // every variant
    long steps = c.name == 'c' ? 300 : 20, rounds = 5;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--single") single = true;
        else if (a == "--steps" && i + 1 < argc) steps = std::atol(argv[++i]);
        else if (a == "--rounds" && i + 1 < argc) rounds = std::atol(argv[++i]);
        else if (a == "--only" && i + 1 < argc) {
            const std::string v = argv[++i];
            only = v == "overlap" ? 0 : v == "after" ? 1 : v == "local" ? 2 : v == "allreduce" ? 3 : -2;
            if (only == -2) return usage();
        }
        else return usage();
    }
    const bench::Init init = bench::make_init(c);

    if (single) {
        // One process, the whole batch: the step scripts/bench times, here for the same run.
        auto m = make_model(c, init, 0, c.batch);
        std::vector<double> t;
        for (long r = 0; r < rounds; ++r)
            for (long s = 0; s < steps; ++s) {
                const auto t0 = Clock::now();
                m->opt->zero_grad();
                ad::backward(m->loss());
                m->opt->step();
                if (r > 0 || s >= steps / 5) t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            }
        std::printf("%c single %.1f\n", c.name, median(t));
        return 0;
    }

    return ad::dist::run(argc, argv, [&] {
        const int rank = ad::dist::rank(), size = ad::dist::size();
        const auto shard = ad::dist::shard(c.batch, rank, size);
        auto m = make_model(c, init, shard.begin, shard.end);
        ad::dist::DataParallelOptions overlap, after;
        after.overlap = false;
        ad::dist::DataParallel<float> dp_overlap(*m->net, *m->opt, overlap);
        ad::dist::DataParallel<float> dp_after(*m->net, *m->opt, after);

        // The allreduces alone: buffers of the buckets' sizes.
        std::vector<std::vector<float>> buckets;
        {
            // DataParallel's rule: a bucket closes once it holds bucket_bytes or more.
            bool open = false;
            auto params = m->net->parameters();
            for (std::size_t k = params.size(); k-- > 0;) {
                if (!open) buckets.emplace_back();
                open = true;
                buckets.back().resize(buckets.back().size() + params[k]->value().size(), 1.0f);
                if (buckets.back().size() * sizeof(float) >= overlap.bucket_bytes) open = false;
            }
            if (buckets.size() != dp_overlap.buckets()) throw std::logic_error("bucket layouts differ");
        }

        const char* names[] = {"overlap", "after", "local", "allreduce"};
        std::vector<double> times[4];
        double waited[2] = {0, 0};
        for (long r = 0; r < rounds; ++r)
            for (int v = 0; v < 4; ++v)
                for (long s = 0; s < steps && (only < 0 || only == v); ++s) {
                    MPI_Barrier(MPI_COMM_WORLD);
                    const auto t0 = Clock::now();
                    if (v < 2) {
                        auto& dp = v == 0 ? dp_overlap : dp_after;
                        dp.zero_grad();
                        dp.backward(m->loss(), shard.weight());
                        dp.step();
                        if (r > 0) waited[v] += dp.last_wait_seconds();
                    } else if (v == 2) {
                        m->opt->zero_grad();
                        ad::backward(m->loss());
                        m->opt->step();
                    } else {
                        const std::size_t piece = overlap.message_bytes / sizeof(float);
                        for (auto& b : buckets)
                            for (std::size_t at = 0; at < b.size(); at += piece)
                                MPI_Allreduce(MPI_IN_PLACE, b.data() + at, static_cast<int>(std::min(piece, b.size() - at)),
                                              MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                    }
                    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
                    if (r > 0) times[v].push_back(us);  // the first round warms up
                }
        // The local variant let the replicas drift apart; the others kept them together.
        if (rank == 0) {
            for (int v = 0; v < 4; ++v) std::printf("%c %s %.1f\n", c.name, names[v], median(times[v]));
            const double n = double(steps * (rounds - 1));
            std::printf("%c wait_overlap %.1f\n%c wait_after %.1f\n", c.name, 1e6 * waited[0] / n, c.name,
                        1e6 * waited[1] / n);
            std::printf("%c ranks %d buckets %zu\n", c.name, size, dp_overlap.buckets());
        }
        return 0;
    });
}
