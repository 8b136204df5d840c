// Reading the PROXY protocol v2 header before TLS (see proxy_intake.hpp).
#include "proxy_intake.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/epoll.h>
#include <sys/socket.h>

namespace secmsg::daemon {

namespace {
constexpr std::uint8_t tls_handshake_record = 0x16;

// "0.012s", as connection summaries give durations.
std::string since(Clock::time_point start) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    char text[32];
    std::snprintf(text, sizeof text, "%lld.%03llds", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000));
    return text;
}
}  // namespace

const char* ProxyIntake::describe(End e) {
    switch (e) {
    case End::proxy_header: return "proxy-header";
    case End::handshake_timeout: return "handshake-timeout";
    case End::client_closed: return "client-closed";
    case End::read_failed: return "read-failed";
    case End::server_shutdown: return "server-shutdown";
    }
    return "unknown";
}

ProxyIntake::ProxyIntake(Reactor& reactor, FailureLog* failures, std::span<std::uint8_t> rbuf,
                         Fd fd, std::string balancer, std::uint64_t id,
                         std::chrono::milliseconds timeout, Done done)
    : reactor_(reactor),
      failures_(failures),
      rbuf_(rbuf),
      fd_(std::move(fd)),
      balancer_(std::move(balancer)),
      id_(id),
      timeout_(timeout),
      done_(std::move(done)),
      timer_(reactor,
             [this] {
                 fail(End::handshake_timeout,
                      "PROXY protocol v2 header not complete within the "
                      "handshake timeout");
             }),
      accepted_(Clock::now()) {}

ProxyIntake::~ProxyIntake() {
    if (fd_) reactor_.remove(fd_.get());
}

void ProxyIntake::start() {
    reactor_.add(fd_.get(), EPOLLIN | EPOLLRDHUP, this);
    timer_.arm_in(timeout_);
}

void ProxyIntake::on_events(std::uint32_t) {
    if (!fd_) return;
    if (parser_.status() == proxy::Parser::Status::done)
        after_local();
    else
        read_header();
}

// Reads until the header is complete, wrong, or the socket has no more;
// never more than the parser still wants.
void ProxyIntake::read_header() {
    while (parser_.status() == proxy::Parser::Status::need_more) {
        const auto want = std::min(parser_.wanted(), rbuf_.size());
        const ssize_t n = ::recv(fd_.get(), rbuf_.data(), want, 0);
        if (n > 0) {
            if (parser_.received() == 0) first_byte_ = rbuf_[0];
            parser_.feed(rbuf_.first(static_cast<std::size_t>(n)));
            continue;
        }
        const int e = n == 0 ? 0 : errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) return;  // the next edge resumes
        // Connect and close (or reset) without a byte: a TCP health check.
        if (parser_.received() == 0 && (e == 0 || e == ECONNRESET)) return close_quietly();
        if (e == 0 || e == ECONNRESET)
            return fail(End::client_closed, "closed inside the PROXY protocol v2 header");
        return fail(End::read_failed, std::string("read failed: ") + std::strerror(e));
    }
    if (parser_.status() == proxy::Parser::Status::error) {
        std::string what = proxy::describe(parser_.error());
        if (parser_.error() == proxy::Error::bad_signature && first_byte_ == tls_handshake_record)
            what +=
                " (it began with TLS: does the balancer send the header, HAProxy's send-proxy-v2?)";
        return fail(End::proxy_header, what);
    }
    const auto& h = parser_.header();
    if (h.command == proxy::Command::proxy) return hand_off(proxy::format(h.source), balancer_);
    after_local();
}

// After a LOCAL header: a health check closes now, without TLS; anything
// else is a TLS client of the balancer's own.  Looks without taking.
void ProxyIntake::after_local() {
    for (;;) {
        std::uint8_t b;
        const ssize_t n = ::recv(fd_.get(), &b, 1, MSG_PEEK);
        if (n > 0) return hand_off(balancer_, {});
        const int e = n == 0 ? 0 : errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) return;
        if (e == 0 || e == ECONNRESET) return close_quietly();
        return fail(End::read_failed, std::string("read failed: ") + std::strerror(e));
    }
}

void ProxyIntake::hand_off(std::string peer, std::string via) {
    timer_.cancel();
    reactor_.forget(this);
    reactor_.remove(fd_.get());
    done_(id_, Handoff{std::move(fd_), std::move(peer), std::move(via), accepted_});
}

// One line, like a connection's summary, through the rate-limited log of
// unauthenticated connections (keyed by the balancer's address: the
// header that would name the client is what failed).
void ProxyIntake::fail(End why, const std::string& what) {
    if (!fd_) return;
    const std::string line = "conn " + std::to_string(id_) + " peer " + balancer_ +
                             " closed: before TLS (PROXY protocol header expected), in " +
                             std::to_string(parser_.received()) + " bytes, duration " +
                             since(accepted_) + ", reason " + describe(why) + ": " + what;
    if (failures_) failures_->report(balancer_, line);
    release();
    done_(id_, std::nullopt);
}

void ProxyIntake::close_quietly() {
    release();
    done_(id_, std::nullopt);
}

void ProxyIntake::release() {
    timer_.cancel();
    reactor_.forget(this);
    reactor_.remove(fd_.get());
    fd_.reset();
}

void ProxyIntake::abort() { fail(End::server_shutdown, "the server is shutting down"); }

}  // namespace secmsg::daemon
