// Where the tape keeps values: a one-element value of rank <= 4 in its record (no tensor of its
// own unless something reads it as one), everything else in a tensor the record keeps from step
// to step; an op's reads of one-element inputs (Op::x, Vjp::x) in scratch that stays valid for
// the op's forward or the VJP's call; and records past the first 2048 in slabs.
#include "gradcheck_helpers.hpp"

#include "autodiff/op.hpp"

#include <xtensor/xmath.hpp>

#include <cmath>

using namespace adtest;
using ad::Op;
using ad::Shape;
using ad::Tape;
using ad::Var;
using Catch::Matchers::Contains;

namespace {

Tensor<double> filled(const Shape& s, double v)
{
    Tensor<double> t = Tensor<double>::from_shape(s);
    t.fill(v);
    return t;
}

// y = x0 * x1, reading both inputs through Op::x, then recording `nested` (another op on the
// same tape) before using the references; its VJP does the same with Vjp::x and a nested grad().
Var<double> product_with_nested_ops(const Var<double>& x0, const Var<double>& x1, const Var<double>& other)
{
    Op<double> op("product_with_nested_ops", {x0, x1});
    const Tensor<double>& a = op.x(0);
    const Tensor<double>& b = op.x(1);
    const auto nested = ad::exp(other * other);  // records two ops, each reading its inputs
    ad::assign(op.out(), a * b + nested.item());
    return op.done([](ad::Vjp<double>& v) {
        const Tensor<double>& a = v.x(0);
        const Tensor<double>& b = v.x(1);
        v.acc(0, v.g * b);
        v.acc(1, v.g * a);
    });
}

}  // namespace

TEST_CASE("a one-element value of rank up to 4 is held in its record, and read as a tensor of its shape",
          "[tape]")
{
    for (std::size_t rank = 0; rank <= 5; ++rank) {
        CAPTURE(rank);
        const Shape one(rank, 1);
        Tape<double> tape;
        const auto x = tape.variable(filled(one, 0.25));
        const auto y = ad::exp(x * 2.0);
        CHECK(y.shape() == one);
        CHECK(y.size() == 1);
        CHECK(y.dimension() == rank);
        CHECK(y.item() == std::exp(0.5));
        const auto& r = tape.record(y.index());
        CHECK(r.in_line == (rank <= 4));
        CHECK((r.tensor == nullptr) == (rank <= 4));  // no tensor until read as one
        const Tensor<double>& v = y.value();
        CHECK(v.shape() == one);
        CHECK(v.size() == 1);
        CHECK(*v.data() == std::exp(0.5));
        CHECK(&y.value() == &v);  // the same tensor, valid until clear()
        const auto g = ad::grad(ad::sum(y), {x})[0];
        CHECK(g.shape() == one);
        CHECK(*g.data() == 2.0 * std::exp(0.5));
    }
}

TEST_CASE("an op's reads of one-element inputs stay valid while it records other ops, and in its VJP",
          "[tape]")
{
    Tape<double> tape;
    const auto x0 = tape.variable(Tensor<double>{3.0});
    const auto x1 = tape.variable(Tensor<double>{5.0});
    const auto other = tape.variable(Tensor<double>{0.5});
    const auto y = product_with_nested_ops(x0, x1, other);
    CHECK(y.item() == 15.0 + std::exp(0.25));
    const auto g = ad::grad(y, {x0, x1});
    CHECK(g[0](0) == 5.0);
    CHECK(g[1](0) == 3.0);
}

TEST_CASE("a VJP's reads of one-element inputs stay valid across a grad() it runs", "[tape]")
{
    // y = x0 * x1 whose VJP, between reading x0 and x1 and using them, differentiates
    // z = x0 * x0 * x0 (a nested sweep on the same tape, which reads one-element values too).
    Tape<double> tape;
    const auto x0 = tape.variable(Tensor<double>{2.0});
    const auto x1 = tape.variable(Tensor<double>{7.0});
    const auto z = x0 * x0 * x0;
    Op<double> op("product", {x0, x1});
    ad::assign(op.out(), op.x(0) * op.x(1));
    double dz = 0;
    const auto y = op.done([&](ad::Vjp<double>& v) {
        const Tensor<double>& a = v.x(0);
        const Tensor<double>& b = v.x(1);
        dz = ad::grad(z, {x0})[0](0);  // 3 x0^2 = 12
        v.acc(0, v.g * b);
        v.acc(1, v.g * a);
    });
    const auto g = ad::grad(y, {x0, x1});
    CHECK(dz == 12.0);
    CHECK(g[0](0) == 7.0);
    CHECK(g[1](0) == 2.0);
}

TEST_CASE("two ops recording at once may finish in either order", "[tape]")
{
    for (const bool first_done_first : {true, false}) {
        CAPTURE(first_done_first);
        Tape<double> tape;
        const auto x = tape.variable(Tensor<double>{2.0});
        const auto w = tape.variable(Tensor<double>{{1.0, 2.0}, {3.0, 4.0}});
        Op<double> a("a", {x});
        Op<double> b("b", {w});
        ad::assign(a.out(), a.x(0) * 10.0);  // one element: in line
        ad::assign(b.out(), b.x(0) + 1.0);   // four: a tensor of the record's own
        const auto vjp = [](ad::Vjp<double>& v) { v.acc(0, v.g); };
        Var<double> ya, yb;
        if (first_done_first) {
            ya = a.done(vjp);
            yb = b.done(vjp);
        } else {
            yb = b.done(vjp);
            ya = a.done(vjp);
        }
        CHECK(ya.item() == 20.0);
        CHECK(yb.value() == Tensor<double>{{2.0, 3.0}, {4.0, 5.0}});
        // A third op reuses the scratch both gave back.
        const auto c = ad::exp(x);
        CHECK(c.item() == std::exp(2.0));
        CHECK(ya.item() == 20.0);
    }
}

TEST_CASE("Op::x refuses an input the op does not have", "[tape]")
{
    Tape<double> tape;
    const auto x = tape.variable(Tensor<double>{1.0});
    Op<double> op("my_op", {x});
    CHECK_THROWS_WITH(op.x(1), Contains("my_op") && Contains("input 1") && Contains("1 input"));
}

TEST_CASE("a record that holds a tensor one step and one element the next gives the right values", "[tape]")
{
    // The same ops recorded with x of 3 elements, then 1, then 3 again, on one tape: y = sum(x^2) * x,
    // dy/dx summed = 3 sum(x^2) (x of one element) or 2 x sum(x) + sum(x^2).
    Tape<double> tape;
    for (const Tensor<double>& xv : {Tensor<double>{1.0, 2.0, 3.0}, Tensor<double>{4.0}, Tensor<double>{1.0, -1.0, 2.0},
                                     Tensor<double>{-2.0}}) {
        CAPTURE(xv);
        tape.clear();
        const auto x = tape.variable(xv);
        const auto y = ad::sum(x * x) * x;
        const double s = xt::sum(xv * xv)();
        CHECK(y.value() == Tensor<double>(s * xv));
        const auto g = ad::grad(ad::sum(y), {x})[0];
        CHECK(g == Tensor<double>(2.0 * xv * xt::sum(xv)() + s));
    }
}

TEST_CASE("a tape of 100000 one-element ops records, reads and sweeps them all", "[tape]")
{
    // y = x + 1 + 1 + ... (n times) then z = y * y: z = (x + n)^2, dz/dx = 2 (x + n), exact in
    // double for these integers. The records past the first 2048 come from slabs.
    const std::size_t n = 100000;
    Tape<double> tape;
    for (int step = 0; step < 2; ++step) {  // the second step reuses the records
        tape.clear();
        const auto x = tape.variable(Tensor<double>{0.5});
        const auto one = tape.constant(Tensor<double>{1.0});
        Var<double> y = x;
        for (std::size_t k = 0; k < n; ++k) y = y + one;
        const auto z = y * y;
        CHECK(tape.size() == n + 3);
        CHECK(z.item() == (0.5 + n) * (0.5 + n));
        CHECK(ad::grad(z, {x})[0](0) == 2.0 * (0.5 + n));
    }
}
