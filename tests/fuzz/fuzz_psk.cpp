// Fuzz target "psk": the text of a PSK file (parse_psk_text), the input as
// it is; a rejection must be a KeyFileError of Kind::format.  Kept to the
// public function and blind to its result, whose type may grow (several
// keys, PROTOCOL.md) without this target changing.
#include "fuzz.hpp"

#include "psk.hpp"

#include <string_view>

namespace secmsg::fuzz {

int psk(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        (void)parse_psk_text(text, "fuzz input");
    } catch (const KeyFileError& e) {
        SECMSG_FUZZ_CHECK(e.kind() == KeyFileError::Kind::format);
    }
    return 0;
}

}  // namespace secmsg::fuzz
