// The tape's contract: handles that outlive their tape, a tape used from two threads, a
// forgotten clear(), an evaluation loop that never clears, shapes too large to count, and NaN
// propagating where PyTorch propagates it.
#include "gradcheck_helpers.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <thread>

using namespace adtest;
using ad::Tape;
using Catch::Matchers::Contains;

TEST_CASE("a Var used after its tape was destroyed is refused, not read", "[tape][lifetime]")
{
    Var<double> stale;
    {
        Tape<double> tape;
        stale = ad::exp(tape.variable(Tensor<double>{1.0, 2.0}));
    }
    CHECK_FALSE(stale.valid());
    CHECK_THROWS_WITH(stale.value(), Contains("value") && Contains("tape since destroyed"));
    // a new tape that reuses the dead one's anchor still refuses it
    Tape<double> other;
    const auto x = other.variable(Tensor<double>{1.0});
    CHECK_THROWS_WITH(ad::add(x, stale), Contains("add") && Contains("destroyed"));
    CHECK_THROWS_WITH(ad::add(stale, x), Contains("add") && Contains("destroyed"));
}

TEST_CASE("a tape used from a second thread while another owns it is refused", "[tape][lifetime][threads]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0, 2.0});
    std::string error;
    std::thread other([&] {
        try {
            ad::exp(x);
        } catch (const ad::Error& e) {
            error = e.what();
        }
    });
    other.join();
    CHECK_THAT(error, Contains("exp") && Contains("one thread at a time"));
    // cleared on its thread, the tape may be taken over by another
    tape.clear();
    bool ok = false;
    std::thread next([&] {
        const auto y = ad::exp(tape.variable(Tensor<double>{0.0}));
        ok = y.item() == 1.0;
    });
    next.join();
    CHECK(ok);
}

TEST_CASE("a forgotten clear() is named as the likely cause", "[tape][lifetime]")
{
    ad::Parameter<double> w(Tensor<double>{1.0, 2.0});
    Tape<double> tape;
    for (int step = 0; step < 2; ++step) {  // no tape.clear() between the steps
        const auto loss = ad::sum(ad::square(tape.param(w)));
        if (step == 1) {
            CHECK_THROWS_WITH(ad::backward(loss), Contains("tape.clear() was probably forgotten"));
            break;
        }
        ad::backward(loss);
        w.mutable_value() -= 0.1 * w.grad;
    }
}

TEST_CASE("an evaluation loop under NoGrad that never clears is stopped at the limit", "[tape][lifetime]")
{
    Tape<double> tape;
    tape.set_no_grad_limit(1 << 20);  // 1 MiB
    const Tensor<double> batch = xt::ones<double>({64, 64});  // 32 KiB per value
    ad::NoGrad off;
    auto evaluate = [&] { return ad::sum(ad::tanh(tape.constant(batch))); };
    int passes = 0;
    CHECK_THROWS_WITH(
        [&] {
            for (; passes < 1000; ++passes) evaluate();
        }(),
        Contains("recorded under NoGrad") && Contains("tape.clear()"));
    CHECK(passes > 5);
    CHECK(passes < 20);
    // with clear() between passes the same loop runs indefinitely
    for (int i = 0; i < 100; ++i) {
        tape.clear();
        evaluate();
    }
}

TEST_CASE("reshape and broadcast_to refuse shapes whose size overflows 64 bits", "[ops][shape][errors]")
{
    Tape<double> tape;
    const auto x = tape.variable(xt::ones<double>({2, 3}));
    CHECK_THROWS_WITH(ad::reshape(x, {7, 7905747460161236407, 2, 3}), Contains("reshape") && Contains("64 bits"));
    CHECK_THROWS_WITH(ad::broadcast_to(ad::reshape(x, {1, 6}), {std::size_t(1) << 62, 8, 6}),
                      Contains("broadcast_to") && Contains("64 bits"));
    // a zero dimension makes any shape empty, however large the others
    CHECK(ad::reshape(tape.variable(xt::ones<double>({0})), {0, 1 << 30}).size() == 0);
}

TEST_CASE("NaN propagates through relu, maximum, minimum, clamp and max, and anomaly mode sees it",
          "[ops][nan]")
{
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{nan, 1.0, 3.0});
    const auto zero = tape.constant(Tensor<double>{0.0});
    CHECK(std::isnan(ad::relu(x).value()(0)));
    CHECK(ad::relu(x).value()(2) == 3.0);
    CHECK(std::isnan(ad::maximum(x, zero).value()(0)));
    CHECK(std::isnan(ad::maximum(zero, x).value()(0)));
    CHECK(std::isnan(ad::minimum(x, zero).value()(0)));
    CHECK(std::isnan(ad::clamp(x, -1.0, 1.0).value()(0)));
    for (const auto& order : {Tensor<double>{nan, 1.0, 3.0}, Tensor<double>{1.0, nan, 3.0}, Tensor<double>{1.0, 3.0, nan}}) {
        CAPTURE(order);
        CHECK(std::isnan(ad::max(tape.variable(order), 0).item()));
    }
    // the gradient of max goes to the NaN
    const auto v = tape.variable(Tensor<double>{1.0, nan, 3.0});
    CHECK_THAT(ad::grad(ad::max(v, 0), {v})[0], Equals({0.0, 1.0, 0.0}));
    ad::DetectAnomaly on;
    CHECK_THROWS_WITH(ad::relu(x), Contains("'relu'") && Contains("NaN"));
    CHECK_THROWS_WITH(ad::maximum(x, zero), Contains("'maximum'"));
    CHECK_THROWS_WITH(ad::max(x, 0), Contains("'max'"));
}
