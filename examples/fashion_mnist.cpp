// Fashion-MNIST: an MLP with residual blocks, layer norm and dropout, trained with AdamW.
//
// What it does, in order:
//   1. loads the gzipped IDX files (Debian's dataset-fashion-mnist);
//   2. gradchecks the architecture: a double-precision copy (same depth, layer norm, dropout
//      with a fixed mask; narrower, so that finite differences over every weight take a second)
//      against central differences on a batch of four images;
//   3. trains in float, printing epoch, step, loss, examples per second and time left, and the
//      test accuracy after each epoch;
//   4. saves the model (.npz, which numpy.load reads), checks that a fresh model loaded from it
//      predicts the same, and draws a PNG of the loss and accuracy curves (gnuplot).
// The same seed gives the same run. --min-accuracy makes it exit non-zero below a bound, for CI.
//
// With --distributed (built with MPI, launched by mpirun) it trains data-parallel: every rank
// takes its part of each global batch of --batch examples, gradients are averaged across ranks
// (nn/distributed.hpp), and rank 0 alone prints and writes files. `scripts/demo --mpi 2` runs it.
//
// ctest-args: --limit 2000 --epochs 3 --min-accuracy 0.70 --out fashion_mnist_ci
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/idx.hpp"
#include "nn/nn.hpp"
#ifdef AD_WITH_MPI
#include "nn/distributed.hpp"
#endif

#include <xtensor/xview.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    int epochs = 8;
    std::size_t batch = 128;
    double lr = 1e-3;
    double weight_decay = 0.01;
    bool cosine = true;
    std::size_t width = 256;
    std::size_t depth = 2;  // residual blocks
    double dropout = 0.1;
    std::uint64_t seed = 1;
    std::string data_dir = "/usr/share/datasets/fashion-mnist";
    std::string out_dir = ".";
    std::size_t limit = 0;       // training examples (0: all 60000)
    std::size_t test_limit = 0;  // test examples (0: all 10000)
    std::size_t gradcheck_width = 16;
    double min_accuracy = 0;
    bool plot = true;
    bool distributed = false;
};

const char* usage = R"(usage: fashion_mnist [options]
Trains an MLP with residual blocks, layer norm and dropout on Fashion-MNIST.

  --epochs N          passes over the training set (8)
  --batch N           minibatch size (128)
  --lr X              AdamW learning rate (0.001)
  --weight-decay X    AdamW decoupled weight decay, biases and norms excluded (0.01)
  --constant-lr       keep the learning rate fixed (default: cosine schedule from lr to 0)
  --width N           width of the hidden layers (256)
  --depth N           number of residual blocks (2)
  --dropout P         dropout probability (0.1)
  --seed N            seed for initialisation, shuffling and dropout (1)
  --data DIR          directory of the gzipped IDX files (/usr/share/datasets/fashion-mnist)
  --out DIR           where the saved model, curves and plot go (.)
  --limit N           train on the first N examples only (all)
  --test-limit N      evaluate on the first N test examples only (all)
  --gradcheck-width N width of the double-precision copy that is gradchecked (16; 0 skips)
  --min-accuracy A    exit with status 3 if the final test accuracy is below A (0..1)
  --long              the longer setting: --epochs 24 --width 512 --dropout 0.2
                      (options after it override it)
  --no-plot           do not run gnuplot
  --distributed       data-parallel over the ranks of mpirun: each rank takes its part of every
                      batch of --batch examples; rank 0 prints and writes the files
                      (e.g. mpirun -np 2 fashion_mnist --distributed; scripts/demo --mpi 2)
  --help              this text

Default: 784-256, two residual blocks, 10 outputs, 8 epochs: 89.21% test accuracy (seed 1).
--long: 784-512, 24 epochs, dropout 0.2: 90.45% (seed 1), about two minutes on two cores.
(Measured on an AVX-512 Xeon; other instruction sets round differently: 89.14% on an AVX2 EPYC.)
A convolutional network (above 92%) is the second example, fashion_mnist_cnn: scripts/demo --cnn.
)";

// The ranges of the numeric options: far beyond any sensible run, and small enough that a
// typo fails at once instead of allocating gigabytes or starting a run of months.
constexpr std::uint64_t max_epochs = 100000;
constexpr std::uint64_t max_examples = 100000000;
constexpr std::uint64_t max_width = 65536;  // a 784 x 65536 float layer is 205 MB
constexpr std::uint64_t max_depth = 1000;
constexpr std::uint64_t max_gradcheck_width = 1024;

[[noreturn]] void bad_usage(const std::string& what)
{
    std::fprintf(stderr, "fashion_mnist: %s\n\n%s", what.c_str(), usage);
    std::exit(2);
}

Options parse(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_usage(a + " needs a value");
            return argv[++i];
        };
        // Each numeric option has a range; a value outside it (or not a number of its kind:
        // --epochs 1e10) ends the program with the option, the value and the range, status 2.
        auto number = [&](double lo, double hi) { return examples::parse_real("fashion_mnist", a, value(), lo, hi); };
        auto count = [&](std::uint64_t lo, std::uint64_t hi) {
            return examples::parse_whole("fashion_mnist", a, value(), lo, hi);
        };
        if (a == "--help" || a == "-h") {
            std::printf("%s", usage);
            std::exit(0);
        }
        else if (a == "--epochs") o.epochs = static_cast<int>(count(1, max_epochs));
        else if (a == "--batch") o.batch = count(1, max_examples);
        else if (a == "--lr") o.lr = number(1e-12, 1e300);
        else if (a == "--weight-decay") o.weight_decay = number(0, 1e6);
        else if (a == "--constant-lr") o.cosine = false;
        else if (a == "--long") {
            o.epochs = 24;
            o.width = 512;
            o.dropout = 0.2;
        }
        else if (a == "--width") o.width = count(1, max_width);
        else if (a == "--depth") o.depth = count(0, max_depth);
        else if (a == "--dropout") o.dropout = number(0, 0.99);
        else if (a == "--seed") o.seed = count(0, UINT64_MAX);
        else if (a == "--data") o.data_dir = value();
        else if (a == "--out") o.out_dir = value();
        else if (a == "--limit") o.limit = count(0, max_examples);
        else if (a == "--test-limit") o.test_limit = count(0, max_examples);
        else if (a == "--gradcheck-width") o.gradcheck_width = count(0, max_gradcheck_width);
        else if (a == "--min-accuracy") o.min_accuracy = number(0, 1);
        else if (a == "--no-plot") o.plot = false;
        else if (a == "--distributed") o.distributed = true;
        else bad_usage("unknown option " + a);
    }
#ifndef AD_WITH_MPI
    if (o.distributed) bad_usage("--distributed needs a build with MPI (install libopenmpi-dev and rebuild)");
#endif
    // Several ranks of mpirun without --distributed would each train alone and write the same files.
    if (const char* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n && std::atoi(n) > 1 && !o.distributed)
        bad_usage(std::string("launched by mpirun with ") + n + " ranks: add --distributed");
    return o;
}

// 784 -> width, `depth` residual blocks of width, -> 10.
template <class T>
std::shared_ptr<ad::nn::Sequential<T>> make_model(std::size_t width, const Options& o, ad::nn::Rng& rng)
{
    ad::nn::MLPOptions m;
    m.sizes = {784};
    for (std::size_t i = 0; i <= o.depth; ++i) m.sizes.push_back(width);
    m.sizes.push_back(10);
    m.activation = ad::nn::Activation::relu;
    m.residual = true;
    m.layer_norm = true;
    m.dropout = o.dropout;
    return ad::nn::mlp<T>(m, rng);
}

template <class T>
void reseed_dropout(ad::nn::Module<T>& model, std::uint64_t seed)
{
    std::uint64_t k = 0;
    for (auto& [name, m] : model.named_modules())
        if (auto* d = dynamic_cast<ad::nn::Dropout<T>*>(m)) d->seed(seed + k++);
}

// Every parameter of a double-precision copy of the architecture, gradchecked on four images
// with dropout on (each evaluation reseeds the masks, so the function is deterministic).
bool gradcheck_model(const ad::nn::LabelledImages<float>& train, const Options& o)
{
    const auto t0 = Clock::now();
    ad::nn::Rng rng(o.seed);
    auto model = make_model<double>(o.gradcheck_width, o, rng);
    model->train();
    const std::size_t n = std::min<std::size_t>(4, train.size());
    const ad::Tensor<double> x = xt::cast<double>(xt::view(train.images, xt::range(0, n), xt::all()));
    const std::vector<std::int64_t> y(train.labels.begin(), train.labels.begin() + static_cast<std::ptrdiff_t>(n));

    // the loss of the named parameters, the dropout masks drawn again for every evaluation
    const auto r = ad::nn::gradcheck_module<double>(*model, [&](ad::nn::Module<double>& m, ad::Tape<double>& tape) {
        reseed_dropout(m, o.seed);
        return ad::nn::cross_entropy_loss(m(tape.constant(x)), y);
    });
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("gradcheck: %s %zu-%zu with %zu residual blocks, layer norm and dropout (fixed mask), "
                "double precision, %zu images: %zu gradient elements against central differences in %.1f s\n"
                "  %s\n",
                r.ok ? "passed," : "FAILED,", std::size_t(784), o.gradcheck_width, o.depth, n, r.checked, secs,
                r.report().c_str());
    return r.ok;
}

// The test set's loss and accuracy, a thousand images at a time.
examples::EvalResult evaluate(ad::nn::Module<float>& model, const ad::nn::LabelledImages<float>& data)
{
    return examples::evaluate(model, data, 1000, [&](std::size_t s, std::size_t e, ad::Tensor<float>& x) {
        x = xt::view(data.images, xt::range(s, e), xt::all());
    });
}

// A PNG with two panels: training loss against epochs, and test accuracy after each epoch.
bool plot(const std::string& out_dir)
{
    return examples::plot_training_curves(out_dir, "fashion_mnist", "Fashion-MNIST: residual MLP with layer norm and dropout");
}

// The ranks of a data-parallel run (one rank otherwise) and what each does with the gradients.
struct Ranks {
    int rank = 0, size = 1;
    bool lead() const { return rank == 0; }  // prints and writes files
};

int train_main(const Options& o, const Ranks& ranks)
{
    const auto start = Clock::now();
    // Progress and results from rank 0 only.
    auto say = [&](const char* fmt, auto... args) {
        if (ranks.lead()) std::printf(fmt, args...);
    };
    {
        // Before the data are loaded: an unusable --out stops the run now, not after training.
        if (ranks.lead()) examples::make_writable_output_dir(o.out_dir, "fashion_mnist");

        const auto train = ad::nn::load_mnist_split<float>(o.data_dir, "train", o.limit);
        const auto test = ad::nn::load_mnist_split<float>(o.data_dir, "t10k", o.test_limit);
        say("data: %zu training and %zu test images of %zux%zu from %s\n", train.size(), test.size(), train.rows,
            train.cols, o.data_dir.c_str());

        // One rank checks; a failure throws, which ends every rank of a distributed run.
        if (o.gradcheck_width > 0 && ranks.lead() && !gradcheck_model(train, o)) {
            if (ranks.size > 1) throw std::runtime_error("gradcheck failed");
            return 1;
        }

        ad::nn::Rng rng(o.seed);
        auto model = make_model<float>(o.width, o, rng);
        say("model: 784-%zu, %zu residual blocks (Linear, LayerNorm, ReLU, Dropout %.2g), 10 outputs: "
            "%zu parameters\n",
            o.width, o.depth, o.dropout, model->parameter_count());
        ad::nn::AdamWOptions ao;
        ao.lr = o.lr;
        ao.weight_decay = o.weight_decay;
        ad::nn::AdamW<float> opt(*model, ao);
#ifdef AD_WITH_MPI
        // Every rank starts from rank 0's model; each draws its own dropout masks.
        std::unique_ptr<ad::dist::DataParallel<float>> dp;
        if (o.distributed) {
            dp = std::make_unique<ad::dist::DataParallel<float>>(*model, opt);
            reseed_dropout(*model, o.seed + 1000003 * std::uint64_t(ranks.rank + 1));
        }
        auto sampler = ad::dist::make_sampler(train.size(), o.batch, o.seed, ranks.rank, ranks.size);
#endif
        const std::size_t steps_per_epoch = (train.size() + o.batch - 1) / o.batch;
        const std::size_t total_steps = steps_per_epoch * std::size_t(o.epochs);
        // Annealed per step, from lr at the first step to 0 after the last.
        ad::nn::CosineLR<float> cosine(opt, total_steps);
        say("training: %d epochs of %zu steps, batch %zu, AdamW lr %g%s, weight decay %g, seed %llu\n", o.epochs,
            steps_per_epoch, o.batch, o.lr, o.cosine ? " with a cosine schedule" : " (constant)", o.weight_decay,
            static_cast<unsigned long long>(o.seed));
        if (o.distributed)
            say("data-parallel over %d ranks: each takes %zu or %zu examples of every batch of %zu\n", ranks.size,
                o.batch / std::size_t(ranks.size), (o.batch + std::size_t(ranks.size) - 1) / std::size_t(ranks.size),
                o.batch);

        std::ofstream loss_csv, epoch_csv;
        if (ranks.lead()) {
            loss_csv.open(o.out_dir + "/fashion_mnist_loss.csv");
            epoch_csv.open(o.out_dir + "/fashion_mnist_epochs.csv");
        }
        loss_csv << "epoch,loss,running_mean\n";
        epoch_csv << "epoch,train_loss,test_loss,test_accuracy,seconds\n";

        const bool tty = isatty(fileno(stdout));
        const std::size_t report_every = tty ? 10 : std::max<std::size_t>(1, steps_per_epoch / 4);
        ad::Tape<float> tape;
        ad::Tensor<float> xb;
        std::vector<std::int64_t> yb;
        std::vector<std::size_t> order(train.size());
        std::iota(order.begin(), order.end(), 0);
        const auto train_start = Clock::now();
        std::size_t step = 0;
        double running = 0;
        examples::EvalResult last;
        for (int epoch = 1; epoch <= o.epochs; ++epoch) {
            if (!o.distributed) std::shuffle(order.begin(), order.end(), rng);
#ifdef AD_WITH_MPI
            else sampler.set_epoch(std::uint64_t(epoch));
#endif
            double epoch_loss = 0;
            for (std::size_t b = 0; b < steps_per_epoch; ++b, ++step) {
                const std::size_t s = b * o.batch, e = std::min(s + o.batch, train.size());
                // This rank's examples: the whole batch, or its shard of it.
                std::size_t lo = s, hi = e;
                double weight = 1;
#ifdef AD_WITH_MPI
                if (o.distributed) {
                    const auto shard = sampler.shard(b);
                    lo = shard.begin;
                    hi = shard.end;
                    weight = shard.weight();
                }
                const auto& perm = o.distributed ? sampler.order() : order;
#else
                const auto& perm = order;
#endif
                xb.resize({hi - lo, std::size_t(784)});
                yb.resize(hi - lo);
                for (std::size_t i = lo; i < hi; ++i) {
                    std::copy_n(train.images.data() + perm[i] * 784, 784, xb.data() + (i - lo) * 784);
                    yb[i - lo] = train.labels[perm[i]];
                }
                tape.clear();
                opt.zero_grad();
                double l = 0;
                if (!o.distributed) {
                    auto loss = ad::nn::cross_entropy_loss((*model)(tape.constant(xb)), yb);
                    ad::backward(loss);
                    opt.step();
                    l = loss.item();
                }
#ifdef AD_WITH_MPI
                else {
                    // The global batch's mean loss is the weighted sum of the ranks' means.
                    if (hi > lo) {
                        auto loss = ad::nn::cross_entropy_loss((*model)(tape.constant(xb)), yb);
                        dp->backward(loss, weight);
                        l = weight * loss.item();
                    }
                    dp->step();
                    double total = 0;
                    MPI_Allreduce(&l, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
                    l = total;
                }
#endif
                (void)weight;
                if (o.cosine) cosine.step();

                // l is the whole global batch's loss, the same on every rank: all stop together
                if (!std::isfinite(l)) {
                    std::fprintf(stderr,
                                 "fashion_mnist: training diverged: the loss is %s at epoch %d, step %zu (--lr %g); "
                                 "stopped, no model saved (try a smaller --lr)\n",
                                 std::isnan(l) ? "NaN" : "infinite", epoch, b + 1, o.lr);
                    return 4;
                }
                epoch_loss += l * double(e - s);
                running = step == 0 ? l : 0.98 * running + 0.02 * l;
                if (ranks.lead())
                    loss_csv << double(step + 1) / double(steps_per_epoch) << ',' << l << ',' << running << '\n';
                if (ranks.lead() && ((b + 1) % report_every == 0 || (tty && b + 1 == steps_per_epoch))) {
                    const double elapsed = std::chrono::duration<double>(Clock::now() - train_start).count();
                    const double per_step = elapsed / double(step + 1);
                    const double rate = double(step * o.batch + (e - s)) / elapsed;
                    std::printf("%sepoch %d/%d  step %zu/%zu  loss %.4f  %.0f examples/s  %s left%s",
                                tty ? "\r" : "", epoch, o.epochs, b + 1, steps_per_epoch, running, rate,
                                examples::duration(per_step * double(total_steps - step - 1)).c_str(), tty ? "   " : "\n");
                    std::fflush(stdout);
                }
            }
            last = evaluate(*model, test);
            if (!std::isfinite(last.loss)) {
                std::fprintf(stderr,
                             "fashion_mnist: training diverged: the test loss is %s after epoch %d (--lr %g); "
                             "stopped, no model saved (try a smaller --lr)\n",
                             std::isnan(last.loss) ? "NaN" : "infinite", epoch, o.lr);
                return 4;
            }
            const double elapsed = std::chrono::duration<double>(Clock::now() - train_start).count();
            say("%sepoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%.1f s)\n", tty ? "\n" : "", epoch,
                o.epochs, epoch_loss / double(train.size()), last.loss, 100 * last.accuracy, elapsed);
            if (ranks.lead())
                epoch_csv << epoch << ',' << epoch_loss / double(train.size()) << ',' << last.loss << ','
                      << last.accuracy << ',' << elapsed << '\n';
            std::fflush(stdout);
        }
        loss_csv.close();
        epoch_csv.close();

#ifdef AD_WITH_MPI
        if (o.distributed) dp->check_replicas();  // every rank holds the same model, to the bit
#endif
        const std::string saved = o.out_dir + "/fashion_mnist.npz";
#ifdef AD_WITH_MPI
        if (o.distributed) ad::dist::save(*dp, saved);  // written by rank 0
        else
#endif
            ad::nn::save(*model, opt, saved);
        if (ranks.lead()) {
            // A model built from another seed, loaded from the file, must predict the same.
            ad::nn::Rng other(o.seed + 1);
            auto reloaded = make_model<float>(o.width, o, other);
            ad::nn::load(*reloaded, saved);
            const double again = evaluate(*reloaded, test).accuracy;
            std::printf("saved model: %s (reloaded into a fresh model: test accuracy %.2f%%)\n", saved.c_str(),
                        100 * again);
            if (again != last.accuracy) {
                std::printf("FAILED: the reloaded model's accuracy differs from the trained model's\n");
                return 1;
            }
        }
        if (o.plot && ranks.lead()) {
            if (plot(o.out_dir)) std::printf("curves: %s/fashion_mnist_curves.png\n", o.out_dir.c_str());
            else std::printf("curves: gnuplot failed; the data are in %s/fashion_mnist_*.csv\n", o.out_dir.c_str());
        }
        const double total = std::chrono::duration<double>(Clock::now() - start).count();
        say("test accuracy %.2f%% after %d epochs%s; %.1f s in all\n", 100 * last.accuracy, o.epochs,
            o.distributed ? (" on " + std::to_string(ranks.size) + " ranks").c_str() : "", total);
        if (last.accuracy < o.min_accuracy) {
            say("FAILED: test accuracy %.2f%% is below --min-accuracy %.2f%%\n", 100 * last.accuracy,
                100 * o.min_accuracy);
            return 3;
        }
        return 0;
    }
}

}  // namespace

int main(int argc, char** argv)
{
    const Options o = parse(argc, argv);
#ifdef AD_WITH_MPI
    // An exception on any rank ends every rank, naming the rank and the error.
    if (o.distributed)
        return ad::dist::run(argc, argv, [&] { return train_main(o, Ranks{ad::dist::rank(), ad::dist::size()}); });
#endif
    try {
        return train_main(o, Ranks{});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
        return 1;
    }
}
