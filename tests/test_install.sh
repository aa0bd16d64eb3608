#!/usr/bin/env bash
# The installed package works for another CMake project: `cmake --install` the build tree into a
# temporary prefix, then configure, build and run two small projects that find the library with
# find_package(autodiff): one takes a gradient with the engine alone; the other is
# examples/custom_op.cpp, which defines ops through the public op contract, uses them in a
# module, trains it and gradchecks it, linking autodiff::nn alone. Both are built without any
# -march flag (the package must not need the machine's tuning), and the second again with
# -march=native. When the package holds autodiff::distributed (MPI was found at build time), a
# third project links it and trains data-parallel under `mpirun -np 2`.
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
find_package(autodiff 1.0 REQUIRED)
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

# Configured as on a machine without MPI: the package is found all the same, without
# autodiff::distributed.
# Make's generator, whatever CMAKE_GENERATOR says: the -march check below reads its flags.make.
cmake -G "Unix Makefiles" -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null
start=$(date +%s.%N)
cmake --build "$work/consumer/build" >/dev/null
end=$(date +%s.%N)
echo "consumer built in $(echo "$end - $start" | bc) s"
"$work/consumer/build/consumer"
flags_make="$work/consumer/build/CMakeFiles/consumer.dir/flags.make"
[ -f "$flags_make" ] || { echo "no $flags_make to check the consumer's flags in" >&2; exit 5; }
if grep -q -- "-march" "$flags_make"; then
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
find_package(autodiff 1.0 REQUIRED)
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

# The MPI component: a linear model y = x w + b trained for three SGD steps on a global batch of 5
# (3 examples on rank 0, 2 on rank 1) with the mean squared error. Every rank must end with the
# parameters of full-batch gradient descent, worked out here on plain doubles from
# d/dw mean((x w + b - t)^2) = (2/N) sum_i (x_i w + b - t_i) x_i.
if [ -z "$(find "$work/prefix" -name distributedTargets.cmake)" ]; then
  echo "autodiff::distributed not installed (built without MPI): no MPI client"
  exit 0
fi
test -f "$work/prefix/include/nn/distributed.hpp"
mkdir "$work/mpi_client"
cat >"$work/mpi_client/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(mpi_client LANGUAGES CXX)
find_package(autodiff 1.0 REQUIRED COMPONENTS distributed)
add_executable(mpi_client main.cpp)
target_link_libraries(mpi_client PRIVATE autodiff::distributed)
EOF
cat >"$work/mpi_client/main.cpp" <<'EOF'
#include "autodiff/autodiff.hpp"
#include "nn/distributed.hpp"
#include "nn/nn.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char** argv)
{
    return ad::dist::run(argc, argv, [] {
        const std::vector<std::vector<double>> x{{1.0, 2.0}, {-1.0, 0.5}, {0.0, -2.0}, {3.0, 1.0}, {0.5, 0.5}};
        const std::vector<double> t{1.0, -1.0, 2.0, 0.0, 0.5};
        const std::size_t N = x.size();
        const double lr = 0.05;
        const int steps = 3;

        ad::nn::Linear<double> model(ad::Tensor<double>{{0.3, -0.2}}, ad::Tensor<double>{0.1});
        ad::nn::SGDOptions o;
        o.lr = lr;
        ad::nn::SGD<double> opt(model, o);
        ad::dist::DataParallel<double> dp(model, opt);
        const auto shard = ad::dist::shard(N, dp.rank(), dp.size());

        ad::Tape<double> tape;
        for (int s = 0; s < steps; ++s) {
            auto xs = ad::Tensor<double>::from_shape({shard.count(), 2});
            auto ts = ad::Tensor<double>::from_shape({shard.count(), 1});
            for (std::size_t i = 0; i < shard.count(); ++i) {
                xs(i, 0) = x[shard.begin + i][0];
                xs(i, 1) = x[shard.begin + i][1];
                ts(i, 0) = t[shard.begin + i];
            }
            tape.clear();
            dp.zero_grad();
            dp.backward(ad::nn::mse_loss(model(tape.constant(xs)), ts), shard.weight());
            dp.step();
        }

        // Full-batch gradient descent by hand.
        double w0 = 0.3, w1 = -0.2, b = 0.1;
        for (int s = 0; s < steps; ++s) {
            double g0 = 0, g1 = 0, gb = 0;
            for (std::size_t i = 0; i < N; ++i) {
                const double r = x[i][0] * w0 + x[i][1] * w1 + b - t[i];
                g0 += 2 * r * x[i][0] / double(N);
                g1 += 2 * r * x[i][1] / double(N);
                gb += 2 * r / double(N);
            }
            w0 -= lr * g0;
            w1 -= lr * g1;
            b -= lr * gb;
        }
        const auto& W = model.weight().value();
        const auto& B = model.bias()->value();
        const double err = std::max({std::abs(W(0, 0) - w0), std::abs(W(0, 1) - w1), std::abs(B(0) - b)});
        std::printf("rank %d of %d: %zu examples, w = (%.12f, %.12f), b = %.12f, "
                    "largest difference from full-batch descent %.3g\n",
                    dp.rank(), dp.size(), shard.count(), W(0, 0), W(0, 1), B(0), err);
        dp.finish();
        if (dp.size() != 2) return 5;
        return err < 1e-12 ? 0 : 6;
    });
}
EOF
cmake -S "$work/mpi_client" -B "$work/mpi_client/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/mpi_client/build" >/dev/null
# As root (CI containers) OpenMPI needs both variables; --oversubscribe lets two ranks share fewer
# cores (as tests/mpi does).
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  mpirun -np 2 --oversubscribe "$work/mpi_client/build/mpi_client"
