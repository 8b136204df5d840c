// The server (see server.hpp).
#include "server.hpp"

#include "io/net.hpp"
#include "log.hpp"

#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

namespace secmsg::daemon {

namespace {
constexpr int accepts_per_pass = 64;
constexpr auto accept_retry = std::chrono::milliseconds(250);
constexpr auto refused_log_interval = std::chrono::seconds(10);
}  // namespace

class Server::Listener : public Handler {
public:
    Listener(Server& s, Fd fd) : server_(s), fd_(std::move(fd)) {}
    ~Listener() override { server_.reactor_.remove(fd_.get()); }
    void on_events(std::uint32_t) override { server_.accept_from(*this); }
    int fd() const { return fd_.get(); }

private:
    Server& server_;
    Fd fd_;
};

Server::Server(Reactor& reactor, Recorder& recorder, const Limits& limits,
               std::size_t max_connections, Credentials creds)
    : reactor_(reactor),
      failure_log_(reactor),
      shared_{reactor, recorder, limits},
      max_connections_(max_connections),
      creds_(std::move(creds)),
      accept_timer_(reactor,
                    [this] {
                        accept_paused_ = false;
                        for (auto& l : listeners_) reactor_.revisit(l.get());
                    }),
      shutdown_timer_(reactor, [this] {
          for (auto& [id, c] : conns_) c->abort(CloseReason::shutdown_timeout);
          reactor_.defer([this] { finish(); });
      }) {
    shared_.on_closed = [this](std::uint64_t id) { closed(id); };
    shared_.failures = &failure_log_;
    shared_.over_budget = [this] {
        if (shed_scheduled_) return;
        shed_scheduled_ = true;
        reactor_.defer([this] { shed_partial_input(); });
    };
}

Server::~Server() = default;

void Server::add_listener(Fd fd) {
    auto l = std::make_unique<Listener>(*this, std::move(fd));
    reactor_.add(l->fd(), EPOLLIN, l.get());
    listeners_.push_back(std::move(l));
}

// Accepts until EAGAIN, at most accepts_per_pass at a time (then the loop
// comes back through the revisit list) so a burst of new clients cannot
// starve established ones.
void Server::accept_from(Listener& l) {
    if (accept_paused_ || shutting_down_) return;
    for (int i = 0; i < accepts_per_pass; ++i) {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        int fd =
            ::accept4(l.fd(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
            if (e == EAGAIN || e == EWOULDBLOCK) return;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                pause_accepting(std::string("cannot accept: ") + std::strerror(e));
                return;
            }
            log::error(std::string("accept failed: ") + std::strerror(e));
            return;
        }
        Fd cfd(fd);
        if (connections() >= max_connections_) {
            ++refused_;
            auto now = Clock::now();
            if (now - refused_logged_ >= refused_log_interval) {
                log::warning("--max-connections " + std::to_string(max_connections_) +
                             " reached: refused " + std::to_string(refused_) + " new client(s)");
                refused_ = 0;
                refused_logged_ = now;
            }
            continue;  // closed at once
        }
        int one = 1;
        ::setsockopt(cfd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::uint64_t id = ++next_id_;
        const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
        auto peer = net::format_address(sa, len);
        const bool opened =
            net::any_contains(proxy_from_, sa, len)
                ? open_intake(std::move(cfd), std::move(peer), id)
                : open_connection(std::move(cfd), std::move(peer), {}, id, Clock::now());
        if (!opened) return;
        if (on_change) on_change();
    }
    reactor_.revisit(&l);
}

// Sets up a connection's TLS session and state machine and starts it.
// False when that failed for want of memory or descriptors: accepting is
// paused (the socket is closed).
bool Server::open_connection(Fd fd, std::string peer, std::string via, std::uint64_t id,
                             Clock::time_point accepted) {
    try {
        tls::Session session(creds_.tls, fd.get());
        auto c = std::make_unique<Connection>(shared_, std::move(fd), std::move(session),
                                              std::move(peer), id, creds_.keys);
        if (!via.empty()) c->set_via(std::move(via));
        c->start(accepted);
        conns_.emplace(id, std::move(c));
        if (accept_episode_) {  // only a connection fully set up ends it
            log::notice("accepting new connections again");
            accept_episode_ = false;
        }
        return true;
    } catch (const std::exception& ex) {
        // Out of memory or descriptors (wolfSSL opens one per session's
        // RNG): the same episode as EMFILE on accept.
        pause_accepting(std::string("cannot set up a connection: ") + ex.what());
        return false;
    }
}

// A connection from a balancer: its PROXY header first (ProxyIntake), then
// open_connection() through intake_done().
bool Server::open_intake(Fd fd, std::string balancer, std::uint64_t id) {
    try {
        auto intake = std::make_unique<ProxyIntake>(
            reactor_, &failure_log_, shared_.rbuf, std::move(fd), std::move(balancer), id,
            shared_.limits.handshake_timeout,
            [this](std::uint64_t i, std::optional<ProxyIntake::Handoff> h) {
                intake_done(i, std::move(h));
            });
        intake->start();
        intakes_.emplace(id, std::move(intake));
        return true;
    } catch (const std::exception& ex) {
        pause_accepting(std::string("cannot set up a connection: ") + ex.what());
        return false;
    }
}

void Server::intake_done(std::uint64_t id, std::optional<ProxyIntake::Handoff> h) {
    // The intake is inside its own handler: destroy it after the pass.
    reactor_.defer([this, id] {
        intakes_.erase(id);
        if (on_change) on_change();
        if (shutting_down_ && conns_.empty() && intakes_.empty()) finish();
    });
    if (h && !shutting_down_)
        open_connection(std::move(h->fd), std::move(h->peer), std::move(h->via), id, h->accepted);
}

// No busy loop on resource exhaustion: stop accepting and retry on a timer;
// said once per episode.
void Server::pause_accepting(const std::string& why) {
    if (!accept_episode_)
        log::warning(why + "; pausing new connections (" + std::to_string(conns_.size()) +
                     " open)");
    accept_episode_ = true;
    accept_paused_ = true;
    accept_timer_.arm_in(accept_retry);
}

// The partial-input budget is reached: close the connections holding the
// most partial input (the oldest frame first among equals) until the total
// is back under the budget.  Said once per episode; the episode ends when
// the total falls under half the budget.
void Server::shed_partial_input() {
    shed_scheduled_ = false;
    const auto budget = shared_.limits.max_partial_input;
    while (shared_.partial_bytes > budget) {
        Connection* worst = nullptr;
        for (auto& [id, c] : conns_) {
            if (c->state() == Connection::State::closed || c->partial_bytes() == 0) continue;
            if (!worst || c->partial_bytes() > worst->partial_bytes() ||
                (c->partial_bytes() == worst->partial_bytes() &&
                 c->frame_started() < worst->frame_started()))
                worst = c.get();
        }
        if (!worst) break;
        if (!shed_episode_) {
            log::warning("partial-input budget (--max-partial-input " + std::to_string(budget) +
                         " bytes) reached: closing the connections that hold the largest partial "
                         "frames, starting with conn " +
                         std::to_string(worst->id()) + " (" +
                         std::to_string(worst->partial_bytes()) + " bytes)");
            shed_episode_ = true;
        }
        ++shed_count_;
        worst->abort(CloseReason::shed);
    }
    end_shed_episode();
}

void Server::end_shed_episode() {
    if (shed_episode_ && shared_.partial_bytes < shared_.limits.max_partial_input / 2) {
        log::notice("partial input back under half the budget; " + std::to_string(shed_count_) +
                    " connection(s) closed to get there");
        shed_episode_ = false;
        shed_count_ = 0;
    }
}

void Server::closed(std::uint64_t id) {
    // The connection is inside its own handler: destroy it after the pass.
    reactor_.defer([this, id] {
        conns_.erase(id);
        end_shed_episode();
        if (on_change) on_change();
        if (shutting_down_ && conns_.empty() && intakes_.empty()) finish();
    });
}

void Server::begin_shutdown(std::chrono::milliseconds bound, std::function<void()> done) {
    if (shutting_down_) return;
    shutting_down_ = true;
    done_ = std::move(done);
    // Stop accepting (a socket-activated fd stays open in systemd).  The
    // listeners die after this pass: an event for one may still be queued.
    for (auto& l : listeners_) reactor_.remove(l->fd());
    auto dying = std::make_shared<std::vector<std::unique_ptr<Listener>>>(std::move(listeners_));
    listeners_.clear();
    reactor_.defer([dying] { dying->clear(); });
    accept_timer_.cancel();
    // Messages waiting for a stalled journal get ERROR 6 halfway through
    // the bound, so that their answers still leave before it.
    shared_.recorder.cap_deadlines(Clock::now() + bound / 2);
    for (auto& [id, c] : conns_) c->begin_shutdown();
    for (auto& [id, i] : intakes_) i->abort();  // each erased after this pass
    shutdown_timer_.arm_in(bound);
    if (conns_.empty() && intakes_.empty()) reactor_.defer([this] { finish(); });
}

void Server::finish() {
    if (!done_) return;
    shutdown_timer_.cancel();
    auto done = std::move(done_);
    done_ = nullptr;
    done();
}

}  // namespace secmsg::daemon
