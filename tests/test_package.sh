#!/usr/bin/env bash
# The Debian package and the pkg-config file, for a program outside the project.
#   test_package.sh make <build dir> <dir>   cpack builds libautodiff-dev_<version>_<arch>.deb from
#       the build tree into <dir> and unpacks it (dpkg-deb -x, nothing is installed on the machine)
#       into <dir>/root; checks its fields and that it passes no -march flag on.
#   test_package.sh cmake <dir>        a CMake project finds the unpacked package, builds, runs.
#   test_package.sh pkg-config <dir>   a plain Makefile built with `pkg-config --cflags --libs
#       autodiff` against the unpacked tree, runs.
# The client takes a gradient through autodiff::nn, checked against the formula, and writes and
# reads a checkpoint (which links zlib and libzip through nn/).
set -euo pipefail
mode=$1

client() {
  cat >"$1/main.cpp" <<'EOF'
#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

int main(int argc, char** argv)
{
    // L = mean((x w + b - t)^2) over 2 examples: dL/dw_j = sum_i (x_i w + b - t_i) x_ij,
    // dL/db = sum_i (x_i w + b - t_i) (2/N with N = 2).
    ad::nn::Linear<double> model(ad::Tensor<double>{{0.5, -1.0}}, ad::Tensor<double>{0.25});
    auto x = ad::Tensor<double>::from_shape({2, 2}), t = ad::Tensor<double>::from_shape({2, 1});
    x(0, 0) = 1.0, x(0, 1) = 2.0, x(1, 0) = -3.0, x(1, 1) = 0.5;
    t(0, 0) = 1.0, t(1, 0) = -2.0;
    ad::Tape<double> tape;
    ad::backward(ad::nn::mse_loss(model(tape.constant(x)), t));
    const double r0 = 0.5 - 2.0 + 0.25 - 1.0, r1 = -1.5 - 0.5 + 0.25 + 2.0;
    const double gw0 = r0 * 1.0 + r1 * -3.0, gw1 = r0 * 2.0 + r1 * 0.5, gb = r0 + r1;
    const auto& g = model.weight().grad;
    const double err = std::max({std::abs(g(0, 0) - gw0), std::abs(g(0, 1) - gw1),
                                 std::abs(model.bias()->grad(0) - gb)});
    std::printf("gradient (%.6f, %.6f, %.6f), largest difference from the formula %.3g\n", g(0, 0),
                g(0, 1), model.bias()->grad(0), err);
    if (err > 1e-12) return 1;

    const std::string path = std::string(argc > 1 ? argv[1] : ".") + "/linear.npz";
    ad::nn::save(model, path);
    ad::nn::Linear<double> copy(ad::Tensor<double>{{0.0, 0.0}}, ad::Tensor<double>{0.0});
    ad::nn::load(copy, path);
    if (copy.weight().value() != model.weight().value()) return 2;
    if (copy.bias()->value() != model.bias()->value()) return 3;
    std::printf("checkpoint %s read back\n", path.c_str());
    return 0;
}
EOF
}

case $mode in
make)
  build=$(cd "$2" && pwd)
  dir=$3
  rm -rf "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # A package of the test's own build tree, which may be compiled for this machine only.
  cpack --config "$build/CPackConfig.cmake" -B "$dir" -D CPACK_AD_THIS_MACHINE_ONLY=ON >"$dir/cpack.log"
  version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
  deb="$dir/libautodiff-dev_${version}_$(dpkg --print-architecture).deb"
  test -f "$deb" || { echo "no $deb; cpack made:" >&2; ls "$dir" >&2; exit 1; }
  dpkg-deb -f "$deb" Package Version Architecture Section Maintainer Depends Suggests
  test "$(dpkg-deb -f "$deb" Section)" = libdevel
  for dep in libxtensor-dev libxtensor-blas-dev libopenblas-dev zlib1g-dev libzip-dev; do
    dpkg-deb -f "$deb" Depends | grep -qw -- "$dep" || { echo "Depends lacks $dep" >&2; exit 1; }
  done
  dpkg-deb -f "$deb" Suggests | grep -qw libopenmpi-dev
  dpkg-deb -x "$deb" "$dir/root"
  test -f "$dir/root/usr/include/autodiff/autodiff.hpp"
  test -n "$(find "$dir/root/usr" -name autodiffConfig.cmake)"
  test -n "$(find "$dir/root/usr" -name autodiff.pc)"
  if grep -rq --include='*.cmake' --include='*.pc' -e -march "$dir/root/usr"; then
    echo "the package passes a -march flag on to its users" >&2
    exit 1
  fi
  ;;
cmake)
  dir=$(cd "$2" && pwd)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  client "$work"
  cat >"$work/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(deb_client LANGUAGES CXX)
find_package(autodiff 1.0 REQUIRED)
add_executable(deb_client main.cpp)
target_link_libraries(deb_client PRIVATE autodiff::nn)
EOF
  # Make's generator, whatever CMAKE_GENERATOR says: the check below reads its flags.make.
  cmake -G "Unix Makefiles" -S "$work" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$dir/root/usr" >/dev/null
  cmake --build "$work/build" >/dev/null
  # Built against the unpacked tree, not a copy installed elsewhere on the machine.
  grep -q "$dir/root/usr/include" "$work/build/CMakeFiles/deb_client.dir/flags.make"
  "$work/build/deb_client" "$work"
  ;;
pkg-config)
  dir=$(cd "$2" && pwd)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  client "$work"
  printf '%s\n' \
    'CXXFLAGS = -O2 -std=c++17 $(shell pkg-config --cflags autodiff)' \
    'LDLIBS = $(shell pkg-config --libs autodiff)' \
    'pc_client: main.cpp' \
    '	$(CXX) $(CXXFLAGS) -o $@ $< $(LDLIBS)' >"$work/Makefile"
  PKG_CONFIG_PATH=$(dirname "$(find "$dir/root/usr" -name autodiff.pc)")
  export PKG_CONFIG_PATH
  echo "pkg-config --cflags --libs autodiff: $(pkg-config --cflags --libs autodiff)"
  make -s -C "$work"
  "$work/pc_client" "$work"
  ;;
*)
  echo "usage: test_package.sh make <build dir> <dir> | cmake <dir> | pkg-config <dir>" >&2
  exit 2
  ;;
esac
