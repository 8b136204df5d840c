#include "keys/files.hpp"

#include "io/fd.hpp"
#include "io/write_all.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <endian.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <system_error>
#include <unistd.h>

namespace secmsg {
namespace {

using Kind = KeyFileError::Kind;

[[noreturn]] void fail(int err, const std::string& what, const std::string& path) {
    throw std::system_error(err, std::generic_category(), what + " " + path);
}

std::string directory_of(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string octal_mode(mode_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return buf;
}

const char* type_name(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

// The open/fstat errors shared by files and directories.
[[noreturn]] void refuse_open(int err, const std::string& name, const std::string& what) {
    throw KeyFileError(err == ENOENT ? Kind::missing : Kind::unreadable,
                       name + ": cannot " + what + ": " + std::strerror(err));
}

// Refuses an owner other than root and this process's effective user;
// `name` is the label and path.
void check_owner(const struct stat& st, const std::string& name, const std::string& path) {
    const uid_t self = ::geteuid();
    if (st.st_uid == 0 || st.st_uid == self) return;
    throw KeyFileError(Kind::owner,
                       name + " is owned by uid " + std::to_string(st.st_uid) +
                           ", neither root nor this process's user (uid " + std::to_string(self) +
                           "), so that user could change it; give it to one of them (chown " +
                           (self == 0 ? std::string("root") : std::to_string(self)) + " " + path +
                           ")");
}

// Access for anyone but the file's owner and this process's user, as mode
// bits: the class of named users and groups in 070, others in 007.  When
// the file has a POSIX access ACL, stat's group bits are only the ACL's
// mask: the entries say who really has access.
struct Exposure {
    mode_t bits = 0;
    bool by_acl = false;
};

Exposure exposure_of(int fd, const struct stat& st) {
    const mode_t by_mode = st.st_mode & 077;
    // Header (version) then entries {tag, perm: le16; id: le32}
    // (linux/posix_acl_xattr.h); 64 entries are more than anyone sets.
    std::uint8_t acl[4 + 8 * 64];
    const ssize_t n = ::fgetxattr(fd, "system.posix_acl_access", acl, sizeof acl);
    if (n < 0) return {by_mode, false};  // no ACL (ENODATA, ENOTSUP) or unknowable: the mode
    std::uint32_t version;
    std::memcpy(&version, acl, 4);
    if (n < 4 || (n - 4) % 8 != 0 || le32toh(version) != 2) return {by_mode, true};
    constexpr std::uint16_t user = 0x02, group_obj = 0x04, group = 0x08, mask_tag = 0x10;
    mode_t mask = 07, granted = 0;
    for (ssize_t at = 4; at < n; at += 8) {
        std::uint16_t tag, perm;
        std::uint32_t id;
        std::memcpy(&tag, acl + at, 2);
        std::memcpy(&perm, acl + at + 2, 2);
        std::memcpy(&id, acl + at + 4, 4);
        tag = le16toh(tag);
        perm = le16toh(perm) & 07;
        id = le32toh(id);
        if (tag == mask_tag)
            mask = perm;
        else if (tag == group_obj || tag == group)
            granted |= perm;
        else if (tag == user && id != st.st_uid && id != ::geteuid())
            granted |= perm;
    }
    return {static_cast<mode_t>(((granted & mask) << 3) | (st.st_mode & 007)), true};
}

void check_access(int fd, const struct stat& st, CredentialKind kind, const std::string& name,
                  const std::string& path) {
    const Exposure e = exposure_of(fd, st);
    const bool is_private = kind != CredentialKind::certificate;
    const mode_t forbidden = is_private ? 077 : 022;
    if ((e.bits & forbidden) == 0) return;
    std::string what = name + " has mode " + octal_mode(st.st_mode);
    if (e.by_acl) what += " and an access ACL that lets other users or groups use it";
    if (is_private) {
        what += ", readable or writable by others; it must be 0600 or stricter (";
        if (e.by_acl) what += "setfacl -b " + path + "; ";
        what += "chmod 600 " + path + ")";
    } else {
        what += ", writable by others; only its owner may write it (";
        if (e.by_acl) what += "setfacl -b " + path + "; ";
        what += "chmod go-w " + path + ")";
    }
    throw KeyFileError(Kind::permissions, what);
}

}  // namespace

std::string_view credential_label(CredentialKind kind) {
    switch (kind) {
    case CredentialKind::psk: return "PSK file";
    case CredentialKind::private_key: return "private key file";
    case CredentialKind::certificate: return "certificate file";
    }
    return "credential file";
}

FileContents read_credential_file(const std::string& path, CredentialKind kind,
                                  std::size_t max_size) {
    const std::string name = std::string(credential_label(kind)) + " " + path;
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.  No
    // O_NOFOLLOW: links are legitimate here (see the header).
    Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd) refuse_open(errno, name, "open");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) refuse_open(errno, name, "inspect");
    if (!S_ISREG(st.st_mode))
        throw KeyFileError(Kind::not_regular,
                           name + " is " + type_name(st.st_mode) + ", not a regular file");
    check_owner(st, name, path);
    check_access(fd.get(), st, kind, name, path);
    if (static_cast<std::size_t>(st.st_size) > max_size)
        throw KeyFileError(Kind::too_large,
                           name + " is " + std::to_string(st.st_size) + " bytes, more than a " +
                               std::string(credential_label(kind)) + " can be (at most " +
                               std::to_string(max_size) + ")");

    FileContents c{SecretBytes(static_cast<std::size_t>(st.st_size)), st.st_mode};
    std::size_t got = 0;
    while (got < c.bytes.size()) {
        const ssize_t n = ::read(fd.get(), c.bytes.data() + got, c.bytes.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) refuse_open(errno, name, "read");
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

void check_credential_directory(const std::string& dir) {
    const std::string name = "credentials directory " + dir;
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC));
    if (!fd && errno == ENOTDIR)
        throw KeyFileError(Kind::not_regular, dir + " exists and is not a directory");
    if (!fd) refuse_open(errno, name, "open");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) refuse_open(errno, name, "inspect");
    check_owner(st, name, dir);
    if ((st.st_mode & 022) != 0)
        throw KeyFileError(
            Kind::permissions,
            name + " has mode " + octal_mode(st.st_mode) +
                ", writable by others, who could replace the key or the certificate in it; "
                "use a directory only its owner can write (chmod go-w " +
                dir + ", or a new directory such as " + dir + "/secmsgd)");
}

bool write_file_atomically(const std::string& path, std::span<const std::uint8_t> data, mode_t mode,
                           Existing existing) {
    const bool replace = existing == Existing::replace;
    std::string tmp = path + ".tmp-XXXXXX";
    Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));  // created with mode 0600
    if (!fd) fail(errno, "cannot create a temporary file for", path);
    struct Unlink {
        const std::string& path;
        ~Unlink() { ::unlink(path.c_str()); }
    } cleanup{tmp};

    if (::fchmod(fd.get(), mode) != 0) fail(errno, "cannot set the mode of", tmp);
    if (const Written w = write_all(fd.get(), data); !w.done()) fail(w.error, "cannot write", tmp);
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
