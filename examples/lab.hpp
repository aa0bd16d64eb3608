// Where the examples write their CSV, gnuplot and DOT files: a directory made on demand, and
// files opened for writing. Either failure ends the program with a message naming the path,
// rather than a plot step that silently finds no data.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace examples {

inline void make_output_dir(const std::string& dir, const char* program)
{
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir)) {
        std::fprintf(stderr, "%s: cannot create the output directory %s: %s\n", program, dir.c_str(),
                     ec ? ec.message().c_str() : "a file of that name is in the way");
        std::exit(1);
    }
}

inline std::ofstream open_output(const std::string& path, const char* program)
{
    std::ofstream f(path);
    if (!f) {
        std::fprintf(stderr, "%s: cannot write %s: %s\n", program, path.c_str(), std::strerror(errno));
        std::exit(1);
    }
    return f;
}

}  // namespace examples
