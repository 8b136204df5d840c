#include "psk.hpp"

#include "files.hpp"

#include <sodium.h>

#include <cstring>
#include <string>
#include <system_error>

namespace secmsg {

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
    const FileContents f = read_credential_file(path, CredentialKind::psk, 4096);
    return parse_psk_text({reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size()},
                          "PSK file " + path);
}

void generate_psk_file(const std::string& path, bool overwrite) {
    if (sodium_init() < 0) throw KeyFileError(KeyFileError::Kind::io, "libsodium failed to initialise");
    SecretBytes key(psk_size);
    randombytes_buf(key.data(), key.size());
    SecretBytes text(46);  // 44 characters, newline, terminator
    sodium_bin2base64(reinterpret_cast<char*>(text.data()), 45, key.data(), key.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    text.data()[44] = '\n';
    bool written = false;
    try {
        written = write_file_atomically(path, text.bytes().first(45), 0600, overwrite);
    } catch (const std::system_error& e) {
        throw KeyFileError(KeyFileError::Kind::io, "PSK file " + path + ": " + e.what());
    }
    if (!written)
        throw KeyFileError(KeyFileError::Kind::exists,
                           "PSK file " + path + " already exists; not overwriting it");
}

}  // namespace secmsg
