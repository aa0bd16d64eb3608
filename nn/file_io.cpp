#include "nn/file_io.hpp"

#include "autodiff/tensor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

namespace ad::nn {

std::vector<std::uint8_t> read_regular_file(const std::string& path, std::uint64_t max_bytes, const std::string& what)
{
    // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        throw Error(what + " " + path + ": " + (err == ENOENT ? std::string("does not exist") : std::strerror(err)));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(what + " " + path + ": cannot stat: " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw Error(what + " " + path + ": is a directory, not a file");
    if (!S_ISREG(st.st_mode))
        throw Error(what + " " + path + ": is not a regular file (" +
                    (S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
                                                   : S_ISBLK(st.st_mode) ? "a block device"
                                                   : S_ISSOCK(st.st_mode) ? "a socket" : "not a plain file") +
                    "); only regular files are read");
    const std::uint64_t size = std::uint64_t(st.st_size);
    if (size > max_bytes)
        throw Error(what + " " + path + ": the file has " + std::to_string(size) + " bytes, more than the " +
                    std::to_string(max_bytes) + " it may have");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    std::size_t done = 0;
    while (done < bytes.size()) {  // a file that shrinks meanwhile ends the loop; one that grows is cut
        const ssize_t r = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw Error(what + " " + path + ": read error: " + std::strerror(errno));
        if (r == 0) break;
        done += std::size_t(r);
    }
    bytes.resize(done);
    return bytes;
}

namespace {

// Temporary files are named ".<target name, at most 200 bytes>.tmp-<pid>-<random>" in the
// target's directory: the same file system, so rename() replaces the target atomically, and a
// name that fits NAME_MAX (255) even for a 255-byte target. A save killed before its rename
// leaves its temporary behind (O_TMPFILE would avoid that, but linkat cannot replace an existing
// file, so a named step remains, and not every file system has O_TMPFILE); the next save of the
// same file removes every such leftover whose process no longer exists, so a save running at
// the same time in another process keeps its own.
std::string temp_prefix(const std::string& filename) { return "." + filename.substr(0, 200) + ".tmp-"; }

void remove_stale_temps(const std::filesystem::path& dir, const std::string& filename)
{
    namespace fs = std::filesystem;
    const std::string prefix = temp_prefix(filename);
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string n = it->path().filename().string();
        if (n.compare(0, prefix.size(), prefix) != 0) continue;
        const char* p = n.c_str() + prefix.size();
        char* stop = nullptr;
        const long pid = std::strtol(p, &stop, 10);
        if (stop == p || *stop != '-' || pid <= 0) continue;
        if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
    }
}

// The file a path finally names: symbolic links are followed (as open() would), so saving
// through a link replaces the link's target and keeps the link.
std::string resolve_links(const std::string& path)
{
    namespace fs = std::filesystem;
    fs::path p(path);
    for (int depth = 0; depth < 40; ++depth) {
        std::error_code ec;
        if (!fs::is_symlink(fs::symlink_status(p, ec))) return p.string();
        const fs::path to = fs::read_symlink(p, ec);
        if (ec) throw Error("cannot write " + path + ": cannot read the symbolic link " + p.string() + ": " + ec.message());
        p = to.is_absolute() ? to : p.parent_path() / to;
    }
    throw Error("cannot write " + path + ": too many levels of symbolic links");
}

}  // namespace

void write_file_atomically(const std::string& requested, const std::vector<std::uint8_t>& bytes)
{
    namespace fs = std::filesystem;
    if (fs::path(requested).filename().empty()) throw Error("cannot write " + requested + ": the path names no file");
    const std::string path = resolve_links(requested);
    const fs::path target(path);
    std::error_code ec;
    if (fs::is_directory(target, ec)) throw Error("cannot write " + requested + ": it is a directory");
    const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    const std::string filename = target.filename().string();
    remove_stale_temps(dir, filename);

    // Created by open() with mode 0666, so the umask applies as to any new file; an existing
    // target's permissions are kept, as a plain overwrite would keep them.
    struct stat old {};
    const bool replacing = ::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode);
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        char suffix[48];
        std::snprintf(suffix, sizeof suffix, "%ld-%08lx", long(::getpid()),
                      static_cast<unsigned long>(std::random_device{}()) & 0xffffffffUL);
        tmp = (dir / (temp_prefix(filename) + suffix)).string();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || attempt > 100))
            throw Error("cannot write " + requested + ": cannot create a temporary file in " + dir.string() + ": " +
                        std::strerror(errno));
    }
    auto abandon = [&](const std::string& what) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error("cannot write " + requested + ": " + what + ": " + std::strerror(err) +
                    " (the previous file, if any, is unchanged)");
    };
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            abandon("write failed after " + std::to_string(done) + " of " + std::to_string(bytes.size()) + " bytes");
        }
        done += std::size_t(w);
    }
    if (replacing && ::fchmod(fd, old.st_mode & 07777) != 0) abandon("cannot keep the file's permissions");
    if (::fsync(fd) != 0) abandon("fsync failed");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + requested + ": close failed: " + std::strerror(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + requested + ": rename from " + tmp + " failed: " + std::strerror(err));
    }
    // Make the rename itself durable; a failure here leaves a complete file either way.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace ad::nn
