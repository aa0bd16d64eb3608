// A character-level GPT trained on quotations from Debian's `fortunes` package.
//
// What it does, in order:
//   1. reads twelve English files of /usr/share/games/fortunes (a fixed list and order), splits
//      them into quotations at the '%' lines and keeps each quotation followed by a "%\n" line, the
//      boundary the model learns; every tenth quotation goes to validation (90/10). The vocabulary
//      is the bytes that occur, sorted;
//   2. builds the model of examples/char_model.hpp (float32; by default 4 causal pre-LN blocks of
//      width 128 with 4 heads, context 64) and saves its initial weights
//      (char_transformer_init.npz, which examples/char_transformer_reference.py loads into the
//      PyTorch twin);
//   3. trains with AdamW (weight decay on the weight matrices only), a linear warm-up then a cosine
//      decay of the learning rate per step, and gradient-norm clipping, on windows of the training
//      text whose start offsets come from splitmix64 seeded by --seed (so the PyTorch script draws
//      the same batches). An "epoch" is --steps-per-epoch steps. It prints the progress line of the
//      other examples, then after each epoch the loss on fixed, evenly spaced validation windows and
//      a sample of generated text (temperature sampling from a seeded generator), and saves the model;
//   4. writes the losses (CSV and JSON) and draws the training and validation loss (gnuplot).
// The same seed gives the same run. --min-improvement makes it exit non-zero unless the validation
// loss fell by that much, for CI.
//
// ctest-args: --steps 30 --batch 8 --blocks 2 --width 64 --warmup 5 --val-windows 32 --sample-chars 40 --min-improvement 0.5 --no-plot --out char_transformer_ci
#include "char_model.hpp"
#include "lab.hpp"

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Debian's `fortunes` package, English, none of the offensive files; this order.
const std::vector<std::string> fortune_files = {"literature", "wisdom",   "people",   "humorists",
                                                "men-women",  "love",     "work",     "science",
                                                "politics",   "education", "songs-poems", "art"};

struct Options {
    int epochs = 4;
    std::size_t steps_per_epoch = 250;
    std::size_t batch = 32;
    std::size_t context = 64;
    std::size_t width = 128;
    std::size_t heads = 4;
    std::size_t blocks = 4;
    double dropout = 0;
    double lr = 1e-3;
    double min_lr = 1e-4;
    std::size_t warmup = 100;
    double weight_decay = 0.01;
    double clip = 1.0;
    std::size_t val_windows = 256;
    std::size_t sample_chars = 300;
    double temperature = 0.8;
    std::uint64_t seed = 1;
    int threads = 0;  // 0: OpenBLAS's default
    std::string data_dir = "/usr/share/games/fortunes";
    std::string out_dir = ".";
    std::string init;  // initial weights to load instead of the model's own
    double min_improvement = -1;  // < 0: no check
    bool plot = true;
};

const char* usage = R"(usage: char_transformer [options]
Trains a small character-level GPT on quotations from Debian's fortunes package.

  --epochs N            epochs (4)
  --steps-per-epoch N   training steps per epoch (250)
  --steps N             one epoch of N steps (--epochs 1 --steps-per-epoch N)
  --batch N             windows per step (32)
  --context N           window length and longest context (64)
  --width N             embedding width (128)
  --heads N             attention heads (4)
  --blocks N            transformer blocks (4)
  --dropout P           dropout in the blocks (0)
  --lr X                peak AdamW learning rate (0.001)
  --min-lr X            learning rate after the cosine decay (0.0001)
  --warmup N            steps of linear warm-up (100; at most the number of steps - 1)
  --weight-decay X      AdamW decoupled weight decay on the weight matrices (0.01)
  --clip X              clip the gradients' global norm to X (1; 0: no clipping)
  --val-windows N       validation windows, evenly spaced (256)
  --sample-chars N      characters generated after each epoch (300)
  --temperature X       sampling temperature (0.8)
  --seed N              seed for initialisation, batches and sampling (1)
  --threads N           OpenBLAS threads (its default)
  --data DIR            directory of the fortune files (/usr/share/games/fortunes)
  --out DIR             where the saved models, losses, samples and plot go (.)
  --init FILE           start from these weights (.npz with the model's keys, e.g. written by
                        char_transformer_reference.py --save-init)
  --min-improvement X   exit with status 3 unless the validation loss fell by at least X
  --no-plot             do not run gnuplot
  --help                this text

examples/char_transformer_reference.py trains the same model in PyTorch from the initial weights
this writes (char_transformer_init.npz), on the same batches.
)";

constexpr std::uint64_t max_steps = 100000000;
constexpr std::uint64_t max_size = 65536;

[[noreturn]] void bad_usage(const std::string& what)
{
    std::fprintf(stderr, "char_transformer: %s\n\n%s", what.c_str(), usage);
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
        auto number = [&](double lo, double hi) { return examples::parse_real("char_transformer", a, value(), lo, hi); };
        auto count = [&](std::uint64_t lo, std::uint64_t hi) {
            return examples::parse_whole("char_transformer", a, value(), lo, hi);
        };
        if (a == "--help" || a == "-h") {
            std::printf("%s", usage);
            std::exit(0);
        }
        else if (a == "--epochs") o.epochs = static_cast<int>(count(1, 100000));
        else if (a == "--steps-per-epoch") o.steps_per_epoch = count(1, max_steps);
        else if (a == "--steps") {
            o.epochs = 1;
            o.steps_per_epoch = count(1, max_steps);
        }
        else if (a == "--batch") o.batch = count(1, max_size);
        else if (a == "--context") o.context = count(1, max_size);
        else if (a == "--width") o.width = count(1, max_size);
        else if (a == "--heads") o.heads = count(1, max_size);
        else if (a == "--blocks") o.blocks = count(0, 1000);
        else if (a == "--dropout") o.dropout = number(0, 0.99);
        else if (a == "--lr") o.lr = number(1e-12, 1e300);
        else if (a == "--min-lr") o.min_lr = number(0, 1e300);
        else if (a == "--warmup") o.warmup = count(0, max_steps);
        else if (a == "--weight-decay") o.weight_decay = number(0, 1e6);
        else if (a == "--clip") o.clip = number(0, 1e300);
        else if (a == "--val-windows") o.val_windows = count(1, max_steps);
        else if (a == "--sample-chars") o.sample_chars = count(0, max_steps);
        else if (a == "--temperature") o.temperature = number(1e-3, 1e3);
        else if (a == "--seed") o.seed = count(0, UINT64_MAX);
        else if (a == "--threads") o.threads = static_cast<int>(count(1, 1024));
        else if (a == "--data") o.data_dir = value();
        else if (a == "--out") o.out_dir = value();
        else if (a == "--init") o.init = value();
        else if (a == "--min-improvement") o.min_improvement = number(0, 1e6);
        else if (a == "--no-plot") o.plot = false;
        else bad_usage("unknown option " + a);
    }
    if (o.width % o.heads != 0)
        bad_usage("--width " + std::to_string(o.width) + " is not a multiple of --heads " + std::to_string(o.heads));
    if (o.min_lr > o.lr) bad_usage("--min-lr is above --lr");
    return o;
}

// Steele, Lea and Flood's splitmix64: the batch offsets (the PyTorch script has the same generator).
struct SplitMix64 {
    std::uint64_t state;
    std::uint64_t next()
    {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

struct Corpus {
    std::string train, val;  // bytes
    std::vector<unsigned char> vocab;  // the bytes that occur, sorted
    std::array<std::int64_t, 256> index{};  // byte -> token id
    std::size_t raw_bytes = 0, raw_chars = 0, quotations = 0;
};

// Quotations are separated by lines holding only '%'. Quotation k (from 0, over all files in order)
// goes to validation when k % 10 == 9; each is kept with a "%\n" line after it.
Corpus load_corpus(const std::string& dir)
{
    Corpus c;
    for (const auto& name : fortune_files) {
        const std::string path = dir + "/" + name;
        std::ifstream f(path, std::ios::binary);
        if (!f)
            throw std::runtime_error("cannot read " + path + " (Debian's fortunes package: scripts/install-deps installs it)");
        const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        c.raw_bytes += text.size();
        for (unsigned char b : text) c.raw_chars += (b & 0xC0) != 0x80;  // UTF-8: not a continuation byte
        std::string doc;
        auto close = [&] {
            if (!doc.empty()) (c.quotations % 10 == 9 ? c.val : c.train) += doc + "%\n";
            if (!doc.empty()) ++c.quotations;
            doc.clear();
        };
        std::size_t start = 0;
        while (start < text.size()) {
            std::size_t end = text.find('\n', start);
            if (end == std::string::npos) end = text.size();
            const std::string line = text.substr(start, end - start);
            if (line == "%") close();
            else doc += line + "\n";
            start = end + 1;
        }
        close();
    }
    std::array<bool, 256> seen{};
    for (unsigned char b : c.train) seen[b] = true;
    for (unsigned char b : c.val) seen[b] = true;
    for (int b = 0; b < 256; ++b)
        if (seen[std::size_t(b)]) {
            c.index[std::size_t(b)] = std::int64_t(c.vocab.size());
            c.vocab.push_back(static_cast<unsigned char>(b));
        }
    return c;
}

// Windows of `text` at `offsets`: inputs text[s, s + T) and labels text[s + 1, s + T + 1).
void windows(const Corpus& c, const std::string& text, const std::uint64_t* offsets, std::size_t n, std::size_t T,
             xt::xarray<std::int64_t>& x, xt::xarray<std::int64_t>& y)
{
    x.resize({n, T});
    y.resize({n, T});
    for (std::size_t b = 0; b < n; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            x(b, t) = c.index[static_cast<unsigned char>(text[offsets[b] + t])];
            y(b, t) = c.index[static_cast<unsigned char>(text[offsets[b] + t + 1])];
        }
}

// Mean cross-entropy over every position of the validation windows, in evaluation mode.
double validate(examples::CharTransformer<float>& model, const Corpus& c, const std::vector<std::uint64_t>& offsets,
                std::size_t batch, std::size_t T)
{
    model.eval();
    ad::NoGrad no_grad;
    ad::Tape<float> tape;
    xt::xarray<std::int64_t> x, y;
    double total = 0;
    for (std::size_t s = 0; s < offsets.size(); s += batch) {
        const std::size_t n = std::min(batch, offsets.size() - s);
        windows(c, c.val, offsets.data() + s, n, T, x, y);
        tape.clear();
        total += model.loss(model.logits(x, tape), y).item() * double(n * T);
    }
    model.train();
    return total / double(offsets.size() * T);
}

// `n` bytes generated after "%\n" (the start of a quotation), each drawn from the softmax of the
// last position's logits divided by the temperature, the context cropped to the model's.
std::string sample(examples::CharTransformer<float>& model, const Corpus& c, std::size_t n, double temperature,
                   std::mt19937_64& rng)
{
    model.eval();
    ad::NoGrad no_grad;
    ad::Tape<float> tape;
    std::vector<std::int64_t> context = {c.index['%'], c.index['\n']};
    std::string out;
    std::uniform_real_distribution<double> uniform(0, 1);
    const std::size_t V = c.vocab.size(), max_len = model.config().context;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t L = std::min(context.size(), max_len);
        xt::xarray<std::int64_t> ids = xt::xarray<std::int64_t>::from_shape({1, L});
        std::copy(context.end() - std::ptrdiff_t(L), context.end(), ids.begin());
        tape.clear();
        const auto logits = model.logits(ids, tape);
        const float* last = logits.value().data() + (L - 1) * V;
        std::vector<double> p(V);
        const double top = *std::max_element(last, last + V);
        double sum = 0;
        for (std::size_t k = 0; k < V; ++k) sum += p[k] = std::exp((last[k] - top) / temperature);
        double u = uniform(rng) * sum;
        std::size_t k = 0;
        while (k + 1 < V && (u -= p[k]) > 0) ++k;
        context.push_back(std::int64_t(k));
        out += static_cast<char>(c.vocab[k]);
    }
    model.train();
    return out;
}

// Control bytes other than newline and tab (the texts hold a few backspaces and bells) shown as '?'.
std::string printable(std::string s)
{
    for (char& ch : s)
        if (static_cast<unsigned char>(ch) < 32 && ch != '\n' && ch != '\t') ch = '?';
    return s;
}

// Training loss per step and validation loss per epoch, against steps, in char_transformer_curves.png.
bool plot(const std::string& dir)
{
    std::ofstream f(dir + "/char_transformer_curves.gp");
    f << "# Plots the curves char_transformer wrote. Run from their directory: gnuplot char_transformer_curves.gp\n"
      << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 800,480 font 'sans,10' } "
         "else { set terminal png size 800,480 }\n"
      << "set output 'char_transformer_curves.png'\n"
      << "set datafile separator ','\n"
      << "set key top right\nset grid\n"
      << "set title 'character-level transformer on fortunes: cross-entropy (nats per byte)'\n"
      << "set xlabel 'step'\nset ylabel 'cross-entropy'\n"
      << "plot 'char_transformer_loss.csv' skip 1 using 1:2 with lines lw 1 lc rgb '#9ecae1' title 'training (per step)', \\\n"
      << "     '' skip 1 using 1:3 with lines lw 2 lc rgb '#08519c' title 'training (running mean)', \\\n"
      << "     'char_transformer_epochs.csv' skip 1 using 2:4 with linespoints lw 2 pt 7 lc rgb '#e6550d' title 'validation'\n";
    f.close();
    return f && examples::run_gnuplot(dir, "char_transformer_curves.gp");
}

int train_main(const Options& o)
{
    const auto start = Clock::now();
    if (o.threads > 0) ad::set_num_threads(o.threads);
    examples::make_writable_output_dir(o.out_dir, "char_transformer");

    const Corpus c = load_corpus(o.data_dir);
    const std::size_t T = o.context, B = o.batch;
    std::printf("data: %zu files of %s, %zu bytes (%zu characters), %zu quotations; vocabulary of %zu bytes; "
                "%zu training and %zu validation bytes\n",
                fortune_files.size(), o.data_dir.c_str(), c.raw_bytes, c.raw_chars, c.quotations, c.vocab.size(),
                c.train.size(), c.val.size());
    if (c.val.size() <= T + 1 || c.train.size() <= T + 1)
        throw std::runtime_error("the texts are shorter than one window of --context " + std::to_string(T));

    examples::CharModelConfig cfg;
    cfg.vocab = c.vocab.size();
    cfg.context = T;
    cfg.width = o.width;
    cfg.heads = o.heads;
    cfg.blocks = o.blocks;
    cfg.dropout = o.dropout;
    ad::nn::Rng rng(o.seed);
    examples::CharTransformer<float> model(cfg, rng);
    std::printf("model: %zu blocks (causal, pre-LN, GELU MLP of %zu), %zu heads, width %zu, context %zu, "
                "dropout %g: %zu parameters\n",
                o.blocks, 4 * o.width, o.heads, o.width, T, o.dropout, model.parameter_count());
    if (!o.init.empty()) ad::nn::load(model, o.init);
    const std::string init = o.out_dir + "/char_transformer_init.npz";
    ad::nn::save(model, init);

    ad::nn::AdamWOptions ao;
    ao.lr = o.lr;
    ao.weight_decay = o.weight_decay;
    ad::nn::AdamW<float> opt(model, ao);  // decays is_weight_matrix parameters only
    const ad::nn::ParameterList<float> params(model);  // named once, not every step
    const std::size_t total_steps = o.steps_per_epoch * std::size_t(o.epochs);
    const std::size_t warmup = std::min(o.warmup, total_steps - 1);
    ad::nn::WarmupCosineLR<float> schedule(opt, warmup, total_steps, o.min_lr);
    std::printf("training: %d epochs of %zu steps, batch %zu x %zu bytes, AdamW lr %g (%zu warm-up steps, cosine "
                "to %g), weight decay %g, clip %g, seed %llu, %s threads\n",
                o.epochs, o.steps_per_epoch, B, T, o.lr, warmup, o.min_lr, o.weight_decay, o.clip,
                static_cast<unsigned long long>(o.seed), o.threads > 0 ? std::to_string(o.threads).c_str() : "default");
    std::printf("initial weights: %s%s\n", o.init.empty() ? "" : (o.init + ", saved as ").c_str(), init.c_str());

    std::vector<std::uint64_t> val_offsets(o.val_windows);
    for (std::size_t i = 0; i < o.val_windows; ++i)
        val_offsets[i] = std::uint64_t(i) * std::uint64_t(c.val.size() - T) / std::uint64_t(o.val_windows);

    auto loss_csv = examples::open_output(o.out_dir + "/char_transformer_loss.csv", "char_transformer");
    auto epoch_csv = examples::open_output(o.out_dir + "/char_transformer_epochs.csv", "char_transformer");
    auto samples = examples::open_output(o.out_dir + "/char_transformer_samples.txt", "char_transformer");
    loss_csv << "step,loss,running_mean,lr\n";
    epoch_csv << "epoch,step,train_loss,val_loss,seconds\n";

    const double initial_val = validate(model, c, val_offsets, B, T);
    std::printf("epoch 0: validation loss %.4f (ln %zu = %.4f)\n", initial_val, c.vocab.size(),
                std::log(double(c.vocab.size())));
    epoch_csv << 0 << ',' << 0 << ",," << initial_val << ',' << 0 << '\n';
    std::vector<double> val_losses = {initial_val}, train_losses, seconds;

    const bool tty = isatty(fileno(stdout));
    const std::size_t report_every = tty ? 5 : std::max<std::size_t>(1, o.steps_per_epoch / 5);
    SplitMix64 batches{o.seed};
    std::mt19937_64 sampler(o.seed);
    ad::Tape<float> tape;
    xt::xarray<std::int64_t> x, y;
    std::vector<std::uint64_t> offsets(B);
    const auto train_start = Clock::now();
    std::size_t step = 0;
    double running = 0, val = initial_val;
    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
        double epoch_loss = 0;
        for (std::size_t s = 0; s < o.steps_per_epoch; ++s, ++step) {
            for (auto& off : offsets) off = batches.next() % std::uint64_t(c.train.size() - T);
            windows(c, c.train, offsets.data(), B, T, x, y);
            const double lr = opt.lr();
            tape.clear();
            opt.zero_grad();
            auto loss = model.loss(model.logits(x, tape), y);
            ad::backward(loss);
            if (o.clip > 0) ad::nn::clip_grad_norm(params, o.clip);
            opt.step();
            schedule.step();
            const double l = loss.item();
            if (!std::isfinite(l)) {
                std::fprintf(stderr,
                             "char_transformer: training diverged: the loss is %s at step %zu (--lr %g); stopped "
                             "(try a smaller --lr)\n",
                             std::isnan(l) ? "NaN" : "infinite", step + 1, o.lr);
                return 4;
            }
            epoch_loss += l;
            running = step == 0 ? l : 0.95 * running + 0.05 * l;
            loss_csv << step + 1 << ',' << l << ',' << running << ',' << lr << '\n';
            if ((s + 1) % report_every == 0 || (tty && s + 1 == o.steps_per_epoch)) {
                const double elapsed = std::chrono::duration<double>(Clock::now() - train_start).count();
                const double per_step = elapsed / double(step + 1);
                std::printf("%sepoch %d/%d  step %zu/%zu  loss %.4f  %.0f tokens/s  %s left%s", tty ? "\r" : "", epoch,
                            o.epochs, s + 1, o.steps_per_epoch, running, double(B * T) / per_step,
                            examples::duration(per_step * double(total_steps - step - 1)).c_str(), tty ? "   " : "\n");
                std::fflush(stdout);
            }
        }
        val = validate(model, c, val_offsets, B, T);
        const double elapsed = std::chrono::duration<double>(Clock::now() - train_start).count();
        if (!std::isfinite(val)) {
            std::fprintf(stderr, "char_transformer: training diverged: the validation loss is %s after epoch %d\n",
                         std::isnan(val) ? "NaN" : "infinite", epoch);
            return 4;
        }
        train_losses.push_back(epoch_loss / double(o.steps_per_epoch));
        val_losses.push_back(val);
        seconds.push_back(elapsed);
        std::printf("%sepoch %d/%d: train loss %.4f, validation loss %.4f (%.1f s)\n", tty ? "\n" : "", epoch, o.epochs,
                    train_losses.back(), val, elapsed);
        epoch_csv << epoch << ',' << step << ',' << train_losses.back() << ',' << val << ',' << elapsed << '\n';
        const std::string text = sample(model, c, o.sample_chars, o.temperature, sampler);
        std::printf("sample (temperature %g):\n%s\n", o.temperature, printable(text).c_str());
        samples << "epoch " << epoch << ":\n" << text << "\n\n";
        samples.flush();
        ad::nn::save(model, opt, o.out_dir + "/char_transformer.npz");
        std::fflush(stdout);
    }
    loss_csv.close();
    epoch_csv.close();
    std::printf("saved model: %s/char_transformer.npz\n", o.out_dir.c_str());

    // The figures a comparison with the PyTorch script needs, in its format.
    {
        auto json = examples::open_output(o.out_dir + "/char_transformer.json", "char_transformer");
        auto list = [&](const std::vector<double>& v) {
            std::string s = "[";
            for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + examples::num("%.6f", v[i]);
            return s + "]";
        };
        json << "{\n \"val_loss\": " << list({val_losses.begin() + 1, val_losses.end()})
             << ",\n \"initial_val_loss\": " << examples::num("%.6f", initial_val)
             << ",\n \"train_loss\": " << list(train_losses) << ",\n \"seconds\": " << list(seconds)
             << ",\n \"threads\": " << o.threads << "\n}\n";
    }
    if (o.plot) {
        if (plot(o.out_dir)) std::printf("curves: %s/char_transformer_curves.png\n", o.out_dir.c_str());
        else std::printf("curves: gnuplot failed; the data are in %s/char_transformer_*.csv\n", o.out_dir.c_str());
    }
    const double total = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("validation loss %.4f after %zu steps (from %.4f); %.1f s in all\n", val, total_steps, initial_val, total);
    if (o.min_improvement >= 0 && !(val <= initial_val - o.min_improvement)) {
        std::printf("FAILED: the validation loss fell by %.4f, less than --min-improvement %g\n", initial_val - val,
                    o.min_improvement);
        return 3;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    const Options o = parse(argc, argv);
    try {
        return train_main(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "char_transformer: %s\n", e.what());
        return 1;
    }
}
