// The client's connection and its send loop: TCP connect with a timeout
// (IPv4, IPv6, names), the TLS handshake, then messages from a
// MessageSource pipelined through a ClientSession until every one is
// answered.  Failures are classified for the exit status of secmsg(1).
#pragma once

#include "client_session.hpp"
#include "fd.hpp"
#include "message_source.hpp"
#include "tls.hpp"

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

// A failure with one line for people.
class ClientError : public std::runtime_error {
public:
    ClientError(Failure kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    Failure kind() const { return kind_; }

private:
    Failure kind_;
};

struct ConnectOptions {
    std::string host = "127.0.0.1";  // name, IPv4 or IPv6 literal (no brackets)
    std::uint16_t port = default_port;
    std::string server_name;  // checked against the certificate; empty: host
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

    Fd fd_;                // declared first: closed after the session is freed
    tls::Session session_;
    std::string peer_;
};

// What a run did.
struct RunReport {
    std::uint64_t sent = 0;
    std::uint64_t acked = 0;
    std::uint64_t not_recorded = 0;  // ERROR 6
    std::uint64_t bytes = 0;         // message bytes acknowledged
    std::uint64_t unacked = 0;       // sent, never answered (on failure)
    Failure failure = Failure::none;
    std::string error;  // one line, when failure != none
};

// Sends every message of `source` over `conn` through `session` (at most
// session.window() awaiting their ACK), reads and checks the replies, and
// passes each event to `on_event` as it arrives.  Returns when the source
// has ended and every message is answered, or at the first failure: a
// finishing event, the connection lost, or no reply for `ack_timeout`
// while messages are outstanding.  Sends close_notify on success.
RunReport run_client(Connection& conn, ClientSession& session, MessageSource& source,
                     const std::function<void(const ClientSession::Event&)>& on_event,
                     std::chrono::milliseconds ack_timeout);

}  // namespace secmsg
