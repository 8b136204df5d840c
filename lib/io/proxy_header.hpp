// The PROXY protocol version 2 header (HAProxy's proxy-protocol.txt,
// section 2.2): the binary preamble a load balancer writes before the bytes
// it relays (HAProxy: `send-proxy-v2`), naming the connection it relays.
// secmsg expects it only from the addresses it is told are its balancers
// (PROTOCOL.md, layer 1; secmsgd --proxy-protocol-from).
//
//   offset size
//    0     12   signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
//   12      1   version (high nibble: 2) and command (low: 0 LOCAL, 1 PROXY)
//   13      1   address family (high: 0 unspecified, 1 IPv4, 2 IPv6, 3 unix)
//               and transport (low: 0 unspecified, 1 stream, 2 datagram)
//   14      2   length of the rest, big-endian
//   16    ...   the addresses: source address, destination address (4 bytes
//               each for IPv4, 16 for IPv6), source port, destination port
//               (2 bytes each); then TLVs (type 1 byte, length 2, value) to
//               the end.
//
// LOCAL: the balancer opened the connection itself (a health check): the
// connection's own endpoints stand, and everything after the fixed part is
// skipped unread.  PROXY: only TCP over IPv4 or IPv6 is accepted (secmsg
// runs on TCP); TLVs are checked to fit exactly and skipped (a CRC32C TLV
// is not verified).
//
// The parser does no I/O and allocates nothing.  It is fed the bytes as
// they come, keeps what it needs (the fixed part, the addresses, one TLV's
// head) in members of fixed size, rejects a bad header at its first wrong
// byte, and says how many bytes the header still needs, so that a caller
// can read exactly the header from a socket and not one byte of what
// follows it (TLS).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace secmsg::proxy {

inline constexpr std::array<std::uint8_t, 12> signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
inline constexpr std::size_t fixed_size = 16;
// The largest length field accepted: IPv6 addresses take 36 bytes, the rest
// is room for TLVs, more than HAProxy's own proxy-v2-options add.  A longer
// header is refused as soon as its length field is in.
inline constexpr std::size_t max_length = 1024;
inline constexpr std::size_t max_header_size = fixed_size + max_length;

enum class Command { local, proxy };

enum class Error {
    none,
    bad_signature,        // the first 12 bytes are not the signature: no header
    bad_version,          // version nibble not 2
    bad_command,          // command nibble neither LOCAL nor PROXY
    bad_family,           // family or transport nibble of no defined meaning
    unsupported_address,  // PROXY over unix, datagram or unspecified addresses
    too_long,             // length field above max_length
    short_addresses,      // length field too small for the family's addresses
    bad_tlv,              // a TLV running past the end of the header
};

// One line for logs: what is wrong with the header.
const char* describe(Error e);

// An endpoint of the relayed connection.
struct Address {
    int family = 0;                     // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> ip{};  // network order; IPv4 in the first 4 bytes
    std::uint16_t port = 0;
};

// "192.0.2.7:4711" or "[2001:db8::7]:4711" (an IPv4-mapped IPv6 address as
// IPv4), as net::format_address writes a socket's peer.
std::string format(const Address& a);

struct Header {
    Command command = Command::local;
    Address source;        // PROXY: the client the balancer relays
    Address destination;   // PROXY: the address the client connected to
    std::size_t size = 0;  // bytes of the whole header: 16 + its length field
    std::size_t tlvs = 0;  // TLVs skipped (PROXY only)
};

// True when `first` (the first bytes a peer sent; at least 4 of them) is
// the start of a PROXY protocol v2 header, for telling a peer that sent one
// where TLS was expected what it did.
bool looks_like_header(std::span<const std::uint8_t> first);

class Parser {
public:
    enum class Status { need_more, done, error };
    struct Fed {
        Status status;
        std::size_t used;  // bytes of the input that were the header's (the rest are not)
    };

    // Takes the header's bytes from the front of `in`, never a byte past
    // the header's end.  need_more: all of `in` was used and more is
    // needed; done: the header is complete (header()), `used` bytes of `in`
    // were its end; error: the header is wrong (error()), `used` bytes
    // were taken up to the first wrong one, and every later call fails.
    Fed feed(std::span<const std::uint8_t> in);

    // Bytes the header still needs at least: up to the end of the fixed part
    // until its length field is in, then up to the end of the header; 0
    // once done or failed.  Reading no more than this from a socket never
    // takes a byte that follows the header.
    std::size_t wanted() const;

    Status status() const { return status_; }
    std::size_t received() const { return seen_; }
    // After done.
    const Header& header() const { return header_; }
    // After error.
    Error error() const { return error_; }

private:
    void step(std::uint8_t b);
    void fixed_byte(std::size_t at, std::uint8_t b);
    void block_byte(std::size_t at, std::uint8_t b);
    void tlv_byte(std::uint8_t b);
    void decode_addresses();
    void fail(Error e);
    std::size_t total() const { return fixed_size + length_; }

    Status status_ = Status::need_more;
    Error error_ = Error::none;
    Header header_;
    std::size_t seen_ = 0;          // bytes of the header taken so far
    std::size_t length_ = 0;        // the length field, once in
    std::size_t address_size_ = 0;  // 12 (IPv4) or 36 (IPv6) for PROXY
    int family_ = 0;                // AF_INET or AF_INET6 for PROXY
    std::array<std::uint8_t, 36> addresses_{};
    std::array<std::uint8_t, 3> tlv_head_{};
    std::size_t tlv_head_have_ = 0;
    std::size_t tlv_left_ = 0;  // value bytes of the current TLV still to skip
};

}  // namespace secmsg::proxy
