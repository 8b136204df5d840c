// The client's connection (connect, handshake) and its send loop.
#include "client.hpp"

#include "tls_client.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace secmsg {

namespace {

using Clock = std::chrono::steady_clock;

int ms_until(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::clamp<long long>(left.count(), 0, 1 << 30));
}

std::string format_address(const sockaddr* sa) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    const auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(a->sin_port));
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
    pollfd p{fd, events, 0};
    for (;;) {
        const int n = ::poll(&p, 1, ms_until(deadline));
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) return false;
    }
}

// Non-blocking connect to one address; an fd when connected, else sets `why`.
Fd connect_one(const addrinfo* ai, Clock::time_point deadline, std::string& why) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   ai->ai_protocol));
    if (!fd) {
        why = std::strerror(errno);
        return {};
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            why = std::strerror(errno);
            return {};
        }
        if (!wait_for(fd.get(), POLLOUT, deadline)) {
            why = "timed out (see --connect-timeout)";
            return {};
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) {
            why = std::strerror(err);
            return {};
        }
    }
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

// The name to check the certificate against.  wolfSSL writes an IPv6
// subjectAltName as eight groups of four hex digits ("0000:...:0001") and
// compares names as text, so an IPv6 literal is expanded to that form.
std::string name_for_check(const std::string& name) {
    in6_addr a{};
    if (::inet_pton(AF_INET6, name.c_str(), &a) != 1) return name;
    std::string out;
    char group[8];
    for (int i = 0; i < 16; i += 2) {
        std::snprintf(group, sizeof group, "%02X%02X", a.s6_addr[i], a.s6_addr[i + 1]);
        out += (i ? ":" : "") + std::string(group);
    }
    return out;
}

std::string trust_advice(const tls::ClientOptions& trust) {
    if (!trust.pin.empty()) return "check --pin (secmsgd --init-credentials prints the server's pin)";
    if (trust.ca_file.empty())
        return "pass the server's CA certificate with --ca-file, or its key with --pin";
    return "check --ca-file and --server-name, or pin the server's key with --pin";
}

// The server refused our client certificate (mutual TLS), or that we had none.
std::string refused_text(const std::string& peer, const tls::Session& s) {
    return "the server at " + peer + " refused this client (TLS alert " + tls::refusal_alert(s) +
           "): it requires a client certificate it accepts: check --cert and --key, and the "
           "server's --client-ca and --allow-client (secmsg --init-identity prints the pin to allow)";
}

}  // namespace

Connection Connection::open(const ConnectOptions& o, std::shared_ptr<tls::Context> ctx,
                            const tls::ClientOptions& trust) {
    const auto deadline = Clock::now() + o.timeout;
    const std::string where = (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host) +
                              ":" + std::to_string(o.port);

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(o.port);
    if (const int rc = ::getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw ClientError(Failure::unreachable,
                          "cannot resolve " + o.host + ": " + ::gai_strerror(rc) + " (check --host)");
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(res, &::freeaddrinfo);

    Fd fd;
    std::string peer, errors;
    for (const addrinfo* ai = res; ai && !fd; ai = ai->ai_next) {
        std::string why;
        peer = format_address(ai->ai_addr);
        fd = connect_one(ai, deadline, why);
        if (!fd) errors += (errors.empty() ? "" : "; ") + peer + ": " + why;
    }
    if (!fd)
        throw ClientError(Failure::unreachable,
                          "cannot connect to " + where + " (" + errors +
                              "): is secmsgd running there? check --host and --port");

    tls::Session session(std::move(ctx), fd.get(), false);
    session.set_server_name(name_for_check(o.server_name.empty() ? o.host : o.server_name));
    for (;;) {
        const tls::Io r = session.handshake();
        if (r == tls::Io::done) break;
        if (r == tls::Io::want_read || r == tls::Io::want_write) {
            if (!wait_for(fd.get(), r == tls::Io::want_read ? POLLIN : POLLOUT, deadline))
                throw ClientError(Failure::unreachable,
                                  "TLS handshake with " + peer +
                                      " timed out (see --connect-timeout): is it secmsgd?");
            continue;
        }
        if (tls::rejected_certificate(session)) {
            const std::string name = o.server_name.empty() ? o.host : o.server_name;
            std::string what = !trust.pin.empty()
                                   ? "the server's key at " + peer + " does not match --pin"
                                   : "the certificate of " + peer + " is not trusted for name " +
                                         name + " (" + session.error_text() + ")";
            throw ClientError(Failure::certificate, what + ": " + trust_advice(trust));
        }
        if (tls::refusal_alert(session)) throw ClientError(Failure::certificate, refused_text(peer, session));
        if (tls::connection_dropped(session))
            throw ClientError(Failure::unreachable,
                              "the server at " + peer + " closed the connection during the TLS "
                              "handshake (" + session.error_text() +
                              "): is it secmsgd, and below its connection limit?");
        throw ClientError(Failure::protocol, "TLS handshake with " + peer +
                                                 " failed: " + session.error_text() +
                                                 " (is it secmsgd, speaking TLS 1.3?)");
    }
    return Connection(std::move(fd), std::move(session), peer);
}

namespace {

// Send-loop state over one connection.
class Runner {
public:
    Runner(Connection& c, ClientSession& s, MessageSource& src,
           const std::function<void(const ClientSession::Event&)>& on_event,
           std::chrono::milliseconds ack_timeout)
        : conn_(c), session_(s), source_(src), on_event_(on_event), ack_timeout_(ack_timeout) {
        rbuf_.resize(64 * 1024);
    }

    RunReport run();

private:
    static constexpr std::size_t max_queued = 256 * 1024;

    void pull();
    bool flush();     // false: failed (report_ filled)
    bool drain();     // false: finished or failed (report_ filled)
    bool handle(const ClientSession::Event& e);
    void fail(Failure f, std::string text);
    std::string unacked_text() const;

    Connection& conn_;
    ClientSession& session_;
    MessageSource& source_;
    const std::function<void(const ClientSession::Event&)>& on_event_;
    std::chrono::milliseconds ack_timeout_;

    RunReport report_;
    std::vector<std::uint8_t> writing_;  // frozen while a write is pending
    std::size_t written_ = 0;
    std::vector<std::uint8_t> queued_;   // sealed, not yet handed to TLS
    std::vector<std::uint8_t> msg_;
    std::vector<std::uint8_t> rbuf_;
    std::vector<ClientSession::Event> events_;
    bool source_ended_ = false;
    bool source_waiting_ = false;
    bool want_pollout_ = false;
    bool closed_ = false;
    Clock::time_point last_progress_ = Clock::now();
};

void Runner::fail(Failure f, std::string text) {
    if (report_.failure != Failure::none) return;
    if (tls::refusal_alert(conn_.session())) {  // TLS 1.3: after our handshake was done
        f = Failure::certificate;
        text = refused_text(conn_.peer(), conn_.session());
    }
    report_.failure = f;
    report_.error = std::move(text);
    report_.unacked = session_.in_flight();
}

std::string Runner::unacked_text() const {
    const auto n = session_.in_flight();
    if (n == 0) return "every message sent was acknowledged";
    return std::to_string(n) + (n == 1 ? " message" : " messages") + " unacknowledged (from seq " +
           std::to_string(session_.oldest_pending()) + ")";
}

void Runner::pull() {
    source_waiting_ = false;
    while (!source_ended_ && session_.can_send() && queued_.size() < max_queued) {
        const auto r = source_.next(msg_);
        if (r == MessageSource::Next::end) {
            source_ended_ = true;
        } else if (r == MessageSource::Next::wait) {
            source_waiting_ = true;
            return;
        } else {
            if (session_.in_flight() == 0) last_progress_ = Clock::now();
            session_.send(msg_, queued_);
            ++report_.sent;
        }
    }
}

bool Runner::flush() {
    want_pollout_ = false;
    for (;;) {
        if (writing_.empty()) {
            if (queued_.empty()) return true;
            std::swap(writing_, queued_);
            written_ = 0;
        }
        const auto r = conn_.session().write(std::span(writing_).subspan(written_));
        switch (r.status) {
        case tls::Io::done:
            written_ += r.bytes;
            if (written_ >= writing_.size()) {
                writing_.clear();
                written_ = 0;
            }
            continue;
        case tls::Io::want_write:
            want_pollout_ = true;
            return true;
        case tls::Io::want_read:  // TLS needs the peer first; reading comes next anyway
            return true;
        case tls::Io::closed:
            closed_ = true;
            return true;  // drain() reports it after reading what is left
        case tls::Io::failed:
            fail(Failure::temporary, "connection to " + conn_.peer() + " lost while sending (" +
                                         conn_.session().error_text() + "): " + unacked_text());
            return false;
        }
    }
}

bool Runner::handle(const ClientSession::Event& e) {
    using Kind = ClientSession::Event::Kind;
    last_progress_ = Clock::now();
    if (e.kind == Kind::acked || e.kind == Kind::not_recorded) {
        if (e.kind == Kind::acked) {
            ++report_.acked;
            report_.bytes += e.bytes;
        } else {
            ++report_.not_recorded;
        }
    }
    on_event_(e);
    switch (e.kind) {
    case Kind::acked:
    case Kind::not_recorded:
        return true;
    case Kind::protocol_error:
        fail(Failure::protocol, "protocol error from " + conn_.peer() + ": " + e.text + "; " +
                                    unacked_text());
        return false;
    case Kind::server_error:
        break;
    }
    const auto code = static_cast<ProtoError>(e.code);
    const std::string reason = e.text.empty() ? std::string(describe(code)) : e.text;
    if (code == ProtoError::shutting_down) {
        fail(Failure::temporary, "the server is shutting down (ERROR 7: " + reason + "); " +
                                     unacked_text() + ": send them again later");
        return false;
    }
    const std::string about = e.seq == no_seq ? "" : " about seq " + std::to_string(e.seq);
    const std::string advice = code == ProtoError::too_large ? " (the server's --max-payload is lower)"
                               : code == ProtoError::auth   ? " (is the PSK the server's? check --psk-file)"
                                                            : "";
    fail(Failure::protocol, "the server ended the connection with ERROR " +
                                std::to_string(e.code) + about + ": " + reason + advice + "; " +
                                unacked_text());
    return false;
}

bool Runner::drain() {
    for (;;) {
        const auto r = conn_.session().read(rbuf_);
        switch (r.status) {
        case tls::Io::done:
            events_.clear();
            session_.receive(std::span(rbuf_).first(r.bytes), events_);
            for (const auto& e : events_)
                if (!handle(e)) return false;
            continue;
        case tls::Io::want_read:
            if (closed_) break;
            return true;
        case tls::Io::want_write:
            want_pollout_ = true;
            return true;
        case tls::Io::closed:
            closed_ = true;
            break;
        case tls::Io::failed:
            fail(Failure::temporary, "connection to " + conn_.peer() + " lost (" +
                                         conn_.session().error_text() + "): " + unacked_text());
            return false;
        }
        // The server closed.
        if (session_.in_flight() > 0 || !source_ended_ || !writing_.empty() || !queued_.empty())
            fail(Failure::temporary,
                 "the server at " + conn_.peer() + " closed the connection: " + unacked_text());
        return false;
    }
}

RunReport Runner::run() {
    for (;;) {
        pull();
        if (!flush()) return report_;
        if (!drain()) break;
        if (source_ended_ && session_.in_flight() == 0 && writing_.empty() && queued_.empty())
            break;
        // ACKs just made room: take more input before sleeping.
        if (!source_ended_ && !source_waiting_ && session_.can_send() && queued_.size() < max_queued)
            continue;

        pollfd fds[2] = {{conn_.fd(), POLLIN, 0}, {-1, POLLIN, 0}};
        if (want_pollout_) fds[0].events |= POLLOUT;
        // Backpressure: the input is read only while the window has room.
        if (source_waiting_ && session_.can_send() && queued_.size() < max_queued)
            fds[1].fd = source_.fd();
        int timeout = -1;
        if (session_.in_flight() > 0) {
            const auto deadline = last_progress_ + ack_timeout_;
            timeout = ms_until(deadline);
            if (timeout == 0) {
                char secs[32];
                std::snprintf(secs, sizeof secs, "%g", ack_timeout_.count() / 1000.0);
                fail(Failure::temporary, "no reply from " + conn_.peer() + " within " + secs +
                                             " s (see --timeout): " + unacked_text());
                return report_;
            }
        }
        const int n = ::poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            fail(Failure::temporary, std::string("poll: ") + std::strerror(errno));
            return report_;
        }
        if (n > 0 && fds[1].fd >= 0 && fds[1].revents) source_.on_readable();
    }
    if (report_.failure == Failure::none) {
        // Everything answered: say goodbye once, without waiting for the reply.
        (void)conn_.session().shutdown();
    }
    return report_;
}

}  // namespace

RunReport run_client(Connection& conn, ClientSession& session, MessageSource& source,
                     const std::function<void(const ClientSession::Event&)>& on_event,
                     std::chrono::milliseconds ack_timeout) {
    Runner r(conn, session, source, on_event, ack_timeout);
    return r.run();
}

}  // namespace secmsg
