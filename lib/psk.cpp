#include "psk.hpp"

#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace secmsg {
namespace {

std::string octal_mode(mode_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return buf;
}

// A file descriptor closed on every path.
struct FileFd {
    int fd = -1;
    ~FileFd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

SecretBytes parse_psk_text(std::string_view text, const std::string& what_for) {
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    constexpr std::size_t encoded_size = 44;  // base64 of 32 bytes, with padding
    if (text.size() != encoded_size)
        throw KeyFileError(KeyFileError::Kind::format,
                           what_for + ": not a secmsg PSK: expected the base64 of exactly 32 bytes "
                           "(44 characters), found " + std::to_string(text.size()) + " characters");
    SecretBytes key(psk_size);
    std::size_t len = 0;
    const char* end = nullptr;
    if (sodium_base642bin(key.data(), key.size(), text.data(), text.size(), nullptr, &len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != text.data() + text.size() || len != psk_size)
        throw KeyFileError(KeyFileError::Kind::format,
                           what_for + ": not a secmsg PSK: invalid base64 (it must be the standard "
                           "alphabet with '=' padding, one line)");
    // Reject non-canonical encodings (stray bits in the last character).
    char canon[encoded_size + 1];
    sodium_bin2base64(canon, sizeof canon, key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
    const bool same = std::memcmp(canon, text.data(), encoded_size) == 0;
    sodium_memzero(canon, sizeof canon);
    if (!same)
        throw KeyFileError(KeyFileError::Kind::format,
                           what_for + ": not a secmsg PSK: non-canonical base64");
    return key;
}

SecretBytes load_psk_file(const std::string& path) {
    FileFd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (f.fd < 0) {
        const int e = errno;
        throw KeyFileError(e == ENOENT ? KeyFileError::Kind::missing : KeyFileError::Kind::unreadable,
                           "PSK file " + path + ": " + std::strerror(e));
    }
    struct stat st{};
    if (::fstat(f.fd, &st) != 0)
        throw KeyFileError(KeyFileError::Kind::unreadable,
                           "PSK file " + path + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        throw KeyFileError(KeyFileError::Kind::unreadable, "PSK file " + path + ": not a regular file");
    if ((st.st_mode & 077) != 0)
        throw KeyFileError(KeyFileError::Kind::permissions,
                           "PSK file " + path + " has mode " + octal_mode(st.st_mode) +
                           ", readable or writable by others; it must be 0600 or stricter "
                           "(chmod 600 " + path + ")");
    // Read at most a little more than a valid file can hold.
    SecretBytes text(64);
    std::size_t got = 0;
    for (;;) {
        const auto n = ::read(f.fd, text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            throw KeyFileError(KeyFileError::Kind::unreadable,
                               "PSK file " + path + ": " + std::strerror(errno));
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
        if (got == text.size()) break;
    }
    return parse_psk_text({reinterpret_cast<const char*>(text.data()), got}, "PSK file " + path);
}

void generate_psk_file(const std::string& path, bool overwrite) {
    if (sodium_init() < 0) throw KeyFileError(KeyFileError::Kind::io, "libsodium failed to initialise");
    if (!overwrite && ::access(path.c_str(), F_OK) == 0)
        throw KeyFileError(KeyFileError::Kind::exists,
                           "PSK file " + path + " already exists; not overwriting it");
    SecretBytes key(psk_size);
    randombytes_buf(key.data(), key.size());
    SecretBytes text(46);  // 44 characters, newline, terminator
    sodium_bin2base64(reinterpret_cast<char*>(text.data()), 45, key.data(), key.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    text.data()[44] = '\n';

    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    auto fail = [&](const std::string& what) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw KeyFileError(KeyFileError::Kind::io, "PSK file " + path + ": " + what + ": " + std::strerror(e));
    };
    {
        FileFd f;
        f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (f.fd < 0) {
            const int e = errno;
            throw KeyFileError(KeyFileError::Kind::io,
                               "PSK file " + path + ": cannot create " + tmp + ": " + std::strerror(e));
        }
        if (::fchmod(f.fd, 0600) != 0) fail("chmod");
        std::size_t done = 0;
        while (done < 45) {
            const auto n = ::write(f.fd, text.data() + done, 45 - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail("write");
            done += static_cast<std::size_t>(n);
        }
        if (::fsync(f.fd) != 0) fail("fsync");
    }
    const unsigned flags = overwrite ? 0 : RENAME_NOREPLACE;
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), flags) != 0) {
        if (errno == EEXIST) {
            ::unlink(tmp.c_str());
            throw KeyFileError(KeyFileError::Kind::exists,
                               "PSK file " + path + " already exists; not overwriting it");
        }
        fail("rename");
    }
}

}  // namespace secmsg
