// The allocator definition every user of the library compiles with, forced in by autodiff.pc
// (-include) ahead of any other header. The CMake target passes the same definition as
// "-DXTENSOR_DEFAULT_ALLOCATOR(T)=...", but pkg-config's output goes through the shell of a
// Makefile, which takes unquoted parentheses for syntax, and pkgconf does not escape them.
// The text must stay token for token and space for space the CMake one (CMakeLists.txt), so
// that a build given both sees one definition, not a redefinition.
#pragma once
#define XTENSOR_DEFAULT_ALLOCATOR(T) xsimd::aligned_allocator<T,64>
