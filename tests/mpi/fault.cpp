// A rank that throws in the middle of training: run() must end the whole job with a message that
// names the rank and the error, while the other rank waits in the step's allreduce (without the
// abort it would wait forever). tests/mpi/expect_abort.sh runs it under a time limit.
#include "nn/distributed.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

#include <cstdio>
#include <stdexcept>

int main(int argc, char** argv)
{
    return ad::dist::run(argc, argv, [] {
        namespace nn = ad::nn;
        nn::MLPOptions m;
        m.sizes = {4, 16, 2};
        nn::Rng rng(1);
        auto model = nn::mlp<double>(m, rng);
        nn::SGD<double> opt(*model, nn::SGDOptions{});
        ad::dist::DataParallel<double> dp(*model, opt);
        const ad::Tensor<double> x = xt::ones<double>({std::size_t(3), std::size_t(4)});
        const std::vector<std::int64_t> y{0, 1, 0};
        ad::Tape<double> tape;
        for (int step = 0; step < 1000; ++step) {
            if (dp.rank() == 1 && step == 3) throw std::runtime_error("injected failure at step 3");
            tape.clear();
            dp.zero_grad();
            dp.backward(nn::cross_entropy_loss((*model)(tape.constant(x)), y), 1.0 / dp.size());
            dp.step();
        }
        std::printf("rank %d finished all steps: the failure did not end the job\n", dp.rank());
        return 0;
    });
}
