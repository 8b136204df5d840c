// Pre-shared key files: base64 (with padding) of exactly 32 bytes, optionally
// one trailing newline, and no group or other access.
#pragma once

#include "files.hpp"
#include "secret.hpp"

#include <string>

namespace secmsg {

inline constexpr std::size_t psk_size = 32;

// Reads and checks a PSK file, without blocking, as read_credential_file
// (files.hpp) does for CredentialKind::psk: a regular file owned by root or
// this process's user, with no group or other access.  Throws KeyFileError
// whose message names the file and says what is wrong (and, for
// permissions and owner, how to fix it).
SecretBytes load_psk_file(const std::string& path);

// Decodes the text of a PSK file (no file checks).  Throws KeyFileError
// (Kind::format) with `what_for` naming the source.
SecretBytes parse_psk_text(std::string_view text, const std::string& what_for);

// Writes 32 fresh random bytes (libsodium) as a PSK file with mode 0600,
// atomically (temporary file, fsync, rename).  Never replaces an existing
// file unless `overwrite`; then throws KeyFileError(Kind::exists).
void generate_psk_file(const std::string& path, bool overwrite = false);

}  // namespace secmsg
