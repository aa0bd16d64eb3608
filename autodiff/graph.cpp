#include "autodiff/graph.hpp"

#include <fstream>
#include <map>
#include <sstream>

namespace ad {

namespace {

// A DOT string of two lines (DOT's line break is the two characters \n), quotes and
// backslashes in names escaped.
std::string label2(const std::string& first, const std::string& second)
{
    std::string q = "\"";
    for (char c : first) {
        if (c == '"' || c == '\\') q += '\\';
        q += c;
    }
    return q + "\\n" + second + '"';
}

}  // namespace

template <class T>
std::string to_dot(const Var<T>& output, const GraphLabels<T>& labels)
{
    const Tape<T>& tape = tape_of(output, "to_dot");
    tape.check(output, "to_dot");
    const std::size_t out = output.index();

    // The records output depends on: one backward pass over the tape (inputs precede their users).
    std::vector<char> used(out + 1, 0);
    used[out] = 1;
    for (std::size_t i = out + 1; i-- > 0;) {
        if (!used[i]) continue;
        const auto& r = tape.record(i);
        for (std::size_t k = 0; k < r.n_inputs; ++k) used[tape.input(r, k)] = 1;
    }

    std::map<const Parameter<T>*, std::string> param_names;
    for (const auto& [name, p] : labels.parameters) param_names[p] = name;
    std::map<std::size_t, std::string> value_names;
    for (const auto& [name, v] : labels.values) {
        tape.check(v, "to_dot");
        value_names[v.index()] = name;
    }

    std::ostringstream dot;
    dot << "digraph tape {\n"
        << "  node [fontname=\"Helvetica\", fontsize=11];\n"
        << "  edge [arrowsize=0.7];\n";
    for (std::size_t i = 0; i <= out; ++i) {
        if (!used[i]) continue;
        const auto& r = tape.record(i);
        const std::string shape = shape_str(tape.value(i).shape());
        std::string name, style;
        if (r.param) {
            const auto it = param_names.find(r.param);
            name = it != param_names.end() ? it->second : std::string("parameter");
            style = "shape=box, style=filled, fillcolor=\"#cfe2ff\"";
        } else if (r.n_inputs == 0) {
            const auto it = value_names.find(i);
            name = it != value_names.end() ? it->second : std::string(r.op);
            style = r.needs_grad ? "shape=ellipse, style=filled, fillcolor=\"#fff3cd\""
                                 : "shape=ellipse, style=filled, fillcolor=\"#eeeeee\", color=\"#888888\"";
        } else {
            const auto it = value_names.find(i);
            name = std::string(r.op) + (it != value_names.end() ? " (" + it->second + ")" : "");
            style = r.needs_grad ? "shape=box, style=rounded"
                                 : "shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", color=\"#888888\"";
        }
        if (i == out) style += ", penwidth=2";
        dot << "  n" << i << " [label=" << label2(name, shape) << ", " << style << "];\n";
    }
    for (std::size_t i = 0; i <= out; ++i) {
        if (!used[i]) continue;
        const auto& r = tape.record(i);
        for (std::size_t k = 0; k < r.n_inputs; ++k) {
            const auto j = tape.input(r, k);
            dot << "  n" << j << " -> n" << i;
            if (!tape.record(j).needs_grad) dot << " [color=\"#888888\"]";
            dot << ";\n";
        }
    }
    dot << "}\n";
    return dot.str();
}

template <class T>
std::string to_dot(const Var<T>& output, const std::vector<std::pair<std::string, Parameter<T>*>>& parameters)
{
    GraphLabels<T> labels;
    labels.parameters = parameters;
    return to_dot(output, labels);
}

template <class T>
void write_dot(const std::string& path, const Var<T>& output, const GraphLabels<T>& labels)
{
    const std::string text = to_dot(output, labels);
    std::ofstream f(path);
    f << text;
    f.close();
    if (!f) throw Error("write_dot: cannot write " + path);
}

#define AD_INSTANTIATE(T)                                                                                \
    template std::string to_dot<T>(const Var<T>&, const GraphLabels<T>&);                               \
    template std::string to_dot<T>(const Var<T>&, const std::vector<std::pair<std::string, Parameter<T>*>>&); \
    template void write_dot<T>(const std::string&, const Var<T>&, const GraphLabels<T>&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
