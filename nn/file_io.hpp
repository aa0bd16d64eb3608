// Whole-file reads and atomic writes, for every reader and writer of nn/ (.npz, IDX, saved
// models): only regular files are read, never more than a stated size; a write replaces its
// target all at once or not at all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ad::nn {

// The whole of a regular file of at most max_bytes; anything else raises ad::Error starting with
// `what` and the path. Opened with O_NONBLOCK, so a FIFO is refused rather than waited on.
std::vector<std::uint8_t> read_regular_file(const std::string& path, std::uint64_t max_bytes,
                                            const std::string& what);

// Writes `path` atomically (temporary file in the same directory, fsync, rename). A symbolic
// link is followed: its target is replaced, the link stays. A new file gets mode 0666 less the
// umask, an existing one keeps its mode. Temporaries left by a killed save are removed by the
// next save of the same file.
void write_file_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes);

}  // namespace ad::nn
