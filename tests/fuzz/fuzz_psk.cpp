// Fuzz target "psk": the text of a PSK file (parse_psk_text), the input as
// it is.  A rejection must be a KeyFileError of Kind::format; an accepted
// text must hold 1 to max_psk_keys distinct keys of 32 bytes whose
// canonical lines, joined by newlines, are the input (the last newline
// optional), and they must make a key ring.
#include "fuzz.hpp"

#include "keys/psk.hpp"
#include "proto/seal.hpp"

#include <sodium.h>

#include <cstring>
#include <string>
#include <string_view>

namespace secmsg::fuzz {

int psk(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<SecretBytes> keys;
    try {
        keys = parse_psk_text(text, "fuzz input");
    } catch (const KeyFileError& e) {
        SECMSG_FUZZ_CHECK(e.kind() == KeyFileError::Kind::format);
        return 0;
    }
    SECMSG_FUZZ_CHECK(!keys.empty() && keys.size() <= max_psk_keys);
    std::string canonical;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        SECMSG_FUZZ_CHECK(keys[i].size() == psk_size);
        for (std::size_t j = 0; j < i; ++j)
            SECMSG_FUZZ_CHECK(std::memcmp(keys[i].data(), keys[j].data(), psk_size) != 0);
        char line[45];
        sodium_bin2base64(line, sizeof line, keys[i].data(), psk_size,
                          sodium_base64_VARIANT_ORIGINAL);
        canonical += line;
        canonical += '\n';
    }
    SECMSG_FUZZ_CHECK(text == canonical ||
                      text == std::string_view(canonical).substr(0, canonical.size() - 1));
    const KeyRing ring(keys);
    SECMSG_FUZZ_CHECK(ring.size() == keys.size());
    return 0;
}

}  // namespace secmsg::fuzz
