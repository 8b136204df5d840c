// The client's connection (connect, handshake) and its send loop.
#include "client.hpp"

#include "backoff.hpp"
#include "io/net.hpp"
#include "tls/output.hpp"
#include "tls/client_context.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <optional>
#include <vector>

namespace secmsg {

namespace {

using Clock = std::chrono::steady_clock;

int ms_until(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::clamp<long long>(left.count(), 0, 1 << 30));
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
Fd connect_one(const addrinfo& ai, Clock::time_point deadline, std::string& why) {
    Fd fd(::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.ai_protocol));
    if (!fd) {
        why = std::strerror(errno);
        return {};
    }
    if (::connect(fd.get(), ai.ai_addr, ai.ai_addrlen) != 0) {
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

std::string trust_advice(const tls::ClientOptions& trust) {
    if (!trust.pin.empty())
        return "check --pin (secmsgd --init-credentials prints the server's pin)";
    if (trust.ca_file.empty())
        return "pass the server's CA certificate with --ca-file, or its key with --pin";
    return "check --ca-file and --server-name, or pin the server's key with --pin";
}

// The server refused our client certificate (mutual TLS), or that we had none.
std::string refused_text(const std::string& peer, const tls::Session& s) {
    return "the server at " + peer + " refused this client (TLS alert " + s.refusal_alert() +
           "): it requires a client certificate it accepts: check --cert and --key, and the "
           "server's --client-ca and --allow-client (secmsg --init-identity prints the pin to "
           "allow)";
}

}  // namespace

Connection Connection::open(const ConnectOptions& o, std::shared_ptr<tls::Context> ctx,
                            const tls::ClientOptions& trust) {
    const auto deadline = Clock::now() + o.timeout;
    const net::Endpoint where{o.host, o.port};
    std::optional<net::Addresses> addresses;
    try {
        addresses.emplace(net::resolve(where, net::Use::connect));
    } catch (const net::ResolveError& e) {
        // A name that does not exist stays so; a failing resolver may recover.
        throw ClientError(Failure::unreachable,
                          "cannot resolve " + o.host + ": " + e.reason() + " (check --host)",
                          e.no_such_name() ? Retry::futile : Retry::may_help);
    }

    Fd fd;
    std::string peer, errors;
    for (const addrinfo& ai : *addresses) {
        std::string why;
        peer = net::format_address(ai.ai_addr, ai.ai_addrlen);
        fd = connect_one(ai, deadline, why);
        if (fd) break;
        errors += (errors.empty() ? "" : "; ") + peer + ": " + why;
    }
    if (!fd)
        throw ClientError(Failure::unreachable,
                          "cannot connect to " + net::format_endpoint(where) + " (" + errors +
                              "): is secmsgd running there? check --host and --port");

    tls::Session session(std::move(ctx), fd.get());
    session.set_server_name(o.server_name.empty() ? o.host : o.server_name);
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
        switch (session.fault()) {
        case tls::Fault::rejected: {
            const std::string name = o.server_name.empty() ? o.host : o.server_name;
            std::string what = !trust.pin.empty()
                                   ? "the server's key at " + peer + " does not match --pin"
                                   : "the certificate of " + peer + " is not trusted for name " +
                                         name + " (" + session.error_text() + ")";
            throw ClientError(Failure::certificate, what + ": " + trust_advice(trust));
        }
        case tls::Fault::refused:
            throw ClientError(Failure::certificate, refused_text(peer, session));
        case tls::Fault::dropped:
            throw ClientError(Failure::unreachable,
                              "the server at " + peer +
                                  " closed the connection during the TLS "
                                  "handshake (" +
                                  session.error_text() +
                                  "): is it secmsgd, and below its connection limit?");
        case tls::Fault::none:
        case tls::Fault::other: break;
        }
        throw ClientError(Failure::protocol, "TLS handshake with " + peer +
                                                 " failed: " + session.error_text() +
                                                 " (is it secmsgd, speaking TLS 1.3?)");
    }
    return Connection(std::move(fd), std::move(session), peer);
}

namespace {

// Message `number` for people, as the caller names it.
std::string message_name(const DeliveryHooks& hooks, std::uint64_t number) {
    return hooks.name ? hooks.name(number) : "message " + std::to_string(number + 1);
}

// How one connection ended: failure none when the source ended and every
// message was acknowledged.
struct Ending {
    Failure failure = Failure::none;
    std::string error;            // one line, without what is left unacknowledged
    Retry retry = Retry::futile;  // on a new connection
};

// The send loop over one connection: the messages carried over from earlier
// connections first, then the source's.
class Runner {
public:
    Runner(Connection& c, ClientSession& s, MessageSource& src, std::deque<Unanswered>& carry,
           RunReport& report, const DeliveryHooks& hooks, std::chrono::milliseconds ack_timeout,
           bool retrying)
        : conn_(c),
          session_(s),
          source_(src),
          carry_(carry),
          report_(report),
          hooks_(hooks),
          ack_timeout_(ack_timeout),
          retrying_(retrying) {
        rbuf_.resize(64 * 1024);
    }

    Ending run();

private:
    static constexpr std::size_t max_queued = 256 * 1024;

    // Where the input stands.
    enum class Input {
        open,     // may have a message now: taken while there is room
        waiting,  // has none yet: its fd must become readable first
        ended,    // has no more
    };
    // Whether the server still talks: closed once TLS reports its
    // close_notify or the end of the stream; what is left is still read.
    enum class Peer { open, closed };

    bool may_take() const;
    void pull();
    bool flush();  // false: failed (ending_ filled)
    bool drain();  // false: finished or failed (ending_ filled)
    bool handle(const ClientSession::Event& e);
    void fail(Failure f, std::string text);
    bool everything_answered() const;

    Connection& conn_;
    ClientSession& session_;
    MessageSource& source_;
    std::deque<Unanswered>& carry_;  // to send before the source's messages
    RunReport& report_;
    const DeliveryHooks& hooks_;
    std::chrono::milliseconds ack_timeout_;
    bool retrying_;  // ERROR 6: stop sending, then end the connection to send it again

    Ending ending_;
    Input input_ = Input::open;
    Peer peer_ = Peer::open;
    bool tls_wants_write_ = false;  // TLS's own want, apart from ours: wait for POLLOUT
    tls::Output out_;               // sealed, not yet taken by TLS
    std::vector<std::uint8_t> msg_;
    std::vector<std::uint8_t> rbuf_;
    std::vector<ClientSession::Event> events_;
    std::uint64_t not_recorded_ =
        0;  // retrying: ERROR 6 on this connection; while > 0, nothing new is sent
    std::uint64_t first_not_recorded_ = 0;
    std::string not_recorded_reason_;
    Clock::time_point last_progress_ = Clock::now();
};

void Runner::fail(Failure f, std::string text) {
    if (ending_.failure != Failure::none) return;
    if (conn_.session().fault() == tls::Fault::refused) {  // TLS 1.3: after our handshake was done
        f = Failure::certificate;
        text = refused_text(conn_.peer(), conn_.session());
    }
    ending_.failure = f;
    ending_.error = std::move(text);
    ending_.retry = usual_retry(f);  // may_help for temporary (unreachable is Connection::open's)
}

// Acknowledged, every one: nothing left to send, to resend or to hear about.
bool Runner::everything_answered() const {
    return input_ == Input::ended && carry_.empty() && not_recorded_ == 0 &&
           session_.in_flight() == 0 && out_.empty();
}

// Room for another message: in the window, in the queue, and no ERROR 6
// to send again first.
bool Runner::may_take() const {
    return session_.can_send() && out_.size() < max_queued && not_recorded_ == 0;
}

void Runner::pull() {
    if (input_ == Input::waiting)
        input_ = Input::open;  // asked again: poll said readable, or room came
    while (may_take()) {
        if (session_.in_flight() == 0) last_progress_ = Clock::now();
        if (!carry_.empty()) {
            session_.send(carry_.front().message, out_.queue(), carry_.front().number);
            carry_.pop_front();
            ++report_.resent;
            continue;
        }
        if (input_ == Input::ended) return;
        const auto r = source_.next(msg_);
        if (r == MessageSource::Next::end) {
            input_ = Input::ended;
        } else if (r == MessageSource::Next::wait) {
            input_ = Input::waiting;
            return;
        } else {
            session_.send(msg_, out_.queue(), report_.sent);
            ++report_.sent;
        }
    }
}

bool Runner::flush() {
    tls_wants_write_ = false;
    switch (out_.flush(conn_.session()).status) {
    case tls::Io::done: return true;
    case tls::Io::want_write: tls_wants_write_ = true; return true;
    case tls::Io::want_read:  // TLS needs the peer first; reading comes next anyway
        return true;
    case tls::Io::closed:
        peer_ = Peer::closed;
        return true;  // drain() reports it after reading what is left
    case tls::Io::failed: break;
    }
    fail(Failure::temporary, "connection to " + conn_.peer() + " lost while sending (" +
                                 conn_.session().error_text() + ")");
    return false;
}

bool Runner::handle(const ClientSession::Event& e) {
    using Kind = ClientSession::Event::Kind;
    last_progress_ = Clock::now();
    if (e.kind == Kind::acked) {
        ++report_.acked;
        report_.bytes += e.bytes;
    } else if (e.kind == Kind::not_recorded) {
        if (!retrying_) {
            ++report_.not_recorded;
        } else if (not_recorded_++ == 0) {
            first_not_recorded_ = e.number;
            not_recorded_reason_ = e.text;
        }
    }
    if (hooks_.event) hooks_.event(e);
    switch (e.kind) {
    case Kind::acked:
    case Kind::not_recorded: return true;
    case Kind::protocol_error:
        fail(Failure::protocol, "protocol error from " + conn_.peer() + ": " + e.text +
                                    (e.local == ProtoError::auth ? " (check --psk-file)" : ""));
        return false;
    case Kind::server_error: break;
    }
    const auto code = static_cast<ProtoError>(e.code);
    const std::string reason = e.text.empty() ? std::string(describe(code)) : e.text;
    if (code == ProtoError::shutting_down) {
        fail(Failure::temporary,
             "the server at " + conn_.peer() + " is shutting down (ERROR 7: " + reason + ")");
        return false;
    }
    const std::string about = e.seq == no_seq ? "" : " about seq " + std::to_string(e.seq);
    const std::string advice =
        code == ProtoError::too_large ? " (the server's --max-payload is lower)"
        : code == ProtoError::auth    ? " (is the PSK the server's? check --psk-file)"
                                      : "";
    fail(Failure::protocol, "the server ended the connection with ERROR " + std::to_string(e.code) +
                                about + ": " + reason + advice);
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
            if (peer_ == Peer::closed) break;
            return true;
        case tls::Io::want_write: tls_wants_write_ = true; return true;
        case tls::Io::closed: peer_ = Peer::closed; break;
        case tls::Io::failed:
            fail(Failure::temporary,
                 "connection to " + conn_.peer() + " lost (" + conn_.session().error_text() + ")");
            return false;
        }
        // The server closed.
        if (!everything_answered())
            fail(Failure::temporary, "the server at " + conn_.peer() + " closed the connection");
        return false;
    }
}

Ending Runner::run() {
    for (;;) {
        pull();
        if (!flush()) return ending_;
        if (!drain()) break;
        if (everything_answered()) break;
        if (not_recorded_ > 0 && session_.in_flight() == 0) {
            // Every reply is in: end this connection, send them again on the next.
            const std::string which = not_recorded_ == 1
                                          ? message_name(hooks_, first_not_recorded_)
                                          : std::to_string(not_recorded_) + " messages";
            fail(Failure::temporary, "the server at " + conn_.peer() + " did not record " + which +
                                         " (ERROR 6: " + not_recorded_reason_ + ")");
            (void)conn_.session().shutdown();
            return ending_;
        }
        // ACKs just made room: take more input before sleeping.
        if (input_ != Input::waiting && may_take() && (input_ == Input::open || !carry_.empty()))
            continue;

        pollfd fds[2] = {{conn_.fd(), POLLIN, 0}, {-1, POLLIN, 0}};
        if (tls_wants_write_) fds[0].events |= POLLOUT;
        // Backpressure: the input is read only while the window has room.
        if (input_ == Input::waiting && may_take()) fds[1].fd = source_.fd();
        int timeout = -1;
        if (session_.in_flight() > 0) {
            const auto deadline = last_progress_ + ack_timeout_;
            timeout = ms_until(deadline);
            if (timeout == 0) {
                char secs[32];
                std::snprintf(secs, sizeof secs, "%g", ack_timeout_.count() / 1000.0);
                fail(Failure::temporary,
                     "no reply from " + conn_.peer() + " within " + secs + " s (see --timeout)");
                return ending_;
            }
        }
        const int n = ::poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            fail(Failure::temporary, std::string("poll: ") + std::strerror(errno));
            return ending_;
        }
        if (n > 0 && fds[1].fd >= 0 && fds[1].revents) source_.on_readable();
    }
    if (ending_.failure == Failure::none) {
        // Everything answered: say goodbye once, without waiting for the reply.
        (void)conn_.session().shutdown();
    }
    return ending_;
}

// Sleeps until `until` (signals do not cut it short).
void sleep_until(Clock::time_point until) {
    while (Clock::now() < until) ::poll(nullptr, 0, std::max(ms_until(until), 1));
}

std::string seconds_text(Clock::duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2g s", std::chrono::duration<double>(d).count());
    if (d >= std::chrono::seconds(10))
        std::snprintf(buf, sizeof buf, "%.0f s", std::chrono::duration<double>(d).count());
    return buf;
}

// The whole run: connections one after another while failures may pass.
class Delivery {
public:
    Delivery(const DeliveryOptions& o, MessageSource& src, const DeliveryHooks& h)
        : o_(o), source_(src), hooks_(h), backoff_(o.retry.first_delay, o.retry.max_delay) {}

    RunReport run();

private:
    bool retrying() const { return o_.retry.retry_for.count() > 0; }
    std::string unacked_text() const;
    std::string failed_text(const Ending& end) const {  // what failed and what is left
        return end.error + (report_.sent > 0 ? "; " + unacked_text() : "");
    }
    bool take_next();  // false: the source ended
    Ending attempt();
    bool wait_before_retry(const Ending& end);
    RunReport finish(const Ending& end);
    RunReport give_up(const Ending& end);  // finish, after --retry-for in vain
    Clock::time_point deadline() const { return failing_since_ + o_.retry.retry_for; }
    void say(const std::string& line, Retrying about = Retrying::after_failure) const {
        if (hooks_.retrying) hooks_.retrying(line, about);
    }

    const DeliveryOptions& o_;
    MessageSource& source_;
    const DeliveryHooks& hooks_;
    Backoff backoff_;
    RunReport report_;
    std::deque<Unanswered> carry_;  // not acknowledged, in input order
    std::vector<std::uint8_t> msg_;
    bool failing_ = false;  // failures since the last ACK; retry_for counts from the first
    Clock::time_point failing_since_;
    std::uint64_t acked_then_ = 0;  // report_.acked at that first failure
};

std::string Delivery::unacked_text() const {
    const auto n = carry_.size();
    if (n == 0) return "every message sent was acknowledged";
    return std::to_string(n) + (n == 1 ? " message" : " messages") + " not acknowledged (" +
           (n == 1 ? "" : "from ") + message_name(hooks_, carry_.front().number) + ")";
}

// Waits for the source's next message and carries it; false at its end.
bool Delivery::take_next() {
    for (;;) {
        const auto r = source_.next(msg_);
        if (r == MessageSource::Next::end) return false;
        if (r == MessageSource::Next::message) {
            carry_.push_back({report_.sent++, std::move(msg_)});
            msg_.clear();
            return true;
        }
        pollfd p{source_.fd(), POLLIN, 0};
        if (::poll(&p, 1, -1) > 0) source_.on_readable();
    }
}

// One connection, from the handshake until it ends; what was not
// acknowledged on it is carried to the next.
Ending Delivery::attempt() {
    using std::chrono::milliseconds;
    ConnectOptions co = o_.connect;
    if (failing_) {  // within what is left of --retry-for
        const auto left = std::chrono::duration_cast<milliseconds>(deadline() - Clock::now());
        co.timeout = std::min(co.timeout, std::max(milliseconds(1), left));
    }
    std::optional<Connection> conn;
    try {
        conn.emplace(Connection::open(co, o_.context, o_.trust));
    } catch (const ClientError& e) {
        return {e.kind(), e.what(), e.retry()};
    }
    ++report_.connections;
    if (hooks_.connected)
        hooks_.connected(*conn, report_.connections == 1 ? Attempt::first : Attempt::again,
                         carry_.size());
    ClientSession session(o_.keys, o_.window, retrying() ? Keeping::until_acked : Keeping::none);
    const Ending end =
        Runner(*conn, session, source_, carry_, report_, hooks_, o_.ack_timeout, retrying()).run();
    auto lost = session.take_unanswered();
    carry_.insert(carry_.begin(), std::make_move_iterator(lost.begin()),
                  std::make_move_iterator(lost.end()));
    return end;
}

RunReport Delivery::finish(const Ending& end) {
    report_.failure = end.failure;
    report_.error = failed_text(end);
    report_.unacked = carry_.size();
    return report_;
}

RunReport Delivery::give_up(const Ending& end) {
    report_.failure = Failure::temporary;
    report_.gave_up = true;
    report_.error = "gave up after trying for " + seconds_text(Clock::now() - failing_since_) +
                    " (--retry-for): " + failed_text(end);
    report_.unacked = carry_.size();
    return report_;
}

// After a failure with messages at stake: says so and waits before the next
// attempt; false when --retry-for has run out.
bool Delivery::wait_before_retry(const Ending& end) {
    const auto now = Clock::now();
    if (failing_ && report_.acked != acked_then_) failing_ = false;  // progress meanwhile
    if (!failing_) {
        failing_ = true;
        failing_since_ = now;
        acked_then_ = report_.acked;
        backoff_.reset();
    }
    if (now >= deadline()) return false;
    // The last attempt is made when the time is up.
    const auto delay = std::min<Clock::duration>(backoff_.next(), deadline() - now);
    say(failed_text(end) + ": trying again in " + seconds_text(delay) + " (giving up in " +
        seconds_text(deadline() - now) + ", --retry-for)");
    sleep_until(now + delay);
    return true;
}

RunReport Delivery::run() {
    for (;;) {
        const Ending end = attempt();
        if (end.failure == Failure::none) return report_;
        if (!retrying() || end.retry == Retry::futile) return finish(end);
        if (carry_.empty() && report_.connections > 0) {
            // Nothing at stake: connect again only when there is something to send.
            say(end.error + "; " + unacked_text() + ": connecting again for the next one",
                Retrying::idle);
            failing_ = false;
            if (!take_next()) return report_;
            continue;
        }
        if (!wait_before_retry(end)) return give_up(end);
    }
}

}  // namespace

RunReport deliver(const DeliveryOptions& options, MessageSource& source,
                  const DeliveryHooks& hooks) {
    return Delivery(options, source, hooks).run();
}

}  // namespace secmsg
