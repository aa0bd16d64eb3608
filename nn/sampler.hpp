// How a data-parallel run splits its data among ranks: Shard (one rank's part of a global batch)
// and Sampler (an epoch's shuffled global batches). Plain arithmetic and a seeded generator, no
// MPI: ranks can be simulated in one process, and a single process is rank 0 of 1. The check that
// every rank built the same Sampler is collective, in nn/distributed.hpp (make_sampler).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace ad::dist {

// This rank's part [begin, end) of a global batch of `global` examples: the first global % size
// ranks take one example more than the others. A rank may get nothing when global < size.
struct Shard {
    std::size_t begin = 0, end = 0;
    std::size_t global = 0;
    std::size_t count() const { return end - begin; }
    // n_r / N: the weight of this rank's mean gradient in the average.
    double weight() const { return global ? double(count()) / double(global) : 0.0; }
};
Shard shard(std::size_t global, int rank, int size);

// Global batches over a data set of n examples, shuffled each epoch by a generator seeded with
// (seed, epoch) that every rank builds alike, so every rank sees the same permutation and takes a
// disjoint part of each global batch. The last global batch of an epoch holds the remainder
// (n % batch examples) as in a single process; it is sharded the same way.
//
// The ranks must agree on n, global batch, seed and epoch (with different seeds the permutations
// differ and the ranks' parts overlap). An `agreement`, if given, is called by the constructor
// and by set_epoch() with the epoch about to start, before anything changes; it throws to refuse.
// dist::make_sampler (nn/distributed.hpp) gives one that compares every rank's values over MPI.
class Sampler {
public:
    using Agreement = std::function<void(const Sampler& sampler, std::uint64_t epoch)>;

    Sampler(std::size_t n, std::size_t global_batch, std::uint64_t seed, int rank, int size,
            Agreement agreement = {});
    void set_epoch(std::uint64_t epoch);     // reshuffles: the permutation of that epoch
    std::size_t steps() const;               // global batches per epoch
    Shard shard(std::size_t step) const;     // positions within global batch `step`
    // The example indices this rank takes in global batch `step`, in order.
    std::vector<std::size_t> indices(std::size_t step) const;
    const std::vector<std::size_t>& order() const { return order_; }  // this epoch's permutation

    std::size_t examples() const { return n_; }
    std::size_t global_batch() const { return batch_; }
    std::uint64_t seed() const { return seed_; }
    std::uint64_t epoch() const { return epoch_; }
    int rank() const { return rank_; }
    int size() const { return size_; }

private:
    std::size_t n_, batch_;
    std::uint64_t seed_, epoch_ = 0;
    int rank_, size_;
    Agreement agreement_;
    std::vector<std::size_t> order_;
};

}  // namespace ad::dist
