// Pre-shared key files: base64 (with padding) of exactly 32 bytes, optionally
// one trailing newline, and no group or other permission bits.
#pragma once

#include "secret.hpp"

#include <stdexcept>
#include <string>

namespace secmsg {

inline constexpr std::size_t psk_size = 32;

class KeyFileError : public std::runtime_error {
public:
    enum class Kind { missing, unreadable, permissions, format, exists, io };
    KeyFileError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    Kind kind() const { return kind_; }

private:
    Kind kind_;
};

// Reads and checks a PSK file.  Throws KeyFileError whose message names the
// file and says what is wrong (and, for permissions, the mode it has and
// the mode it must have).
SecretBytes load_psk_file(const std::string& path);

// Decodes the text of a PSK file (no file checks).  Throws KeyFileError
// (Kind::format) with `what_for` naming the source.
SecretBytes parse_psk_text(std::string_view text, const std::string& what_for);

// Writes 32 fresh random bytes (libsodium) as a PSK file with mode 0600,
// atomically (temporary file, fsync, rename).  Never replaces an existing
// file unless `overwrite`; then throws KeyFileError(Kind::exists).
void generate_psk_file(const std::string& path, bool overwrite = false);

}  // namespace secmsg
