// Addresses and listening sockets (see net.hpp).
#include "io/net.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

namespace secmsg::net {

std::uint16_t parse_port(const std::string& text) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || p != text.data() + text.size() || v == 0 || v > 65535)
        throw NetError("invalid port '" + text + "' (expected 1 to 65535)");
    return static_cast<std::uint16_t>(v);
}

namespace {

// "HOST:PORT", "[V6]:PORT", "[V6]" or "HOST" cut after its host: the host
// without brackets, and what follows it ("", ":PORT", or anything when the
// text is malformed).
struct Cut {
    std::string_view host, rest;
    bool bracketed = false;
    bool closed = true;  // bracketed: the ']' is there
};

Cut cut_host(std::string_view text) {
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return {text.substr(1), {}, true, false};
        return {text.substr(1, close - 1), text.substr(close + 1), true, true};
    }
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return {text, {}};
    return {text.substr(0, colon), text.substr(colon)};
}

}  // namespace

Endpoint parse_endpoint(const std::string& text, std::uint16_t default_port) {
    if (text.empty()) throw NetError("empty address");
    const Cut cut = cut_host(text);
    if (!cut.closed) throw NetError("invalid address '" + text + "': missing ']'");
    if (!cut.bracketed && cut.host.find(':') != std::string_view::npos)
        throw NetError("invalid address '" + text + "': write IPv6 addresses as [ADDR]:PORT");
    Endpoint ep;
    ep.host = std::string(cut.host);
    if (cut.rest.empty())
        ep.port = default_port;
    else if (cut.rest.front() == ':')
        ep.port = parse_port(std::string(cut.rest.substr(1)));
    else
        throw NetError("invalid address '" + text + "': expected ':' after ']'");
    if (cut.bracketed) {
        in6_addr a{};
        if (::inet_pton(AF_INET6, ep.host.c_str(), &a) != 1)
            throw NetError("invalid address '" + text + "': not an IPv6 address inside [ ]");
    } else if (ep.host.empty()) {
        throw NetError("invalid address '" + text + "': no host");
    }
    return ep;
}

std::string format_endpoint(const Endpoint& ep) {
    return (ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host) + ":" +
           std::to_string(ep.port);
}

std::string_view host_of(std::string_view address) {
    const Cut cut = cut_host(address);
    return cut.closed ? cut.host : address;
}

ResolveError::ResolveError(const Endpoint& ep, int gai_code)
    : NetError("cannot resolve " + format_endpoint(ep) + ": " + ::gai_strerror(gai_code)),
      code_(gai_code) {}

std::string ResolveError::reason() const { return ::gai_strerror(code_); }

bool ResolveError::no_such_name() const { return code_ == EAI_NONAME; }

Addresses resolve(const Endpoint& ep, Use use) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (use == Use::listen ? AI_PASSIVE : 0);
    addrinfo* list = nullptr;
    const std::string port = std::to_string(ep.port);
    if (const int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &list); rc != 0)
        throw ResolveError(ep, rc);
    return Addresses(list);
}

Fd listen_tcp(const Endpoint& ep, const ListenOptions& options) {
    std::string why = "no address";
    for (const addrinfo& ai : resolve(ep, Use::listen)) {
        Fd fd(
            ::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.ai_protocol));
        if (!fd) {
            why = std::strerror(errno);
            continue;
        }
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (options.reuse_port &&
            ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
            why = std::string("SO_REUSEPORT: ") + std::strerror(errno);
            continue;
        }
        if (ai.ai_family == AF_INET6) {
            // "::" means every address, IPv4 included; other v6 addresses only v6.
            auto* sin6 = reinterpret_cast<sockaddr_in6*>(ai.ai_addr);
            int v6only = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) ? 0 : 1;
            ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        }
        if (::bind(fd.get(), ai.ai_addr, ai.ai_addrlen) != 0 ||
            ::listen(fd.get(), options.backlog) != 0) {
            why = std::strerror(errno);
            continue;
        }
        return fd;
    }
    throw NetError("cannot listen on " + format_endpoint(ep) + ": " + why);
}

std::string format_address(const sockaddr* sa, socklen_t len) {
    char host[INET6_ADDRSTRLEN] = {};
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            ::inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, host, sizeof host);
            return std::string(host) + ":" + std::to_string(ntohs(in6->sin6_port));
        }
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    if (sa->sa_family == AF_UNIX) return "unix";
    return "unknown";
}

std::string local_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
    return format_address(reinterpret_cast<sockaddr*>(&ss), len);
}

std::uint16_t local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return 0;
}

}  // namespace secmsg::net
