// The PROXY protocol version 2 header parser (see proxy_header.hpp).
#include "io/proxy_header.hpp"

#include "io/net.hpp"
#include "proto/bytes.hpp"

#include <algorithm>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>

namespace secmsg::proxy {

namespace {
constexpr std::uint8_t version_2 = 0x2;
constexpr std::uint8_t command_local = 0x0, command_proxy = 0x1;
constexpr std::uint8_t family_unspec = 0x0, family_inet = 0x1, family_inet6 = 0x2,
                       family_unix = 0x3;
constexpr std::uint8_t transport_stream = 0x1, transport_dgram = 0x2;
constexpr std::size_t ipv4_addresses = 2 * 4 + 2 * 2;
constexpr std::size_t ipv6_addresses = 2 * 16 + 2 * 2;
constexpr std::size_t tlv_head_size = 3;  // type, length (2)
}  // namespace

const char* describe(Error e) {
    switch (e) {
    case Error::none: return "no error";
    case Error::bad_signature:
        return "no PROXY protocol v2 header: the first bytes are not its signature";
    case Error::bad_version: return "PROXY protocol header of a version other than 2";
    case Error::bad_command:
        return "PROXY protocol v2 header with a command other than LOCAL or PROXY";
    case Error::bad_family:
        return "PROXY protocol v2 header with an undefined address family or transport";
    case Error::unsupported_address:
        return "PROXY protocol v2 header for a connection other than TCP over IPv4 or IPv6";
    case Error::too_long: return "PROXY protocol v2 header longer than 1040 bytes";
    case Error::short_addresses: return "PROXY protocol v2 header too short for its addresses";
    case Error::bad_tlv: return "PROXY protocol v2 header with a TLV that runs past its end";
    }
    return "unknown error";
}

std::string format(const Address& a) {
    if (a.family == AF_INET) {
        sockaddr_in in{};
        in.sin_family = AF_INET;
        std::memcpy(&in.sin_addr, a.ip.data(), 4);
        in.sin_port = htons(a.port);
        return net::format_address(reinterpret_cast<const sockaddr*>(&in), sizeof in);
    }
    if (a.family == AF_INET6) {
        sockaddr_in6 in6{};
        in6.sin6_family = AF_INET6;
        std::memcpy(&in6.sin6_addr, a.ip.data(), 16);
        in6.sin6_port = htons(a.port);
        return net::format_address(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
    }
    return "unknown";
}

bool looks_like_header(std::span<const std::uint8_t> first) {
    if (first.size() < 4) return false;
    const auto n = std::min(first.size(), signature.size());
    return std::equal(first.begin(), first.begin() + static_cast<long>(n), signature.begin());
}

Parser::Fed Parser::feed(std::span<const std::uint8_t> in) {
    std::size_t used = 0;
    while (status_ == Status::need_more && used < in.size()) step(in[used++]);
    return {status_, used};
}

std::size_t Parser::wanted() const {
    if (status_ != Status::need_more) return 0;
    return seen_ < fixed_size ? fixed_size - seen_ : total() - seen_;
}

void Parser::fail(Error e) {
    status_ = Status::error;
    error_ = e;
}

void Parser::step(std::uint8_t b) {
    const std::size_t at = seen_++;
    if (at < fixed_size)
        fixed_byte(at, b);
    else
        block_byte(at - fixed_size, b);
    if (status_ == Status::need_more && seen_ >= fixed_size && seen_ == total()) {
        if (tlv_head_have_ != 0) {  // a TLV's head cut by the end
            fail(Error::bad_tlv);
            return;
        }
        header_.size = seen_;
        status_ = Status::done;
    }
}

// The fixed part, judged byte by byte: a wrong byte fails at once.
void Parser::fixed_byte(std::size_t at, std::uint8_t b) {
    if (at < signature.size()) {
        if (b != signature[at]) fail(Error::bad_signature);
        return;
    }
    switch (at) {
    case 12: {
        if (b >> 4 != version_2) return fail(Error::bad_version);
        const std::uint8_t command = b & 0x0F;
        if (command == command_local)
            header_.command = Command::local;
        else if (command == command_proxy)
            header_.command = Command::proxy;
        else
            fail(Error::bad_command);
        return;
    }
    case 13: {
        if (header_.command == Command::local) return;  // the family is ignored
        const std::uint8_t family = b >> 4, transport = b & 0x0F;
        if (family > family_unix || transport > transport_dgram) return fail(Error::bad_family);
        if (transport != transport_stream || family == family_unspec || family == family_unix)
            return fail(Error::unsupported_address);
        family_ = family == family_inet ? AF_INET : AF_INET6;
        address_size_ = family == family_inet6 ? ipv6_addresses : ipv4_addresses;
        return;
    }
    case 14: length_ = std::size_t{b} << 8; return;
    case 15: {
        length_ |= b;
        if (length_ > max_length) return fail(Error::too_long);
        if (length_ < address_size_) return fail(Error::short_addresses);
        return;
    }
    }
}

void Parser::block_byte(std::size_t at, std::uint8_t b) {
    if (header_.command == Command::local) return;  // discarded unread
    if (at < address_size_) {
        addresses_[at] = b;
        if (at + 1 == address_size_) decode_addresses();
        return;
    }
    tlv_byte(b);
}

// TLVs: a 3-byte head (type, length), then the value, skipped.  A value
// longer than what is left of the header fails as soon as its head is in.
void Parser::tlv_byte(std::uint8_t b) {
    if (tlv_head_have_ < tlv_head_size) {
        tlv_head_[tlv_head_have_++] = b;
        if (tlv_head_have_ < tlv_head_size) return;
        tlv_left_ = load_be16(tlv_head_.data() + 1);
        ++header_.tlvs;
        if (tlv_left_ > total() - seen_) return fail(Error::bad_tlv);
    } else {
        --tlv_left_;
    }
    if (tlv_left_ == 0) tlv_head_have_ = 0;  // the next TLV starts
}

void Parser::decode_addresses() {
    const std::size_t ip_size = family_ == AF_INET ? 4 : 16;
    const std::uint8_t* p = addresses_.data();
    header_.source.family = header_.destination.family = family_;
    std::copy_n(p, ip_size, header_.source.ip.begin());
    std::copy_n(p + ip_size, ip_size, header_.destination.ip.begin());
    header_.source.port = load_be16(p + 2 * ip_size);
    header_.destination.port = load_be16(p + 2 * ip_size + 2);
}

}  // namespace secmsg::proxy
