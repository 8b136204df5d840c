// Address parsing and listening sockets (real sockets on loopback).
#include "io/net.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

using namespace secmsg;

namespace {

// A blocking TCP connection to 127.0.0.1:port (completed by the kernel
// before anyone accepts it).
Fd connect_loopback(std::uint16_t port) {
    Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&in), sizeof in) == 0);
    return c;
}

// Accepts from a non-blocking listener until it has nothing queued.
int accept_all(int listener) {
    int n = 0;
    for (int fd; (fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) ::close(fd);
    return n;
}

}  // namespace

TEST_CASE("net: endpoints") {
    auto e = net::parse_endpoint("127.0.0.1:9000", 8443);
    CHECK(e.host == "127.0.0.1");
    CHECK(e.port == 9000);
    e = net::parse_endpoint("[::1]:9001", 8443);
    CHECK(e.host == "::1");
    CHECK(e.port == 9001);
    e = net::parse_endpoint("[::]", 8443);
    CHECK(e.host == "::");
    CHECK(e.port == 8443);
    e = net::parse_endpoint("localhost", 8443);
    CHECK(e.port == 8443);
    CHECK_THROWS_AS(net::parse_endpoint("::1:80", 1), net::NetError);
    CHECK_THROWS_AS(net::parse_endpoint("[::1", 1), net::NetError);
    CHECK_THROWS_AS(net::parse_endpoint("[nothex]:1", 1), net::NetError);
    CHECK_THROWS_AS(net::parse_endpoint("host:0", 1), net::NetError);
    CHECK_THROWS_AS(net::parse_endpoint("host:65536", 1), net::NetError);
    CHECK_THROWS_AS(net::parse_endpoint(":80", 1), net::NetError);
    CHECK_THROWS_WITH(net::parse_endpoint("host:http", 1),
                      doctest::Contains("invalid port 'http'"));
}

TEST_CASE("net: endpoints written as parse_endpoint reads them; hosts of peer addresses") {
    CHECK(net::format_endpoint({"127.0.0.1", 9000}) == "127.0.0.1:9000");
    CHECK(net::format_endpoint({"::1", 9001}) == "[::1]:9001");
    CHECK(net::format_endpoint({"localhost", 1}) == "localhost:1");
    const auto back = net::parse_endpoint(net::format_endpoint({"2001:db8::1", 80}), 1);
    CHECK(back.host == "2001:db8::1");
    CHECK(back.port == 80);
    CHECK(net::host_of("192.0.2.7:4711") == "192.0.2.7");
    CHECK(net::host_of("[2001:db8::1]:4711") == "2001:db8::1");
    CHECK(net::host_of("unix") == "unix");
    CHECK(net::host_of("[::1") == "[::1");
}

TEST_CASE("net: names and literals resolve; an unknown name says so") {
    int n = 0;
    for (const addrinfo& ai : net::resolve({"127.0.0.1", 8443}, net::Use::connect)) {
        CHECK(ai.ai_family == AF_INET);
        CHECK(ai.ai_socktype == SOCK_STREAM);
        ++n;
    }
    CHECK(n == 1);
    try {
        (void)net::resolve({"no-such-host.invalid", 1}, net::Use::connect);
        FAIL("resolved no-such-host.invalid");
    } catch (const net::ResolveError& e) {
        CHECK(std::string(e.what()).starts_with("cannot resolve no-such-host.invalid:1: "));
    }
}

TEST_CASE("net: dual-stack listener takes IPv4 and IPv6; peers formatted") {
    Fd l = net::listen_tcp({"::", 0});
    auto port = net::local_port(l.get());
    REQUIRE(port != 0);
    for (int family : {AF_INET, AF_INET6}) {
        Fd c(::socket(family, SOCK_STREAM, 0));
        sockaddr_storage ss{};
        socklen_t len;
        if (family == AF_INET) {
            auto* in = reinterpret_cast<sockaddr_in*>(&ss);
            in->sin_family = AF_INET;
            in->sin_port = htons(port);
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof *in;
        } else {
            auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            in6->sin6_addr = in6addr_loopback;
            len = sizeof *in6;
        }
        REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
        sockaddr_storage peer{};
        socklen_t plen = sizeof peer;
        int fd = -1;
        for (int i = 0; i < 1000 && fd < 0; ++i) {
            fd = ::accept4(l.get(), reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC);
            if (fd < 0) ::usleep(1000);
        }
        REQUIRE(fd >= 0);
        Fd a(fd);
        auto text = net::format_address(reinterpret_cast<sockaddr*>(&peer), plen);
        if (family == AF_INET)
            CHECK(text.rfind("127.0.0.1:", 0) == 0);  // v4-mapped shown as IPv4
        else
            CHECK(text.rfind("[::1]:", 0) == 0);
    }
}

TEST_CASE("net: a busy port is a clear error") {
    Fd l = net::listen_tcp({"127.0.0.1", 0});
    auto port = net::local_port(l.get());
    const std::string expected = "cannot listen on 127.0.0.1:" + std::to_string(port);
    CHECK_THROWS_WITH_AS(net::listen_tcp({"127.0.0.1", port}), doctest::Contains(expected.c_str()),
                         net::NetError);
}

TEST_CASE("net: with reuse_port two listeners share one port and its connections") {
    Fd a = net::listen_tcp({"127.0.0.1", 0}, {.reuse_port = true});
    const auto port = net::local_port(a.get());
    REQUIRE(port != 0);
    Fd b = net::listen_tcp({"127.0.0.1", port}, {.reuse_port = true});
    CHECK(net::local_port(b.get()) == port);
    // A listener that does not ask for it is refused the shared port.
    CHECK_THROWS_AS(net::listen_tcp({"127.0.0.1", port}), net::NetError);

    // The kernel hashes each connection to one of them: 64 connections all
    // on one side would happen once in 2^63 runs.
    constexpr int total = 64;
    std::vector<Fd> clients;
    for (int i = 0; i < total; ++i) clients.push_back(connect_loopback(port));
    int on_a = 0, on_b = 0;
    for (int i = 0; i < 1000 && on_a + on_b < total; ++i) {
        on_a += accept_all(a.get());
        on_b += accept_all(b.get());
        if (on_a + on_b < total) ::usleep(1000);
    }
    MESSAGE("of " << total << " connections, " << on_a << " and " << on_b);
    CHECK(on_a + on_b == total);
    CHECK(on_a > 0);
    CHECK(on_b > 0);
}

TEST_CASE("net: without reuse_port a port stays with its first listener") {
    Fd a = net::listen_tcp({"127.0.0.1", 0});
    const auto port = net::local_port(a.get());
    CHECK_THROWS_AS(net::listen_tcp({"127.0.0.1", port}, {.reuse_port = true}), net::NetError);
    CHECK_THROWS_AS(net::listen_tcp({"127.0.0.1", port}), net::NetError);
}
