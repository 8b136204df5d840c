// A connection from a --proxy-protocol-from address before its TLS begins:
// reads the PROXY protocol v2 header (lib/proxy_header) straight from the
// socket, then hands the socket on to the server, which opens a Connection
// on it.  Never reads a byte past the header (the fixed 16 bytes first,
// then exactly the length they announce), so TLS finds the client's first
// bytes untouched.  Bounded by the handshake timeout, which keeps running
// through the TLS handshake that follows (Connection::start).
//
// What the header makes of the connection:
//   PROXY  the header's source is the peer (SECMSG_PEER, the log lines'
//          peer); the balancer's own address is `via` (SECMSG_VIA).
//   LOCAL  the balancer speaks for itself (a health check): the peer stays
//          the connection's own address, no via.  When the balancer then
//          closes without a byte of TLS, the connection ends here, silently.
// A connection that closes before sending anything (a TCP health check)
// ends silently too.  A missing or malformed header, a header not complete
// within the timeout, or one cut by the peer's close ends the connection
// with one line through the FailureLog (rate-limited per address).
#pragma once

#include "failure_log.hpp"
#include "io/fd.hpp"
#include "io/proxy_header.hpp"
#include "io/reactor.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

namespace secmsg::daemon {

class ProxyIntake : public Handler {
public:
    // What the server opens the Connection with.
    struct Handoff {
        Fd fd;
        std::string peer;  // recorded as the peer
        std::string via;   // the balancer, empty for LOCAL
        Clock::time_point accepted;
    };
    // Called once, from inside the intake's handler or timer: with the
    // socket when the header is in, with nothing when the intake closed it.
    // The owner destroys the intake, deferred to the end of the pass.
    using Done = std::function<void(std::uint64_t id, std::optional<Handoff>)>;

    // Takes the accepted, non-blocking socket from the balancer at
    // `balancer` ("ADDRESS:PORT").  `rbuf` is the loop's shared receive
    // buffer (reads are cut to its size).  Nothing happens until start().
    ProxyIntake(Reactor& reactor, FailureLog* failures, std::span<std::uint8_t> rbuf, Fd fd,
                std::string balancer, std::uint64_t id, std::chrono::milliseconds timeout,
                Done done);
    ~ProxyIntake() override;

    // Registers with the reactor and arms the timeout.  Throws
    // std::system_error (epoll).
    void start();

    void on_events(std::uint32_t events) override;

    // The server is shutting down: closes the socket now.
    void abort();

private:
    enum class End { proxy_header, handshake_timeout, client_closed, read_failed, server_shutdown };
    static const char* describe(End e);
    void read_header();
    void after_local();
    void hand_off(std::string peer, std::string via);
    void fail(End why, const std::string& what);
    void close_quietly();
    void release();

    Reactor& reactor_;
    FailureLog* failures_;
    std::span<std::uint8_t> rbuf_;
    Fd fd_;
    std::string balancer_;
    std::uint64_t id_;
    std::chrono::milliseconds timeout_;
    Done done_;
    proxy::Parser parser_;
    std::uint8_t first_byte_ = 0;  // of the connection, for a hint when there is no header
    Timer timer_;
    Clock::time_point accepted_;
};

}  // namespace secmsg::daemon
