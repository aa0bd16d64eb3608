# pkg-config file and the Debian package (CPack), included from the top-level CMakeLists.txt.

# autodiff.pc in <libdir>/pkgconfig, its prefix relative to its own place (${pcfiledir}), so the
# tree still works after a move: unpacked with dpkg-deb -x, or installed with --prefix.
set(AD_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH AD_PC_PREFIX_FROM_PCDIR /prefix/${AD_PC_DIR} /prefix)
string(REGEX REPLACE "/$" "" AD_PC_PREFIX_FROM_PCDIR "${AD_PC_PREFIX_FROM_PCDIR}")
if(AD_OPENMP)
  set(AD_PC_BLAS_REQUIRES "")
  set(AD_PC_BLAS_LIBS "-L${AD_OPENBLAS_OPENMP_DIR} -Wl,-rpath,${AD_OPENBLAS_OPENMP_DIR} -lopenblas -fopenmp")
else()
  set(AD_PC_BLAS_REQUIRES "openblas ")
  set(AD_PC_BLAS_LIBS "")
endif()
# Built with AD_DNNL, the engine links oneDNN (float32 convolutions; backends.hpp).
if(AD_DNNL)
  string(APPEND AD_PC_BLAS_LIBS " -ldnnl")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/autodiff.pc.in ${PROJECT_BINARY_DIR}/autodiff.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/autodiff.pc DESTINATION ${AD_PC_DIR})
install(FILES ${CMAKE_CURRENT_LIST_DIR}/pkgconfig_flags.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/autodiff)

# libautodiff-dev_<version>_<arch>.deb: static libraries, headers, CMake and pkg-config files.
# scripts/package builds it from a tree configured with -DAD_NATIVE=OFF and the prefix /usr.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME libautodiff-dev)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Seed 763ee510 maintainers <maintainers@users.noreply.b-seed-763ee510.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "tape-based reverse-mode automatic differentiation for C++ (development files)")
set(CPACK_PACKAGE_DESCRIPTION "A C++17 reverse-mode automatic differentiation engine over xtensor \
arrays: a tape of ops with their vector-Jacobian products, higher-order derivatives, gradient \
checking, and neural-network modules, losses, optimisers and checkpoints (nn/), with optional \
data-parallel training over MPI. Static libraries, headers, CMake package (find_package(autodiff)) \
and pkg-config file (autodiff).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# What the headers include and the static libraries link: xtensor (and xtl, xsimd), xtensor-blas
# and OpenBLAS (the CMake package asks for BLA_VENDOR OpenBLAS), zlib and libzip (nn/), and
# pkg-config, through which the CMake package finds libzip. Built with AD_OPENMP, the libraries
# link OpenBLAS's OpenMP build and libgomp (libopenblas-openmp-dev; libgomp comes with g++).
set(AD_DEB_BLAS libopenblas-dev)
if(AD_OPENMP)
  set(AD_DEB_BLAS "libopenblas-dev, libopenblas-openmp-dev")
endif()
if(AD_DNNL)
  string(APPEND AD_DEB_BLAS ", libdnnl-dev")  # oneDNN: float32 convolutions (backends.hpp)
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libxtensor-dev (>= 0.24), xtl-dev, libxsimd-dev, libxtensor-blas-dev, ${AD_DEB_BLAS}, zlib1g-dev, libzip-dev, pkg-config")
# autodiff::distributed (nn/distributed.hpp) is usable only with MPI.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libopenmpi-dev, openmpi-bin")
# A tree built with -march=native would package code for this processor only; cpack refuses it
# (cmake/CPackNativeCheck.cmake) unless told the package stays on this machine.
set(CPACK_AD_NATIVE ${AD_NATIVE})
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_LIST_DIR}/CPackNativeCheck.cmake)
include(CPack)
