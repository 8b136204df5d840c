#include "files.hpp"

#include "fd.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace secmsg {
namespace {

[[noreturn]] void fail(int err, const std::string& what, const std::string& path) {
    throw std::system_error(err, std::generic_category(), what + " " + path);
}

std::string directory_of(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

FileContents read_small_file(const std::string& path, std::size_t max_size) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) fail(errno, "cannot open", path);
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) fail(errno, "cannot inspect", path);
    if (!S_ISREG(st.st_mode)) fail(EINVAL, "not a regular file:", path);
    if (static_cast<std::size_t>(st.st_size) > max_size) fail(EFBIG, "larger than expected:", path);

    FileContents c{SecretBytes(static_cast<std::size_t>(st.st_size)), st.st_mode};
    std::size_t got = 0;
    while (got < c.bytes.size()) {
        const ssize_t n = ::read(fd.get(), c.bytes.data() + got, c.bytes.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(errno, "cannot read", path);
        if (n == 0) break;  // shrank while reading: keep what is there
        got += static_cast<std::size_t>(n);
    }
    if (got < c.bytes.size()) {
        SecretBytes exact(got);
        std::copy_n(c.bytes.data(), got, exact.data());
        c.bytes = std::move(exact);
    }
    return c;
}

bool write_file_atomically(const std::string& path, std::span<const std::uint8_t> data,
                           mode_t mode, bool replace) {
    std::string tmp = path + ".tmp-XXXXXX";
    Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));  // created with mode 0600
    if (!fd) fail(errno, "cannot create a temporary file for", path);
    struct Unlink {
        const std::string& path;
        ~Unlink() { ::unlink(path.c_str()); }
    } cleanup{tmp};

    if (::fchmod(fd.get(), mode) != 0) fail(errno, "cannot set the mode of", tmp);
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(errno, "cannot write", tmp);
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) fail(errno, "cannot sync", tmp);
    if (::close(fd.release()) != 0) fail(errno, "cannot write", tmp);
    // link() never replaces; rename() does.
    if (replace ? ::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str())) {
        if (errno == EEXIST && !replace) return false;
        fail(errno, "cannot create", path);
    }
    const std::string dir = directory_of(path);
    Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd || ::fsync(dfd.get()) != 0) fail(errno, "cannot sync the directory", dir);
    return true;
}

}  // namespace secmsg
