// Quick start: record a function on a tape, take its gradient, and check it against finite
// differences. The README shows this file.
#include "autodiff/autodiff.hpp"

#include <xtensor/xio.hpp>

#include <iostream>

int main()
{
    ad::Tape<double> tape;
    auto x = tape.variable({{1.0, -2.0, 0.5}});                 // shape [1, 3]
    auto W = tape.variable({{0.3, -0.1}, {0.8, 0.2}, {-0.5, 0.4}});  // shape [3, 2]
    auto loss = ad::sum(ad::tanh(ad::matmul(x, W)));           // sum(tanh(x W))
    auto g = ad::grad(loss, {W});                               // d loss / d W
    std::cout << "loss = " << loss.item() << "\ndloss/dW =\n" << g[0] << "\n";

    auto f = [](const std::vector<ad::Var<double>>& v) { return ad::sum(ad::tanh(ad::matmul(v[0], v[1]))); };
    auto check = ad::gradcheck<double>(f, {x.value(), W.value()});
    std::cout << check.report() << "\n";
    return check.ok ? 0 : 1;
}
