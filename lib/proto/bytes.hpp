// Big-endian loads and stores for the wire format.
#pragma once

#include <cstdint>
#include <vector>

namespace secmsg {

inline std::uint32_t load_be32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

inline std::uint64_t load_be64(const std::uint8_t* p) {
    return std::uint64_t{load_be32(p)} << 32 | load_be32(p + 4);
}

inline std::uint16_t load_be16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

inline void store_be(std::uint8_t* p, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<std::uint8_t>(v);
}

// Appends v as `bytes` big-endian bytes.
inline void append_be(std::vector<std::uint8_t>& out, std::uint64_t v, int bytes) {
    const auto at = out.size();
    out.resize(at + static_cast<std::size_t>(bytes));
    store_be(out.data() + at, v, bytes);
}

}  // namespace secmsg
