// ad::set_num_threads and ad::get_num_threads: the number of threads the matrix products use.
#include "autodiff/autodiff.hpp"

#include <catch2/catch.hpp>

using Catch::Contains;

TEST_CASE("set_num_threads sets the threads get_num_threads reports, and refuses fewer than one", "[threads_setting]")
{
    const int before = ad::get_num_threads();
    REQUIRE(before >= 1);
    ad::set_num_threads(1);
    CHECK(ad::get_num_threads() == 1);
    ad::set_num_threads(2);
    CHECK(ad::get_num_threads() == 2);
    CHECK_THROWS_WITH(ad::set_num_threads(0), Contains("set_num_threads") && Contains("got 0") && Contains(">= 1"));
    CHECK_THROWS_WITH(ad::set_num_threads(-3), Contains("got -3"));
    CHECK(ad::get_num_threads() == 2);  // a refused call changes nothing
    ad::set_num_threads(before);
}
