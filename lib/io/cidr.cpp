// Address blocks (see cidr.hpp).
#include "io/cidr.hpp"

#include "io/net.hpp"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>
#include <netinet/in.h>

namespace secmsg::net {

namespace {

constexpr unsigned v4_mapped_prefix = 96;  // ::ffff:0:0/96

// The IPv4-mapped IPv6 form of a 4-byte IPv4 address.
std::array<std::uint8_t, 16> mapped(const void* v4) {
    std::array<std::uint8_t, 16> a{};
    a[10] = a[11] = 0xff;
    std::memcpy(a.data() + 12, v4, 4);
    return a;
}

// True when a and b agree on their first `bits` bits.
bool same_prefix(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                 unsigned bits) {
    const unsigned whole = bits / 8, rest = bits % 8;
    if (std::memcmp(a.data(), b.data(), whole) != 0) return false;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

// `a` with every bit past the first `bits` cleared.
std::array<std::uint8_t, 16> masked(std::array<std::uint8_t, 16> a, unsigned bits) {
    for (unsigned i = 0; i < 16; ++i) {
        if (bits >= 8 * (i + 1)) continue;
        const unsigned keep = bits > 8 * i ? bits - 8 * i : 0;
        a[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
    }
    return a;
}

}  // namespace

Cidr Cidr::parse(std::string_view text) {
    const std::string quoted = "invalid address block '" + std::string(text) + "'";
    const auto slash = text.find('/');
    const std::string address(text.substr(0, slash));
    Cidr c;
    unsigned width = 0;
    in_addr v4{};
    in6_addr v6{};
    if (::inet_pton(AF_INET, address.c_str(), &v4) == 1) {
        c.net_ = mapped(&v4);
        c.written_v4_ = true;
        width = 32;
    } else if (::inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
        std::memcpy(c.net_.data(), &v6, 16);
        width = 128;
    } else {
        throw NetError(quoted + ": expected ADDRESS/PREFIX with an IPv4 or IPv6 address");
    }
    unsigned prefix = width;
    if (slash != std::string_view::npos) {
        const auto digits = text.substr(slash + 1);
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
        if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() ||
            prefix > width)
            throw NetError(quoted + ": the prefix length must be 0 to " + std::to_string(width));
    }
    c.prefix_ = prefix + (c.written_v4_ ? v4_mapped_prefix : 0);
    const auto block = masked(c.net_, c.prefix_);
    if (block != c.net_) {
        Cidr meant = c;
        meant.net_ = block;
        throw NetError(quoted + ": address bits set past the prefix (the block is " + meant.text() +
                       ")");
    }
    return c;
}

bool Cidr::contains(const sockaddr* sa, socklen_t len) const {
    std::array<std::uint8_t, 16> a{};
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in)))
        a = mapped(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
    else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6)))
        std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    else
        return false;
    return same_prefix(a, net_, prefix_);
}

std::string Cidr::text() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (written_v4_) {
        ::inet_ntop(AF_INET, net_.data() + 12, buf, sizeof buf);
        return std::string(buf) + "/" + std::to_string(prefix_ - v4_mapped_prefix);
    }
    ::inet_ntop(AF_INET6, net_.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(prefix_);
}

bool any_contains(const std::vector<Cidr>& blocks, const sockaddr* sa, socklen_t len) {
    for (const auto& b : blocks)
        if (b.contains(sa, len)) return true;
    return false;
}

}  // namespace secmsg::net
