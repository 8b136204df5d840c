// The server: listeners, the accept policy (capped per pass, EMFILE pause,
// max connections), the set of connections, reload and shutdown.
#pragma once

#include "connection.hpp"
#include "io/cidr.hpp"
#include "io/fd.hpp"
#include "io/reactor.hpp"
#include "proto/seal.hpp"
#include "proxy_intake.hpp"
#include "recorder.hpp"
#include "tls/session.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace secmsg::daemon {

// What new connections are opened under; replaced as a whole on reload.
struct Credentials {
    std::shared_ptr<tls::Context> tls;
    std::shared_ptr<const KeyRing> keys;  // the PSK file's keys: any may open a connection
};

class Server {
public:
    Server(Reactor& reactor, Recorder& recorder, const Limits& limits, std::size_t max_connections,
           Credentials creds);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Takes a listening, non-blocking socket and starts accepting on it.
    void add_listener(Fd fd);

    // New connections get these; open ones keep what they started with.
    void set_credentials(Credentials creds) { creds_ = std::move(creds); }

    // Connections from these blocks (--proxy-protocol-from) must begin with
    // a PROXY protocol v2 header (ProxyIntake); from anywhere else, TLS.
    void set_proxy_sources(std::vector<net::Cidr> blocks) { proxy_from_ = std::move(blocks); }

    // Stops accepting, lets every connection finish what it received (ERROR
    // 7, close_notify), and calls `done` once all are closed or `bound` passed.
    void begin_shutdown(std::chrono::milliseconds bound, std::function<void()> done);

    // Open connections, those still reading their PROXY header included.
    std::size_t connections() const { return conns_.size() + intakes_.size(); }
    RecordStats record_stats() const { return shared_.recorder.stats(); }
    std::uint64_t accepted() const { return next_id_; }
    bool shutting_down() const { return shutting_down_; }

    // Called whenever the counts change (for sd_notify STATUS=).
    std::function<void()> on_change;

private:
    class Listener;
    void accept_from(Listener& l);
    bool open_connection(Fd fd, std::string peer, std::string via, std::uint64_t id,
                         Clock::time_point accepted);
    bool open_intake(Fd fd, std::string balancer, std::uint64_t id);
    void intake_done(std::uint64_t id, std::optional<ProxyIntake::Handoff> handoff);
    void pause_accepting(const std::string& why);
    void closed(std::uint64_t id);
    void finish();
    void shed_partial_input();
    void end_shed_episode();

    Reactor& reactor_;
    FailureLog failure_log_;
    Shared shared_;
    std::size_t max_connections_;
    Credentials creds_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
    std::vector<net::Cidr> proxy_from_;
    std::unordered_map<std::uint64_t, std::unique_ptr<ProxyIntake>> intakes_;
    std::uint64_t next_id_ = 0;
    bool accept_paused_ = false;   // retried on a timer
    bool accept_episode_ = false;  // EMFILE (or alike) logged, not yet over
    Timer accept_timer_;
    std::uint64_t refused_ = 0;  // over --max-connections since the last report
    Clock::time_point refused_logged_{};
    bool shed_scheduled_ = false;
    bool shed_episode_ = false;  // budget reached, logged, not yet back under half
    std::uint64_t shed_count_ = 0;
    bool shutting_down_ = false;
    Timer shutdown_timer_;
    std::function<void()> done_;
};

}  // namespace secmsg::daemon
