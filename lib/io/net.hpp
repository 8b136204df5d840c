// Addresses and listening sockets: parsing and writing HOST:PORT and
// [v6]:PORT, resolving names, binding non-blocking listeners (dual-stack
// for ::), formatting peer addresses.
#pragma once

#include "io/fd.hpp"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <netdb.h>
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

// "HOST:PORT", or "[HOST]:PORT" when the host is an IPv6 literal (has a
// ':'): what parse_endpoint reads back.
std::string format_endpoint(const Endpoint& ep);

// The host of an address as format_address writes it: "192.0.2.7" of
// "192.0.2.7:4711", "2001:db8::1" of "[2001:db8::1]:4711"; the text itself
// when it has no port ("unix") or no closing ']'.
std::string_view host_of(std::string_view address);

// A host that the resolver could not turn into addresses; what() is
// "cannot resolve HOST:PORT: " and the resolver's reason.
class ResolveError : public NetError {
public:
    ResolveError(const Endpoint& ep, int gai_code);
    std::string reason() const;  // the resolver's (gai_strerror)
    bool no_such_name() const;   // EAI_NONAME: asking again will not help

private:
    int code_;
};

// What addresses are looked up for.
enum class Use {
    listen,  // AI_PASSIVE: addresses to bind
    connect,
};

// The TCP addresses a host resolves to, in the resolver's order of
// preference.  Move-only owner of getaddrinfo's list; range-for yields
// each `const addrinfo&`.
class Addresses {
public:
    class Iterator {
    public:
        explicit Iterator(const addrinfo* ai = nullptr) : ai_(ai) {}
        const addrinfo& operator*() const { return *ai_; }
        Iterator& operator++() {
            ai_ = ai_->ai_next;
            return *this;
        }
        bool operator==(const Iterator& o) const { return ai_ == o.ai_; }

    private:
        const addrinfo* ai_;
    };

    Iterator begin() const { return Iterator(list_.get()); }
    Iterator end() const { return Iterator(); }

private:
    friend Addresses resolve(const Endpoint& ep, Use use);
    explicit Addresses(addrinfo* list) : list_(list, &::freeaddrinfo) {}
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list_;
};

// Resolves `ep` (a name, or an IPv4 or IPv6 literal without brackets) to
// TCP addresses with its port.  Throws ResolveError.
Addresses resolve(const Endpoint& ep, Use use);

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
