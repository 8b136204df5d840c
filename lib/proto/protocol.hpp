// secmsg/1 wire constants and the outcome codes of ../man/secmsg-protocol.7.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace secmsg {

inline constexpr std::uint8_t protocol_version = 0x01;
inline constexpr std::string_view alpn_protocol = "secmsg/1";
inline constexpr std::uint16_t default_port = 8443;

inline constexpr std::size_t length_field_size = 4;
inline constexpr std::size_t header_size = 30;  // length, version, type, seq, iv
inline constexpr std::size_t iv_size = 16;
inline constexpr std::size_t tag_size = 32;
inline constexpr std::size_t block_size = 16;
inline constexpr std::size_t min_length = 74;  // value of the length field
// Where the header's fields start in a frame (the length field at 0).
inline constexpr std::size_t version_offset = 4;
inline constexpr std::size_t type_offset = 5;
inline constexpr std::size_t seq_offset = 6;
inline constexpr std::size_t iv_offset = 14;
// What the length field counts besides the ciphertext: the rest of the
// header after itself and the tag (58).
inline constexpr std::size_t length_overhead = header_size - length_field_size + tag_size;
static_assert(seq_offset + 8 == iv_offset && iv_offset + iv_size == header_size);
static_assert(min_length == length_overhead + block_size);  // one block of ciphertext at least
inline constexpr std::size_t default_max_payload = 65536;
inline constexpr std::size_t max_max_payload = 16u * 1024 * 1024;
inline constexpr std::uint64_t no_seq = ~std::uint64_t{0};
// Keys in one PSK file at most: a receiver tries each on a connection's first frame.
inline constexpr std::size_t max_psk_keys = 8;

enum class FrameType : std::uint8_t { msg = 0x01, ack = 0x02, error = 0x03 };

// Which side is reading: a server receives MSG, a client receives ACK and ERROR.
enum class Role { server, client };

// The ERROR codes of the protocol.  `ok` is not on the wire.
enum class ProtoError : std::uint16_t {
    ok = 0,
    malformed = 1,      // length or padding
    auth = 2,           // tag
    sequence = 3,       // unexpected seq
    version = 4,        // unsupported version or type
    too_large = 5,      // above max_payload
    not_recorded = 6,   // recording failed; may be resent
    shutting_down = 7,  // server closes after acking what it received
};

// A short reason for people ("authentication failed", ...).
std::string_view describe(ProtoError e);

// The largest value of the length field that max_payload can produce.
constexpr std::size_t max_length_for(std::size_t max_payload) {
    return length_overhead + block_size * (max_payload / block_size + 1);
}

// The length field of a frame whose plaintext has n bytes.
constexpr std::size_t length_for_plaintext(std::size_t n) {
    return length_overhead + block_size * (n / block_size + 1);
}

}  // namespace secmsg
