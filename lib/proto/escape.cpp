// Printable renderings of untrusted bytes (see escape.hpp).
#include "proto/escape.hpp"

#include <algorithm>

namespace secmsg {

namespace {

constexpr char hex[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence (no control characters) at p, or 0.
std::size_t utf8_len(const std::uint8_t* p, std::size_t n) {
    const std::uint8_t c = p[0];
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (std::size_t i = 1; i < len; ++i) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp < 0xA0) ||  // surrogates, C1 controls
        cp == 0x2028 || cp == 0x2029)                                   // line separators
        return 0;
    return len;
}

}  // namespace

std::string escape_payload(std::span<const std::uint8_t> p, std::size_t limit) {
    std::string out;
    out.reserve(std::min<std::size_t>(p.size() + 8, limit ? limit + 32 : p.size() + 8));
    std::size_t i = 0;
    while (i < p.size()) {
        if (limit && out.size() >= limit) {
            out += "... (" + std::to_string(p.size()) + " bytes)";
            return out;
        }
        const std::uint8_t c = p[i];
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c >= 0x20 && c < 0x7F) {
            out += static_cast<char>(c);
        } else if (std::size_t n = c >= 0x80 ? utf8_len(p.data() + i, p.size() - i) : 0; n > 0) {
            out.append(reinterpret_cast<const char*>(p.data() + i), n);
            i += n;
            continue;
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
        ++i;
    }
    return out;
}

}  // namespace secmsg
