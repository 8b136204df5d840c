// Pre-shared key files: one to max_psk_keys lines, each the base64 (with
// padding) of exactly 32 bytes, the last newline optional, no key twice,
// and no group or other access.  A sender seals with the first key; a
// receiver accepts any of them (key rotation, PROTOCOL.md "Keys").
#pragma once

#include "keys/files.hpp"
#include "proto/protocol.hpp"
#include "proto/secret.hpp"

#include <string>
#include <vector>

namespace secmsg {

inline constexpr std::size_t psk_size = 32;

// Reads and checks a PSK file, without blocking, as read_credential_file
// (files.hpp) does for CredentialKind::psk: a regular file owned by root or
// this process's user, with no group or other access.  Returns every key,
// in file order.  Throws KeyFileError whose message names the file (and
// the line) and says what is wrong (and, for permissions and owner, how to
// fix it).
std::vector<SecretBytes> load_psk_file(const std::string& path);

// The key a sender seals with: the first of load_psk_file(path) (every line
// is still checked).  Throws as load_psk_file does.
SecretBytes load_sender_psk(const std::string& path);

// Decodes the text of a PSK file (no file checks): 1 to max_psk_keys keys,
// in order.  Throws KeyFileError (Kind::format) with `what_for` naming the
// source, and the line when there is one to blame.
std::vector<SecretBytes> parse_psk_text(std::string_view text, const std::string& what_for);

// Writes 32 fresh random bytes (libsodium) as a PSK file with mode 0600,
// atomically (temporary file, fsync, rename).  With Existing::keep an
// existing file stays and KeyFileError(Kind::exists) is thrown.
void generate_psk_file(const std::string& path, Existing existing = Existing::keep);

}  // namespace secmsg
