// The client's connection and its send loop: TCP connect with a timeout
// (IPv4, IPv6, names), the TLS handshake, then messages from a
// MessageSource pipelined through a ClientSession until every one is
// answered, reconnecting and sending again what was not acknowledged when
// asked to.  Failures are classified for the exit status of secmsg(1).
#pragma once

#include "io/fd.hpp"
#include "message_source.hpp"
#include "proto/client_session.hpp"
#include "tls/session.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace secmsg {

// What kind of failure ended a client run (secmsg maps each to an exit status).
enum class Failure {
    none,
    unreachable,  // name resolution, connect, connect timeout, handshake cut off
    certificate,  // server certificate or pin rejected
    protocol,     // bad frame or tag, ACK mismatch, ERROR 1..5, TLS failure
    temporary,    // ERROR 6 or 7, connection lost, no ACK in time
};

// Whether trying again later may help: a refused or lost connection may;
// a rejected certificate, a wrong PSK or a host name that does not exist
// will not.
enum class Retry { may_help, futile };

// What a kind of failure usually says: may_help for unreachable and
// temporary, futile for the others.
constexpr Retry usual_retry(Failure kind) {
    return kind == Failure::unreachable || kind == Failure::temporary ? Retry::may_help
                                                                      : Retry::futile;
}

// A failure with one line for people, and whether trying again may help
// (by default the kind's usual_retry).
class ClientError : public std::runtime_error {
public:
    ClientError(Failure kind, const std::string& what)
        : ClientError(kind, what, usual_retry(kind)) {}
    ClientError(Failure kind, const std::string& what, Retry retry)
        : std::runtime_error(what), kind_(kind), retry_(retry) {}
    Failure kind() const { return kind_; }
    Retry retry() const { return retry_; }

private:
    Failure kind_;
    Retry retry_;
};

struct ConnectOptions {
    std::string host = "127.0.0.1";  // name, IPv4 or IPv6 literal (no brackets)
    std::uint16_t port = default_port;
    std::string server_name;                   // checked against the certificate; empty: host
    std::chrono::milliseconds timeout{10000};  // TCP connect and TLS handshake together
};

// A TCP connection with a completed TLS handshake.  Move-only owner of the
// socket and the session.
class Connection {
public:
    // Resolves the host, tries each address in turn, and completes the TLS
    // handshake, all within options.timeout.  Throws ClientError:
    // unreachable (with the address and the system's reason), certificate
    // (what was rejected and how to fix it), or protocol.
    // `trust` is what `ctx` was made from (for the advice in errors).
    static Connection open(const ConnectOptions& options, std::shared_ptr<tls::Context> ctx,
                           const tls::ClientOptions& trust);

    tls::Session& session() { return session_; }
    int fd() const { return fd_.get(); }
    const std::string& peer() const { return peer_; }  // "127.0.0.1:8443", "[::1]:8443"

private:
    Connection(Fd fd, tls::Session session, std::string peer)
        : fd_(std::move(fd)), session_(std::move(session)), peer_(std::move(peer)) {}

    Fd fd_;  // declared first: closed after the session is freed
    tls::Session session_;
    std::string peer_;
};

// What a run did.
struct RunReport {
    std::uint64_t sent = 0;  // messages taken from the source (each counted once)
    std::uint64_t acked = 0;
    std::uint64_t not_recorded = 0;  // ERROR 6, not sent again (without retrying)
    std::uint64_t bytes = 0;         // message bytes acknowledged
    std::uint64_t unacked = 0;       // on failure: sent, not acknowledged
    std::uint64_t resent = 0;        // messages sent again on a new connection
    std::uint64_t connections = 0;   // TLS handshakes completed
    Failure failure = Failure::none;
    std::string error;     // one line, when failure != none
    bool gave_up = false;  // failure: retried for the whole of retry_for in vain
};

// Reconnecting after a failure that may pass (a lost or refused connection,
// a handshake cut off or timed out, no reply within the ACK timeout, ERROR 6
// or 7): how long, and the waits between attempts (backoff.hpp).
struct RetryOptions {
    // How long to keep trying, counted from the first failure after the last
    // ACK (an ACK starts the count again).  0: the first failure ends the run.
    std::chrono::milliseconds retry_for{0};
    std::chrono::milliseconds first_delay{250};
    std::chrono::milliseconds max_delay{8000};
};

struct DeliveryOptions {
    ConnectOptions connect;
    std::shared_ptr<tls::Context> context;
    tls::ClientOptions trust;  // what `context` was made from (for the advice in errors)
    std::shared_ptr<const FrameKeys> keys;
    std::size_t window = default_window;
    std::chrono::milliseconds ack_timeout{30000};  // no reply that long: the connection is lost
    RetryOptions retry;
};

// Which connection of a run a handshake made.
enum class Attempt { first, again };

// What a line about connecting again is about.
enum class Retrying {
    after_failure,  // messages at stake: what failed, what is left, the wait
    idle,  // a connection with nothing unacknowledged ended: the next waits for the next message
};

// What deliver() tells its caller as it goes; each may be empty.
struct DeliveryHooks {
    // After each handshake; `resending` = how many earlier messages are
    // about to be sent again.
    std::function<void(Connection&, Attempt, std::size_t resending)> connected;
    // Each ACK and ERROR 6, as it arrives.
    std::function<void(const ClientSession::Event&)> event;
    // One line for people per retry, and when an idle connection ends.
    std::function<void(const std::string&, Retrying)> retrying;
    // The name of the message with this number (from 0, in input order) in
    // those lines; default "message N" (from 1).
    std::function<std::string(std::uint64_t)> name;
};

// Connects (Connection::open), sends every message of `source` pipelined
// (at most options.window awaiting their ACK, each sealed by a fresh
// ClientSession per connection), checks the replies and passes events to
// the hooks.  Returns when the source has ended and every message is
// acknowledged (after close_notify), or at the first failure that is not
// retried.  With options.retry.retry_for > 0, a failure that may pass is
// followed by a wait (capped exponential backoff) and a new connection on
// which every message not acknowledged is sent again first, in order, with
// new seqs: delivery is then at least once.  A connection lost with nothing
// unacknowledged is made again only for the next message.  Once retry_for
// has passed without an ACK, the run ends with Failure::temporary and
// gave_up.  Nothing is kept about a message after its ACK.
RunReport deliver(const DeliveryOptions& options, MessageSource& source,
                  const DeliveryHooks& hooks);

}  // namespace secmsg
