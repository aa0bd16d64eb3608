// Shard and Sampler (nn/sampler.hpp) without MPI: ranks simulated in one process. The expected
// splits follow from the definition: the first global % size ranks take one example more.
#include "nn/sampler.hpp"

#include "autodiff/tensor.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <vector>

namespace dist = ad::dist;
using Catch::Contains;

TEST_CASE("shard: the ranks' parts cover 0 .. global - 1 once, in rank order, with weights n_r / N summing to 1", "[sampler]")
{
    for (std::size_t global : {0, 1, 5, 7, 8, 100, 1001})
        for (int size : {1, 2, 3, 8, 13}) {
            CAPTURE(global, size);
            std::size_t next = 0;
            double weights = 0;
            for (int r = 0; r < size; ++r) {
                const dist::Shard s = dist::shard(global, r, size);
                CHECK(s.global == global);
                CHECK(s.begin == next);  // contiguous: no gap, no overlap
                const std::size_t expected = global / std::size_t(size) + (std::size_t(r) < global % std::size_t(size) ? 1 : 0);
                CHECK(s.count() == expected);
                CHECK(s.weight() == (global ? double(expected) / double(global) : 0.0));
                weights += s.weight();
                next = s.end;
            }
            CHECK(next == global);
            if (global) CHECK(weights == Approx(1.0).epsilon(1e-14));
            else CHECK(weights == 0.0);
        }
}

namespace {

bool is_permutation_of_n(std::vector<std::size_t> v, std::size_t n)
{
    std::sort(v.begin(), v.end());
    std::vector<std::size_t> iota(n);
    std::iota(iota.begin(), iota.end(), std::size_t(0));
    return v == iota;
}

}  // namespace

TEST_CASE("Sampler: across simulated ranks every index comes once per epoch, each batch split by shard", "[sampler]")
{
    const std::size_t n = 103, batch = 10;
    for (int size : {1, 2, 3, 4, 16}) {
        CAPTURE(size);
        std::vector<dist::Sampler> ranks;
        for (int r = 0; r < size; ++r) ranks.emplace_back(n, batch, 42, r, size);
        for (std::uint64_t epoch : {0, 1, 7}) {
            CAPTURE(epoch);
            for (auto& s : ranks) s.set_epoch(epoch);
            REQUIRE(ranks[0].steps() == 11);  // ceil(103 / 10): the last batch holds 3
            std::vector<std::size_t> seen;
            for (std::size_t step = 0; step < ranks[0].steps(); ++step) {
                const std::size_t in_batch = step + 1 < ranks[0].steps() ? batch : n % batch;
                std::vector<std::size_t> batch_indices;
                for (int r = 0; r < size; ++r) {
                    const auto idx = ranks[std::size_t(r)].indices(step);
                    CHECK(idx.size() == dist::shard(in_batch, r, size).count());
                    CHECK(ranks[std::size_t(r)].order() == ranks[0].order());  // one permutation for all
                    batch_indices.insert(batch_indices.end(), idx.begin(), idx.end());
                }
                // In rank order the parts are the batch's slice of the permutation.
                const std::vector<std::size_t> slice(ranks[0].order().begin() + std::ptrdiff_t(step * batch),
                                                     ranks[0].order().begin() + std::ptrdiff_t(step * batch + in_batch));
                CHECK(batch_indices == slice);
                seen.insert(seen.end(), batch_indices.begin(), batch_indices.end());
            }
            CHECK(seen.size() == n);
            CHECK(is_permutation_of_n(seen, n));
        }
    }
}

TEST_CASE("Sampler: each epoch its own permutation, the same seed the same order, another seed another", "[sampler]")
{
    const std::size_t n = 1000;
    dist::Sampler a(n, 32, 7, 0, 1), b(n, 32, 7, 0, 1), c(n, 32, 8, 0, 1);
    CHECK(is_permutation_of_n(a.order(), n));
    CHECK(a.order() == b.order());
    CHECK(a.order() != c.order());
    const auto epoch0 = a.order();
    a.set_epoch(1);
    CHECK(is_permutation_of_n(a.order(), n));
    CHECK(a.order() != epoch0);
    CHECK(a.epoch() == 1);
    b.set_epoch(1);
    CHECK(a.order() == b.order());
    a.set_epoch(0);  // an epoch's permutation depends on (seed, epoch) only
    CHECK(a.order() == epoch0);
    // Not the identity: 1000 elements shuffled leave the order unchanged with probability 1/1000!.
    std::vector<std::size_t> identity(n);
    std::iota(identity.begin(), identity.end(), std::size_t(0));
    CHECK(a.order() != identity);
}

TEST_CASE("Sampler: the agreement is asked before the constructor and set_epoch change anything", "[sampler]")
{
    std::vector<std::uint64_t> asked;
    bool refuse = false;
    dist::Sampler s(20, 5, 3, 1, 2, [&](const dist::Sampler& sampler, std::uint64_t epoch) {
        CHECK(sampler.rank() == 1);
        CHECK(sampler.size() == 2);
        CHECK(sampler.examples() == 20);
        CHECK(sampler.global_batch() == 5);
        CHECK(sampler.seed() == 3);
        asked.push_back(epoch);
        if (refuse) throw ad::Error("the ranks disagree");
    });
    s.set_epoch(4);
    CHECK(asked == std::vector<std::uint64_t>{0, 4});
    const auto before = s.order();
    refuse = true;
    CHECK_THROWS_WITH(s.set_epoch(5), Contains("the ranks disagree"));
    CHECK(s.order() == before);
    CHECK(s.epoch() == 4);
}

TEST_CASE("shard and Sampler refuse bad ranks, sizes, batches and steps with ad::Error", "[sampler][errors]")
{
    CHECK_THROWS_AS(dist::shard(8, 0, 0), ad::Error);
    CHECK_THROWS_WITH(dist::shard(8, 0, 0), Contains("rank 0 of 0 ranks") && Contains("expected size >= 1"));
    CHECK_THROWS_WITH(dist::shard(8, 2, 2), Contains("rank 2 of 2 ranks") && Contains("0 <= rank < size"));
    CHECK_THROWS_WITH(dist::shard(8, -1, 2), Contains("rank -1 of 2 ranks"));
    CHECK_THROWS_AS(dist::Sampler(10, 0, 1, 0, 1), ad::Error);
    CHECK_THROWS_WITH(dist::Sampler(10, 0, 1, 0, 1), Contains("Sampler") && Contains("at least one example, got 0"));
    CHECK_THROWS_WITH(dist::Sampler(10, 4, 1, 4, 4), Contains("rank 4 of 4 ranks"));
    CHECK_THROWS_WITH(dist::Sampler(10, 4, 1, 0, 0), Contains("rank 0 of 0 ranks"));
    CHECK_THROWS_WITH(dist::Sampler(10, 4, 1, -1, 2), Contains("rank -1 of 2 ranks"));
    const dist::Sampler s(10, 4, 1, 0, 2);
    REQUIRE(s.steps() == 3);
    CHECK_THROWS_AS(s.shard(3), ad::Error);
    CHECK_THROWS_WITH(s.indices(3), Contains("Sampler::shard: step 3 of an epoch of 3 global batches"));
    // An empty data set has no batches; its epochs are empty permutations.
    const dist::Sampler empty(0, 4, 1, 1, 2);
    CHECK(empty.steps() == 0);
    CHECK(empty.order().empty());
}
