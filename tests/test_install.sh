#!/usr/bin/env bash
# The installed package works for another CMake project: `cmake --install` the build tree into a
# temporary prefix, then configure, build and run two small projects that find the library with
# find_package(autodiff): one takes a gradient with the engine alone; the other is
# examples/custom_op.cpp, which defines ops through the public op contract, uses them in a
# module, trains it and gradchecks it, linking autodiff::nn alone. Both are built without any
# -march flag (the package must not need the machine's tuning), and the second again with
# -march=native.
# Usage: test_install.sh <build dir>
set -euo pipefail
build=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/autodiff/autodiff.hpp"

mkdir "$work/consumer"
cat >"$work/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(consumer LANGUAGES CXX)
find_package(autodiff 0.1 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE autodiff::autodiff)
EOF
cat >"$work/consumer/main.cpp" <<'EOF'
#include "autodiff/autodiff.hpp"

#include <cmath>
#include <cstdio>

int main()
{
    // d/dw sum(w^2) = 2 w, in double and in float.
    ad::Tape<double> tape;
    ad::Parameter<double> w(ad::Tensor<double>{0.5, -1.0, 2.0});
    ad::backward(ad::sum(ad::square(tape.param(w))));
    for (std::size_t i = 0; i < 3; ++i)
        if (w.grad(i) != 2 * w.value()(i)) return 1;

    ad::Tape<float> tf;
    const auto x = tf.variable(ad::Tensor<float>{1.0f, 3.0f});
    const auto g = ad::grad(ad::sum(x * x), {x})[0];
    if (g(0) != 2.0f || g(1) != 6.0f) return 2;

    const ad::Tensor<double> X{{1.0, -2.0, 0.5}}, W{{0.3, -0.1}, {0.8, 0.2}, {-0.5, 0.4}};
    const auto check = ad::gradcheck<double>(
        [](const std::vector<ad::Var<double>>& v) { return ad::sum(ad::tanh(ad::matmul(v[0], v[1]))); }, {X, W});
    std::printf("%s\n", check.report().c_str());
    return check.ok ? 0 : 3;
}
EOF

cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
start=$(date +%s.%N)
cmake --build "$work/consumer/build" >/dev/null
end=$(date +%s.%N)
echo "consumer built in $(echo "$end - $start" | bc) s"
"$work/consumer/build/consumer"
if grep -q -- "-march" "$work/consumer/build/CMakeFiles/consumer.dir/flags.make"; then
  echo "the installed package passed a -march flag on to its consumer" >&2
  exit 4
fi

src=$(cd "$(dirname "$0")/.." && pwd)
mkdir "$work/custom_op"
cp "$src/examples/custom_op.cpp" "$work/custom_op/main.cpp"
cp "$src/examples/custom_ops.hpp" "$work/custom_op/custom_ops.hpp"
cat >"$work/custom_op/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(custom_op LANGUAGES CXX)
find_package(autodiff 0.1 REQUIRED)
add_executable(custom_op main.cpp)
target_link_libraries(custom_op PRIVATE autodiff::nn)
EOF
for flags in "" "-march=native"; do
  dir="$work/custom_op/build${flags:+-native}"
  cmake -S "$work/custom_op" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="$flags" \
        -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
  cmake --build "$dir" >/dev/null
  echo "custom_op consumer (extra flags: ${flags:-none}):"
  "$dir/custom_op" --steps 300
done
