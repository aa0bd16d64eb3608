// Graphviz export of a tape: which records appear, how they are labelled, and that dot reads it.
#include "autodiff/autodiff.hpp"
#include "autodiff/graph.hpp"
#include "nn/linear.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>

using Catch::Matchers::Contains;
using ad::Tensor;

namespace {

std::size_t count(const std::string& text, const std::regex& re)
{
    return static_cast<std::size_t>(std::distance(std::sregex_iterator(text.begin(), text.end(), re),
                                                  std::sregex_iterator()));
}

const std::regex node_line(R"(^  n\d+ \[label=)", std::regex::multiline);
const std::regex edge_line(R"(^  n\d+ -> n\d+)", std::regex::multiline);

}  // namespace

TEST_CASE("to_dot draws the records the output depends on, with op names and shapes", "[graph]")
{
    ad::Tape<double> tape;
    ad::Parameter<double> W(Tensor<double>{{0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}});
    auto x = tape.variable({{1.0, 2.0, 3.0}});
    auto unrelated = ad::exp(x);  // recorded, but the loss does not read it
    auto w = tape.param(W);
    auto h = ad::tanh(ad::matmul(x, w));  // [1, 3] x [3, 2] -> [1, 2]
    auto loss = ad::sum(h);
    (void)unrelated;

    const std::string dot = ad::to_dot(loss, ad::GraphLabels<double>{{{"W", &W}}, {{"x", x}, {"h", h}}});
    // x, W, matmul, tanh, sum: five nodes; matmul reads two values, tanh and sum one each.
    CHECK(count(dot, node_line) == 5);
    CHECK(count(dot, edge_line) == 4);
    CHECK_THAT(dot, Contains("label=\"W\\n[3, 2]\""));
    CHECK_THAT(dot, Contains("label=\"x\\n[1, 3]\""));
    CHECK_THAT(dot, Contains("label=\"matmul\\n[1, 2]\""));
    CHECK_THAT(dot, Contains("label=\"tanh (h)\\n[1, 2]\""));
    CHECK_THAT(dot, Contains("label=\"sum\\n[]\""));
    CHECK_THAT(dot, !Contains("exp"));
    CHECK(dot.rfind("digraph", 0) == 0);
}

TEST_CASE("to_dot greys out values that need no gradient", "[graph]")
{
    ad::Tape<double> tape;
    auto data = tape.constant({1.0, 2.0});
    auto scaled = data * 3.0;  // needs no gradient: only data flows into it
    auto v = tape.variable({0.5, 0.5});
    auto y = ad::sum(scaled * v);
    const std::string dot = ad::to_dot(y);
    CHECK_THAT(dot, Contains("label=\"constant\\n[2]\", shape=ellipse, style=filled, fillcolor=\"#eeeeee\""));
    CHECK_THAT(dot, Contains("label=\"variable\\n[2]\", shape=ellipse, style=filled, fillcolor=\"#fff3cd\""));
    const auto edge = "  n" + std::to_string(data.index()) + " -> n" + std::to_string(scaled.index()) +
                      " [color=\"#888888\"];";
    CHECK_THAT(dot, Contains(edge));
    CHECK_THAT(dot, Contains("penwidth=2"));  // the output stands out
}

TEST_CASE("to_dot names a module's parameters and escapes quotes in names", "[graph]")
{
    ad::nn::Rng rng(1);
    ad::nn::Linear<float> layer(4, 3, rng);
    ad::Tape<float> tape;
    auto y = ad::sum(layer(tape.constant(xt::ones<float>({2, 4}))));
    const std::string dot = ad::to_dot(y, layer.named_parameters());
    CHECK_THAT(dot, Contains("label=\"weight\\n[3, 4]\""));
    CHECK_THAT(dot, Contains("label=\"bias\\n[3]\""));

    ad::Parameter<float> p(Tensor<float>{1.0f});
    auto z = ad::sum(tape.param(p) * 2.0f);
    CHECK_THAT(ad::to_dot(z, ad::GraphLabels<float>{{{"say \"hi\"", &p}}, {}}),
               Contains("label=\"say \\\"hi\\\"\\n[1]\""));
}

TEST_CASE("to_dot refuses a handle from a cleared tape", "[graph][errors]")
{
    ad::Tape<double> tape;
    auto y = ad::sum(tape.variable({1.0, 2.0}));
    tape.clear();
    CHECK_THROWS_AS(ad::to_dot(y), ad::Error);
    CHECK_THROWS_WITH(ad::to_dot(y), Contains("to_dot") && Contains("clear"));
    CHECK_THROWS_WITH(ad::write_dot("/nonexistent-dir/g.dot", ad::sum(tape.variable({1.0}))),
                      Contains("write_dot") && Contains("/nonexistent-dir/g.dot"));
}

TEST_CASE("Graphviz's dot reads the exported graph", "[graph]")
{
    if (std::system("dot -V >/dev/null 2>&1") != 0) {
        WARN("Graphviz dot is not installed; scripts/install-deps installs it");
        return;
    }
    ad::Tape<double> tape;
    ad::Parameter<double> W(Tensor<double>{{2.0, 2.0}, {1.0, 1.0}});
    auto x = tape.constant({{0.0, 1.0}});
    auto y = ad::sum(ad::relu(ad::matmul(x, tape.param(W), ad::transpose_b) - 1.0));
    const auto dir = std::filesystem::temp_directory_path();
    const auto dot_path = (dir / "ad-test-graph.dot").string(), svg_path = (dir / "ad-test-graph.svg").string();
    ad::write_dot(dot_path, y, ad::GraphLabels<double>{{{"W1", &W}}, {{"x", x}}});
    CHECK(std::system(("dot -Tsvg " + dot_path + " -o " + svg_path).c_str()) == 0);
    CHECK(std::filesystem::file_size(svg_path) > 0);
    std::filesystem::remove(dot_path);
    std::filesystem::remove(svg_path);
}
