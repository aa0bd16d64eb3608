// The random-program tester tested: ops with deliberately wrong VJPs, written on the public op
// contract, must be found and shrunk; a kink must be told apart from a wrong VJP; the text form
// must read back as the same program.
#include "tester.hpp"

#include "autodiff/op.hpp"

#include <catch2/catch.hpp>
#include <xtensor/xview.hpp>

#include <sstream>

using namespace programs;

namespace {

// sin whose VJP uses +sin instead of cos.
Var<double> sin_wrong_vjp(const Var<double>& x)
{
    ad::Op<double> op("sin_wrong_vjp", {x});
    ad::assign(op.out(), xt::sin(x.value()));
    return op.done([](ad::Vjp<double>& v) { v.acc(0, v.g * xt::sin(v.x(0))); });
}

// sin with a right first-order VJP and a wrong differentiable one (sin for cos again): only a
// second-order check sees it.
Var<double> sin_wrong_graph_vjp(const Var<double>& x)
{
    ad::Op<double> op("sin_wrong_graph_vjp", {x});
    ad::assign(op.out(), xt::sin(x.value()));
    return op.done([](ad::Vjp<double>& v) { v.acc(0, v.g * xt::cos(v.x(0))); },
                   [](ad::GradVjp<double>& v) { v.acc(0, ad::mul(v.g, ad::sin(v.x(0)))); });
}

OpSpec unary(std::string name, bool twice, Var<double> (*f)(const Var<double>&))
{
    OpSpec op;
    op.name = std::move(name);
    op.twice = twice;
    op.call = [f](const std::vector<Var<double>>& x) { return f(x[0]); };
    return op;
}

// Runs the table's ops plus `faulty` and returns the first failure, shrunk.
Failure first_failure(const OpSpec& faulty)
{
    OpList ops = table_ops();
    ops.push_back(faulty);
    RunOptions options;
    options.seed = 1;
    options.programs = 200;
    options.print_failures = 1;
    std::ostringstream out;
    const RunStats stats = run(options, ops, out);
    INFO(out.str());
    REQUIRE(stats.failures > 0);
    REQUIRE(stats.shrunk.size() == 1);
    CHECK(out.str().find("replay: random_programs --replay '") != std::string::npos);
    const Failure f = stats.shrunk[0];
    INFO("shrunk: " << to_text(f.shrunk));
    // Replaying the printed text fails the same way.
    CHECK(check(parse(to_text(f.shrunk)), ops).verdict == Verdict::fail);
    return f;
}

// The one-step program the shrinker should reach: the faulty op on a single number.
void require_minimal(const Failure& f, const std::string& op)
{
    INFO("shrunk: " << to_text(f.shrunk) << "\n" << f.result.report);
    CHECK(f.result.verdict == Verdict::fail);
    REQUIRE(f.shrunk.steps.size() == 1);
    CHECK(f.shrunk.steps[0].op == op);
    REQUIRE(f.shrunk.inputs.size() == 1);
    CHECK(f.shrunk.inputs[0].empty());
    CHECK(f.original.steps.size() >= f.shrunk.steps.size());
}

}  // namespace

TEST_CASE("random programs: a VJP with sin for cos is found and shrunk to one op on one number", "[programs]")
{
    const Failure f = first_failure(unary("sin_wrong_vjp", false, sin_wrong_vjp));
    require_minimal(f, "sin_wrong_vjp");
    CHECK(!f.result.second_order);
    CHECK(f.result.report.rfind("first order:", 0) == 0);
}

TEST_CASE("random programs: a wrong differentiable VJP is found at second order", "[programs]")
{
    const Failure f = first_failure(unary("sin_wrong_graph_vjp", true, sin_wrong_graph_vjp));
    require_minimal(f, "sin_wrong_graph_vjp");
    CHECK(f.result.second_order);
    CHECK(f.result.report.rfind("second order:", 0) == 0);
}

TEST_CASE("random programs: the table's own ops pass, to first and second order", "[programs]")
{
    RunOptions options;
    options.seed = 7;
    options.programs = 30;
    std::ostringstream out;
    const RunStats stats = run(options, table_ops(), out);
    INFO(out.str());
    CHECK(stats.failures == 0);
    CHECK(stats.first_order > 0);
    CHECK(stats.second_order > 0);
    CHECK(stats.invalid == 0);
}

TEST_CASE("random programs: differences straddling a kink are not smooth, a wrong VJP beside it fails", "[programs]")
{
    OpList ops{unary("abs", true, [](const Var<double>& x) { return ad::abs(x); }),
               unary("sin_wrong_vjp", false, sin_wrong_vjp)};
    const Program at_kink = parse("values=1 | x0:[] | t0 = abs(x0) | out = wsum(t0)");
    // 3e-7 from the kink: the step 1e-6 straddles it, the step 1e-7 does not.
    const auto near = check(at_kink, ops, {Tensor<double>(3e-7)});
    INFO(near.report);
    CHECK(near.verdict == Verdict::not_smooth);
    CHECK(check(at_kink, ops, {Tensor<double>(0.5)}).verdict == Verdict::pass);

    const Program both = parse("values=1 | x0:[2] | t0 = abs(x0) | t1 = sin_wrong_vjp(x0) | out = wsum(t0, t1)");
    const auto wrong = check(both, ops, {Tensor<double>{3e-7, 1.0}});
    INFO(wrong.report);
    CHECK(wrong.verdict == Verdict::fail);
}

TEST_CASE("random programs: the text form reads back as the same program", "[programs]")
{
    const OpList ops = table_ops();
    for (std::uint64_t seed = 0; seed < 50; ++seed) {
        const Program p = generate(seed, ops);
        const std::string text = to_text(p);
        INFO(text);
        const Program q = parse(text);
        CHECK(to_text(q) == text);
        ad::Tape<double> tape;
        std::vector<Var<double>> x, y;
        for (const auto& t : input_values(p)) x.push_back(tape.variable(t));
        for (const auto& t : input_values(q)) y.push_back(tape.variable(t));
        CHECK(evaluate(p, ops, x).item() == evaluate(q, ops, y).item());
    }
    // Draws kept by the shrinker read back, and an input cut to its first row keeps that row.
    const std::string drawn = "values=3 | x0@2:[2,3] | t0 = tanh(x0) | out = wsum(x0@1, t0)";
    CHECK(to_text(parse(drawn)) == drawn);
    const auto full = input_values(parse(drawn));
    const auto row = input_values(parse("values=3 | x0@2:[3] | out = wsum(x0)"));
    const Tensor<double> first_row = xt::view(full[0], 0);
    const bool kept = row[0] == first_row;
    CHECK(kept);
    const bool other_draw_differs = input_values(parse("values=3 | x0:[3] | out = wsum(x0)"))[0] != row[0];
    CHECK(other_draw_differs);

    CHECK_THROWS_AS(parse("values=1 | x0:[2] | t0 = tanh(x1) | out = wsum(t0)"), Invalid);
    CHECK_THROWS_AS(parse("values=1 | x0:[2] | t0 = tanh(x0)"), Invalid);
}
