#include "keys/psk.hpp"

#include "keys/files.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>

namespace secmsg {

namespace {

constexpr std::size_t encoded_size = 44;  // base64 of 32 bytes, with padding

KeyFileError format_error(const std::string& what) {
    return KeyFileError(KeyFileError::Kind::format, what);
}

// One line, without its newline: the canonical standard base64 of exactly
// 32 bytes.  `where` names the file and the line.
SecretBytes decode_line(std::string_view line, const std::string& where) {
    if (line.empty())
        throw format_error(where +
                           " is empty: blank lines are not allowed (one key per line, "
                           "nothing else)");
    if (line.front() == '#')
        throw format_error(where + ": comments are not allowed (one key per line, nothing else)");
    if (line.back() == '\r')
        throw format_error(where +
                           " ends with a carriage return: lines must end with a newline "
                           "alone (dos2unix)");
    if (line.size() != encoded_size)
        throw format_error(where +
                           ": not a secmsg key: expected the base64 of exactly 32 bytes "
                           "(44 characters), found " +
                           std::to_string(line.size()) + " characters");
    SecretBytes key(psk_size);
    switch (decode_base64_exact(line, key.bytes())) {
    case Base64::ok: break;
    case Base64::invalid:
        throw format_error(where +
                           ": not a secmsg key: invalid base64 (it must be the standard "
                           "alphabet with '=' padding)");
    case Base64::non_canonical:
        throw format_error(where + ": not a secmsg key: non-canonical base64");
    }
    return key;
}

}  // namespace

std::vector<SecretBytes> parse_psk_text(std::string_view text, const std::string& what_for) {
    if (text.empty())
        throw format_error(what_for +
                           " is empty: expected one key per line, each the base64 of "
                           "32 bytes");
    if (text.back() == '\n') text.remove_suffix(1);  // the last line's newline is optional
    const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
    if (lines > max_psk_keys)
        throw format_error(what_for + " has " + std::to_string(lines) +
                           " lines: it may hold at "
                           "most " +
                           std::to_string(max_psk_keys) + " keys, one per line");
    std::vector<SecretBytes> keys;
    keys.reserve(lines);
    while (keys.size() < lines) {
        const auto nl = text.find('\n');
        const std::string where = what_for + " line " + std::to_string(keys.size() + 1);
        SecretBytes key = decode_line(text.substr(0, nl), where);
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (sodium_memcmp(keys[i].data(), key.data(), psk_size) == 0)
                throw format_error(where + " holds the same key as line " + std::to_string(i + 1) +
                                   ": each key may appear once");
        keys.push_back(std::move(key));
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    }
    return keys;
}

std::vector<SecretBytes> load_psk_file(const std::string& path) {
    const FileContents f = read_credential_file(path, CredentialKind::psk, 4096);
    return parse_psk_text({reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size()},
                          "PSK file " + path);
}

SecretBytes load_sender_psk(const std::string& path) {
    auto keys = load_psk_file(path);
    return std::move(keys.front());
}

void generate_psk_file(const std::string& path, Existing existing) {
    if (sodium_init() < 0)
        throw KeyFileError(KeyFileError::Kind::io, "libsodium failed to initialise");
    SecretBytes key(psk_size);
    randombytes_buf(key.data(), key.size());
    SecretBytes text(46);  // 44 characters, newline, terminator
    sodium_bin2base64(reinterpret_cast<char*>(text.data()), 45, key.data(), key.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    text.data()[44] = '\n';
    bool written = false;
    try {
        written = write_file_atomically(path, text.bytes().first(45), 0600, existing);
    } catch (const std::system_error& e) {
        throw KeyFileError(KeyFileError::Kind::io, "PSK file " + path + ": " + e.what());
    }
    if (!written)
        throw KeyFileError(KeyFileError::Kind::exists,
                           "PSK file " + path + " already exists; not overwriting it");
}

}  // namespace secmsg
