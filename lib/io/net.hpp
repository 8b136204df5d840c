// Addresses and listening sockets: parsing HOST:PORT and [v6]:PORT, binding
// non-blocking listeners (dual-stack for ::), formatting peer addresses.
#pragma once

#include "io/fd.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <sys/socket.h>

namespace secmsg::net {

// A bad address or a socket that cannot be set up; what() is one clear line.
class NetError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Endpoint {
    std::string host;  // name, IPv4 literal or IPv6 literal (without brackets)
    std::uint16_t port = 0;
};

// Parses "HOST:PORT", "[V6]:PORT" or a bare "[V6]"/"HOST" (then default_port).
// Throws NetError naming the text when it is not an address.
Endpoint parse_endpoint(const std::string& text, std::uint16_t default_port);

// Parses a port number 1..65535; throws NetError.
std::uint16_t parse_port(const std::string& text);

struct ListenOptions {
    int backlog = 4096;
    // SO_REUSEPORT: other sockets (of this user) that also ask for it may
    // bind the same address and port, and the kernel spreads incoming
    // connections over them, so that one process per core can each accept
    // on its own socket.  Without it a second bind is "address in use".
    bool reuse_port = false;
};

// Binds and listens on the first address `ep.host` resolves to that can be
// bound (numeric or name), non-blocking and close-on-exec, SO_REUSEADDR.
// "::" listens dual-stack (IPv6 and IPv4-mapped).  Throws NetError with the
// address and the system's reason.
Fd listen_tcp(const Endpoint& ep, const ListenOptions& options = {});

// "1.2.3.4:5678" or "[::1]:5678"; IPv4-mapped IPv6 addresses are shown as IPv4.
std::string format_address(const sockaddr* sa, socklen_t len);

// The local address a socket is bound to, formatted; empty on error.
std::string local_address(int fd);

// The port a socket is bound to, 0 on error.
std::uint16_t local_port(int fd);

}  // namespace secmsg::net
