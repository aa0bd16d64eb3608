// The generic op tests: the same checks over every entry of the op table (tests/op_table.hpp).
// Each test case sweeps the table with GENERATE, so a failure names the op and the sample.
#include "op_table.hpp"

#include <xtensor/xio.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <type_traits>

using namespace optable;
using ad::Tape;

namespace {

using Vars = std::vector<Var<double>>;

std::size_t entry_index()
{
    return GENERATE(range(std::size_t(0), table().size()));
}

bool has_empty(const Sample& s)
{
    for (const auto& t : s.inputs)
        if (t.size() == 0) return true;
    return false;
}

template <class T>
const Call<T>& call_of(const Entry& e)
{
    if constexpr (std::is_same<T, float>::value) return e.f32;
    else return e.f64;
}

template <class T>
std::vector<Var<T>> variables(Tape<T>& tape, const Sample& s)
{
    std::vector<Var<T>> xs;
    for (const auto& t : s.inputs) xs.push_back(tape.variable(xt::cast<T>(t)));
    return xs;
}

// The op's value on the sample, in T, as doubles.
template <class T>
Tensor<double> value(const Entry& e, const Sample& s)
{
    Tape<T> tape;
    return xt::cast<double>(call_of<T>(e)(variables(tape, s), s).value());
}

// The gradient of sum(w * y) for a fixed w of y's shape, in T, as doubles.
template <class T>
std::vector<Tensor<double>> gradients(const Entry& e, const Sample& s)
{
    Tape<T> tape;
    const auto xs = variables(tape, s);
    const auto y = call_of<T>(e)(xs, s);
    const Tensor<T> w = xt::cast<T>(adtest::uniform(Shape(y.shape().begin(), y.shape().end()), 0.5, 1.5, 7));
    std::vector<Tensor<double>> out;
    for (const auto& g : ad::grad(ad::sum(y * tape.constant(w)), xs)) out.push_back(xt::cast<double>(g));
    return out;
}

// Elementwise |a - b| <= atol + rtol |b|, NaN matching NaN and an infinity the same infinity.
bool close(const Tensor<double>& a, const Tensor<double>& b, double rtol, double atol, std::string& where)
{
    if (a.shape() != b.shape()) {
        where = "shapes " + ad::shape_str(a.shape()) + " and " + ad::shape_str(b.shape());
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double x = a.data()[i], y = b.data()[i];
        const bool same = (std::isnan(x) && std::isnan(y)) || x == y || std::abs(x - y) <= atol + rtol * std::abs(y);
        if (!same) {
            std::ostringstream o;
            o.precision(17);
            o << "element " << i << ": " << x << " against " << y;
            where = o.str();
            return false;
        }
    }
    return true;
}

std::string describe(const Entry& e, const Sample& s) { return e.name + ", " + s.what; }

}  // namespace

TEST_CASE("op table: every op's value matches its independent reference", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    for (const auto& s : e.samples()) {
        INFO(describe(e, s));
        const Tensor<double> y = value<double>(e, s), want = e.reference(s.inputs, s);
        std::string where;
        const bool ok = close(y, want, e.forward_rtol, e.forward_atol, where);
        INFO(where);
        CHECK(ok);
    }
}

TEST_CASE("op table: every op's gradient agrees with central differences", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    std::size_t checked = 0;
    for (const auto& s : e.samples()) {
        if (!s.smooth || has_empty(s)) continue;
        INFO(describe(e, s));
        adtest::require_first_order_gradcheck([&](const Vars& v) { return e.f64(v, s); }, s.inputs);
        ++checked;
    }
    CHECK(checked > 0);
}

TEST_CASE("op table: every op's second derivative agrees with central differences of its VJP", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    if (!e.twice) return;
    std::size_t checked = 0;
    for (const auto& s : e.samples()) {
        if (!s.smooth || has_empty(s)) continue;
        INFO(describe(e, s));
        const auto res = ad::gradgradcheck<double>([&](const Vars& v) { return e.f64(v, s); }, s.inputs);
        INFO(res.report());
        CHECK(res.ok);
        ++checked;
    }
    CHECK(checked > 0);
}

TEST_CASE("op table: float agrees with double, values and gradients", "[op_table]")
{
    // float rounds each op to about 6e-8 relative; Entry::float_rtol allows for the op's
    // conditioning on its samples (1e-4 by default).
    const Entry& e = table()[entry_index()];
    for (const auto& s : e.samples()) {
        if (!s.smooth) continue;
        INFO(describe(e, s));
        std::string where;
        const bool ok = close(value<float>(e, s), value<double>(e, s), e.float_rtol, e.float_rtol, where);
        INFO(where);
        CHECK(ok);
        const auto g32 = gradients<float>(e, s), g64 = gradients<double>(e, s);
        for (std::size_t k = 0; k < g64.size(); ++k) {
            const bool grad_ok = close(g32[k], g64[k], e.float_rtol, e.float_rtol, where);
            INFO("gradient of input " << k << ": " << where);
            CHECK(grad_ok);
        }
    }
}

// The gradient of <v, dy/dx> for the gradients of sum(y) that depend on the inputs (a
// Hessian-vector product, v = ones), through each op's differentiable VJP.
template <class T>
std::vector<Tensor<double>> second_gradients(const Entry& e, const Sample& s)
{
    Tape<T> tape;
    const auto xs = variables(tape, s);
    const auto g = ad::grad(ad::sum(call_of<T>(e)(xs, s)), xs, ad::create_graph);
    std::vector<Var<T>> outputs;
    std::vector<Tensor<T>> ones;
    for (const auto& gk : g)
        if (gk.requires_grad()) {
            outputs.push_back(gk);
            ones.push_back(xt::ones<T>(gk.shape()));
        }
    std::vector<Tensor<double>> out;
    if (outputs.empty()) return out;  // linear in every input
    for (const auto& h : ad::vjp(outputs, ones, xs, ad::allow_unused)) out.push_back(xt::cast<double>(h));
    return out;
}

TEST_CASE("op table: an empty input gives an empty output and empty gradients, first and second", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    for (const auto& s : e.samples()) {
        if (!has_empty(s)) continue;
        INFO(describe(e, s));
        const auto g = gradients<double>(e, s);
        REQUIRE(g.size() == s.inputs.size());
        for (std::size_t k = 0; k < g.size(); ++k) CHECK(g[k].shape() == s.inputs[k].shape());
        if (!e.twice) continue;
        const auto h = second_gradients<double>(e, s);
        for (std::size_t k = 0; k < h.size(); ++k) CHECK(h[k].shape() == s.inputs[k].shape());
    }
}

// Which outputs change when element j of input k is replaced by other finite values: the outputs
// that depend on it (an output that no replacement moves is taken not to). A replacement the op
// refuses (a matrix no longer positive definite) tells nothing and is passed over.
std::set<std::size_t> dependents(const Entry& e, const Sample& s, std::size_t k, std::size_t j, const Tensor<double>& y)
{
    std::set<std::size_t> out;
    for (const double r : {-2.75, -0.3125, 0.4375, 1.5625, 2.875}) {
        Sample changed = s;
        changed.inputs[k].data()[j] = r;
        Tensor<double> yr;
        try {
            yr = value<double>(e, changed);
        } catch (const ad::Error&) {
            continue;
        }
        for (std::size_t i = 0; i < y.size(); ++i)
            if (!(yr.data()[i] == y.data()[i] || (std::isnan(yr.data()[i]) && std::isnan(y.data()[i])))) out.insert(i);
    }
    return out;
}

TEST_CASE("op table: a NaN in an input reaches only the outputs that depend on it", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    std::size_t checked = 0;
    for (const auto& s : e.samples()) {
        if (!s.smooth || has_empty(s)) continue;
        const Tensor<double> y = value<double>(e, s);
        for (std::size_t k = 0; k < s.inputs.size(); ++k) {
            if (!e.nan_inputs.empty() &&
                std::find(e.nan_inputs.begin(), e.nan_inputs.end(), k) == e.nan_inputs.end())
                continue;
            const std::size_t n = s.inputs[k].size();
            for (const std::size_t j : std::set<std::size_t>{0, n / 2, n - 1}) {
                INFO(describe(e, s) << ", NaN at element " << j << " of input " << k);
                Sample poisoned = s;
                poisoned.inputs[k].data()[j] = std::numeric_limits<double>::quiet_NaN();
                if (e.refuses_nan) {
                    CHECK_THROWS_WITH(value<double>(e, poisoned), Catch::Contains(error_name(e)));
                    ++checked;
                    continue;
                }
                const Tensor<double> yn = value<double>(e, poisoned);
                const auto dep = dependents(e, s, k, j, y);
                std::size_t nans = 0;
                for (std::size_t i = 0; i < y.size(); ++i) {
                    const bool is_nan = std::isnan(yn.data()[i]);
                    nans += is_nan;
                    if (dep.count(i)) continue;
                    INFO("output " << i << " does not depend on it");
                    CHECK((yn.data()[i] == y.data()[i] || (is_nan && std::isnan(y.data()[i]))));
                }
                if (!dep.empty()) CHECK(nans > 0);  // NaN propagates, as in PyTorch
                ++checked;
            }
        }
    }
    CHECK(checked > 0);
}

TEST_CASE("op table: a stale handle in any input is an error naming the op", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    const auto samples = e.samples();
    const Sample& s = samples.front();
    for (std::size_t k = 0; k < s.inputs.size(); ++k) {
        INFO(describe(e, s) << ", input " << k << " from a cleared tape");
        Tape<double> tape, old;
        auto xs = variables(tape, s);
        xs[k] = old.variable(s.inputs[k]);
        old.clear();
        REQUIRE_THROWS_AS(e.f64(xs, s), ad::Error);
        try {
            e.f64(xs, s);
        } catch (const ad::Error& err) {
            INFO(err.what());
            CHECK(std::string(err.what()).find(error_name(e)) != std::string::npos);
        }
    }
}

TEST_CASE("op table: inputs an op must refuse raise an error naming the op and the shapes", "[op_table]")
{
    const Entry& e = table()[entry_index()];
    if (!e.refused) return;
    for (const auto& s : e.refused()) {
        INFO(describe(e, s));
        Tape<double> tape;
        const auto xs = variables(tape, s);
        REQUIRE_THROWS_AS(e.f64(xs, s), ad::Error);
        try {
            e.f64(xs, s);
        } catch (const ad::Error& err) {
            const std::string what = err.what();
            INFO(what);
            CHECK(what.find(error_name(e)) != std::string::npos);
            CHECK(what.find('[') != std::string::npos);
        }
    }
}

TEST_CASE("op table: every op has samples, a reference and both precisions", "[op_table]")
{
    std::set<std::string> names;
    for (const auto& e : table()) {
        INFO(e.name);
        CHECK(names.insert(e.name).second);  // one entry per op
        CHECK(e.f32);
        CHECK(e.f64);
        CHECK(e.reference);
        REQUIRE(e.samples);
        CHECK(!e.samples().empty());
    }
}
