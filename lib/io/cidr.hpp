// Address blocks in CIDR notation ("192.0.2.0/24", "2001:db8::/32", a bare
// address for one host), and whether a socket address lies in one.
//
// Every address is compared as IPv6: an IPv4 block is held as its
// IPv4-mapped block (::ffff:192.0.2.0/120), so it contains an IPv4 peer
// and the same peer seen through a dual-stack socket (::ffff:192.0.2.7)
// alike.  An IPv6 block that covers ::ffff:0:0/96 (::/0 does) contains
// IPv4 peers too.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <vector>

namespace secmsg::net {

class Cidr {
public:
    // Parses "ADDRESS/PREFIX" or "ADDRESS" (IPv4 or IPv6).  Throws NetError
    // naming the text when it is not a block, or when the address has bits
    // set past the prefix (a typing error: the message shows the block
    // that was probably meant).
    static Cidr parse(std::string_view text);

    // True when `sa` (AF_INET or AF_INET6; anything else: false) lies in
    // the block.
    bool contains(const sockaddr* sa, socklen_t len) const;

    // The block as parse() reads it back: "192.0.2.0/24", "2001:db8::/32".
    std::string text() const;

private:
    std::array<std::uint8_t, 16> net_{};  // IPv6, IPv4 as IPv4-mapped
    unsigned prefix_ = 0;                 // of 128 bits
    bool written_v4_ = false;             // for text()
};

// True when any block of `blocks` contains `sa`.
bool any_contains(const std::vector<Cidr>& blocks, const sockaddr* sa, socklen_t len);

}  // namespace secmsg::net
