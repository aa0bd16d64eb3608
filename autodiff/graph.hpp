// Seeing the graph: a recorded tape as Graphviz DOT.
//
// Every record the output depends on becomes a node labelled with its op and output shape;
// an edge runs from each input to the op that read it. Parameters are boxes labelled with their
// names, inputs are ellipses, and values that need no gradient (data, constants) are grey, so
// the picture shows where gradients flow. Render with Graphviz: `dot -Tsvg graph.dot -o graph.svg`.
#pragma once

#include "autodiff/tape.hpp"

#include <string>
#include <utility>
#include <vector>

namespace ad {

template <class T>
struct GraphLabels {
    // Names of parameters, e.g. a module's named_parameters().
    std::vector<std::pair<std::string, Parameter<T>*>> parameters;
    // Names of other values on the tape (inputs, targets, intermediate results).
    std::vector<std::pair<std::string, Var<T>>> values;
};

// The DOT text of the part of output's tape that output depends on, in tape order.
template <class T>
std::string to_dot(const Var<T>& output, const GraphLabels<T>& labels = {});
template <class T>
std::string to_dot(const Var<T>& output, const std::vector<std::pair<std::string, Parameter<T>*>>& parameters);

// Writes to_dot(output, labels) to a file; raises ad::Error if it cannot be written.
template <class T>
void write_dot(const std::string& path, const Var<T>& output, const GraphLabels<T>& labels = {});

}  // namespace ad
