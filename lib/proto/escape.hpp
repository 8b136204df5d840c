// Printable renderings of untrusted bytes: what a peer sends (a payload, an
// ACK note, an ERROR reason) shown on a terminal or written to a log line
// without letting it move the cursor, change colours or split the line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace secmsg {

// One line of text for people: valid UTF-8 text as it is; control
// characters (C0, DEL, C1, U+2028/9), backslash, double quote and every byte
// that is not part of valid UTF-8 escaped (\n, \t, \r, \\, \", \xHH per
// byte), so the rendering is unambiguous and can be undone.  With `limit`,
// at most about that many output bytes, then "... (N bytes)" with the full
// size.
std::string escape_payload(std::span<const std::uint8_t> p, std::size_t limit = 0);

// The same for text held in a string (an ACK note, an ERROR reason).
inline std::string escape_payload(std::string_view s, std::size_t limit = 0) {
    return escape_payload({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}, limit);
}

}  // namespace secmsg
