// Small-file I/O for key material and certificates: checked whole reads into
// wiped memory, and atomic creation (temporary file, fsync, link or rename,
// fsync of the directory).
#pragma once

#include "keys/setup_error.hpp"
#include "proto/secret.hpp"

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace secmsg {

// What a credential file holds, which says who may have access to it: a
// PSK or a private key may be readable by no one but its owner (and, when
// an ACL grants it, this process's user); a certificate may be readable
// by anyone.  Any of them may be writable by no one but its owner.
enum class CredentialKind { psk, private_key, certificate };

// "PSK file", "private key file", "certificate file": how messages name it.
std::string_view credential_label(CredentialKind kind);

// A credential file (PSK, private key, certificate) that cannot be used,
// read or written.  what() is one line that names the file, says what is
// wrong and, where the fix is the administrator's, how to fix it (for
// instance "chmod 600 FILE").
class KeyFileError : public SetupError {
public:
    enum class Kind {
        missing,      // no such file (or a dangling symbolic link)
        unreadable,   // open or read failed (errno says why)
        not_regular,  // a directory, FIFO, socket or device
        too_large,    // larger than the caller's bound
        permissions,  // access for others that the file must not give
        owner,        // owned by neither root nor this process's user
        format,       // the contents are not what the file should hold
        exists,       // not overwriting an existing file
        io,           // anything else
    };
    KeyFileError(Kind kind, const std::string& what) : SetupError(what), kind_(kind) {}
    Kind kind() const { return kind_; }

private:
    Kind kind_;
};

struct FileContents {
    SecretBytes bytes;  // the whole file, wiped when dropped
    mode_t mode = 0;    // st_mode of the file that was read
};

// Reads a credential file of at most max_size bytes and checks it for
// `kind`.  Never blocks: the file is opened with O_NONBLOCK (so a FIFO or
// a device is refused at once instead of waiting for a writer), then
// fstat() on that descriptor must show a regular file of at most
// max_size bytes, owned by root or by this process's effective user, with
// no access for others that `kind` forbids (mode bits, and the POSIX
// access ACL when the file has one: systemd gives a service's user its
// credentials as root-owned 0400 files plus an ACL entry, which stat
// shows as 0440).  A symbolic link is followed and its target checked
// (certbot's live/ directory is made of links); checks are on what was
// opened, so there is no window between check and use.  Throws
// KeyFileError (missing, unreadable, not_regular, owner, permissions,
// too_large).
FileContents read_credential_file(const std::string& path, CredentialKind kind,
                                  std::size_t max_size = 1 << 20);

// Checks that `dir` is a directory safe to keep credentials in: owned by
// root or by this process's effective user and writable by no one else
// (not group- or world-writable; a sticky bit as on /tmp does not make
// it so).  Throws KeyFileError (not_regular for a non-directory,
// owner, permissions, missing, unreadable) with the fix.
void check_credential_directory(const std::string& dir);

// What a write does to a file already at its path.
enum class Existing { keep, replace };

// Writes data to path with `mode`, atomically.  With Existing::keep an
// existing path is never touched and the call returns false; otherwise it
// returns true.  Throws std::system_error, whose what() names the file, on
// failure (the temporary file is removed).
bool write_file_atomically(const std::string& path, std::span<const std::uint8_t> data, mode_t mode,
                           Existing existing = Existing::keep);

}  // namespace secmsg
