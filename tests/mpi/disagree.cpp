// Ranks that disagree, under dist::run: the job must end within the time limit of
// tests/mpi/expect_abort.sh, with a message naming the ranks and what each had.
//   steps    rank 1's data set is smaller: it takes 6 steps, rank 0 8 (its DataParallel is destroyed)
//   leak     the same, but rank 1 returns without destroying its DataParallel (the timeout ends it)
//   stuck    rank 1 stops answering at step 3 (the timeout ends it)
//   params   rank 1's model has one Linear layer more
//   shape    rank 1's hidden layer is wider
//   seed     each rank gives the Sampler its own seed
//   no-mpi   a Sampler of 2 ranks in a process that has not initialised MPI (run without mpirun)
#include "nn/distributed.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

namespace {

namespace nn = ad::nn;

std::shared_ptr<nn::Sequential<double>> make_model(std::vector<std::size_t> sizes)
{
    nn::MLPOptions m;
    m.sizes = std::move(sizes);
    nn::Rng rng(1);
    return nn::mlp<double>(m, rng);
}

// Trains on `examples` examples in batches of 8, each rank on its own data.
int train(const std::string& mode)
{
    const int r = ad::dist::rank();
    auto model = make_model({4, 16, 2});
    nn::SGD<double> opt(*model, nn::SGDOptions{});
    auto dp = std::make_unique<ad::dist::DataParallel<double>>(*model, opt);
    const std::size_t examples = r == 1 && mode != "stuck" ? 48 : 64;
    const ad::Tensor<double> x = xt::ones<double>({std::size_t(8), std::size_t(4)});
    std::vector<std::int64_t> y(8);
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = std::int64_t(i % 2);
    ad::Tape<double> tape;
    for (std::size_t step = 0; step * 8 < examples; ++step) {
        if (mode == "stuck" && r == 1 && step == 3) std::this_thread::sleep_for(std::chrono::seconds(600));
        tape.clear();
        dp->zero_grad();
        dp->backward(nn::cross_entropy_loss((*model)(tape.constant(x)), y), 0.5);
        dp->step();
    }
    // Kept past MPI_Finalize (its destructor then does nothing): its finish() never comes.
    static std::unique_ptr<ad::dist::DataParallel<double>> kept;
    if (mode == "leak") kept = std::move(dp);
    std::printf("rank %d finished its steps\n", r);
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "no-mpi") {
        try {
            ad::dist::make_sampler(64, 16, 1, 0, 2);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 1;
        }
        return 0;
    }
    return ad::dist::run(argc, argv, [&] {
        const int r = ad::dist::rank();
        if (mode == "steps" || mode == "leak" || mode == "stuck") return train(mode);
        if (mode == "params" || mode == "shape") {
            auto model = make_model(r == 0 ? std::vector<std::size_t>{4, 16, 2}
                                    : mode == "params" ? std::vector<std::size_t>{4, 16, 16, 2}
                                                       : std::vector<std::size_t>{4, 17, 2});
            nn::SGD<double> opt(*model, nn::SGDOptions{});
            ad::dist::DataParallel<double> dp(*model, opt);
            std::printf("rank %d: the models were accepted\n", r);
            return 0;
        }
        if (mode == "seed") {
            ad::dist::make_sampler(64, 16, 1 + std::uint64_t(r), r, ad::dist::size());
            std::printf("rank %d: the samplers were accepted\n", r);
            return 0;
        }
        std::fprintf(stderr, "usage: mpi_disagree steps|leak|stuck|params|shape|seed\n");
        return 2;
    });
}
