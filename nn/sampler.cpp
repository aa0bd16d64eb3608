#include "nn/sampler.hpp"

#include "autodiff/tensor.hpp"

#include <algorithm>
#include <random>
#include <string>

namespace ad::dist {

Shard shard(std::size_t global, int rank, int size)
{
    if (size < 1 || rank < 0 || rank >= size)
        throw Error("shard: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                    " ranks; expected size >= 1 and 0 <= rank < size");
    const auto P = static_cast<std::size_t>(size), r = static_cast<std::size_t>(rank);
    const std::size_t base = global / P, extra = global % P;
    Shard s;
    s.global = global;
    s.begin = r * base + std::min(r, extra);
    s.end = s.begin + base + (r < extra ? 1 : 0);
    return s;
}

Sampler::Sampler(std::size_t n, std::size_t global_batch, std::uint64_t seed, int rank, int size, Agreement agreement)
    : n_(n), batch_(global_batch), seed_(seed), rank_(rank), size_(size), agreement_(std::move(agreement))
{
    if (global_batch == 0) throw Error("Sampler: the global batch must hold at least one example, got 0");
    dist::shard(global_batch, rank, size);  // checks rank and size
    set_epoch(0);
}

void Sampler::set_epoch(std::uint64_t epoch)
{
    if (agreement_) agreement_(*this, epoch);
    epoch_ = epoch;
    order_.resize(n_);
    for (std::size_t i = 0; i < n_; ++i) order_[i] = i;
    std::seed_seq seq{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32),
                      static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(epoch >> 32)};
    std::mt19937_64 gen(seq);
    // Fisher-Yates with our own draws, so the permutation does not depend on the standard
    // library's shuffle (ranks built by different compilers still agree).
    for (std::size_t i = n_; i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(gen() % i);
        std::swap(order_[i - 1], order_[j]);
    }
}

std::size_t Sampler::steps() const { return (n_ + batch_ - 1) / batch_; }

Shard Sampler::shard(std::size_t step) const
{
    if (step >= steps())
        throw Error("Sampler::shard: step " + std::to_string(step) + " of an epoch of " + std::to_string(steps()) +
                    " global batches");
    const std::size_t start = step * batch_, stop = std::min(n_, start + batch_);
    Shard s = dist::shard(stop - start, rank_, size_);
    s.begin += start;
    s.end += start;
    return s;
}

std::vector<std::size_t> Sampler::indices(std::size_t step) const
{
    const Shard s = shard(step);
    return {order_.begin() + static_cast<std::ptrdiff_t>(s.begin), order_.begin() + static_cast<std::ptrdiff_t>(s.end)};
}

}  // namespace ad::dist
