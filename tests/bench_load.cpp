// bench-load: the load generator of the benchmark (tests/bench_load.py runs it).
//
// One thread, one edge-triggered epoll, many concurrent non-blocking TLS 1.3
// connections, all built from the project's own client-side code (tls::Session,
// Channel, FrameReader, payload parsing), so that every server measured faces
// exactly the same client.  Every ACK is checked against the MSG it
// acknowledges (acked_seq and SHA-256); anything else ends the run with a
// one-line error and exit status 1.
//
// Workloads (--mode):
//   throughput  --connections N, each keeping --window MSGs of --size bytes in
//               flight, for --seconds (after a short warm-up)
//   large       the same, meant for large messages (64 KiB)
//   handshake   --connections concurrent loops of: connect, TLS handshake, one
//               MSG, its ACK, close_notify, close
//   idle        opens connections that each send one MSG, get its ACK and then
//               stay idle; at each count of --idle-steps it prints
//               "idle COUNT" and waits for one line on stdin before going on
//
// Output on stdout, one line each: "begin" when the measured period starts,
// "idle N" (idle mode), and at the end "result {json}".
#include "io/fd.hpp"
#include "keys/psk.hpp"
#include "proto/frame_reader.hpp"
#include "proto/payload.hpp"
#include "proto/protocol.hpp"
#include "proto/seal.hpp"
#include "tls/session.hpp"

#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace secmsg;
using Clock = std::chrono::steady_clock;

// A failure that ends the benchmark run (server misbehaved, setup failed).
struct BenchError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Mode { throughput, large, handshake, idle };

struct Config {
    std::string host = "127.0.0.1";
    std::uint16_t port = default_port;
    std::string psk_file;
    std::string ca_file;  // empty: no verification (the benchmark's own throwaway server)
    Mode mode = Mode::throughput;
    std::size_t connections = 50;
    std::size_t window = 64;
    std::size_t size = 64;
    double seconds = 3.0;
    double warmup = 0.5;
    std::vector<std::size_t> idle_steps{1000};
    std::size_t idle_concurrency = 64;  // handshakes in progress at once in idle mode
};

// What the whole run shares: keys, TLS context, the message and its digest,
// one receive buffer for every connection, and the counters.
struct Shared {
    Config cfg;
    std::shared_ptr<const FrameKeys> keys;
    std::shared_ptr<tls::Context> ctx;
    sockaddr_in addr{};
    std::vector<std::uint8_t> message;
    Digest digest{};
    std::vector<std::uint8_t> rx_buf = std::vector<std::uint8_t>(256 * 1024);
    std::vector<std::uint8_t> scratch;
    Fd epoll;  // the one epoll instance of the run

    bool measuring = false;
    std::uint64_t acked = 0;        // ACKs counted while measuring
    std::uint64_t acked_bytes = 0;  // message bytes acknowledged while measuring
    std::uint64_t completed = 0;    // handshake loops finished while measuring
    std::uint64_t idle_ready = 0;   // idle connections that got their ACK
    std::string cipher;             // negotiated suite of the first connection
    std::string version;
};

// One client connection and its state machine.  step() is the single entry
// point: it runs the connection as far as it can go without blocking.
class Conn {
public:
    enum class State { connecting, handshaking, open, closing, finished };

    Conn(Shared& sh, std::size_t slot) : sh_(sh), slot_(slot), reader_(default_max_payload) {}

    // Starts a non-blocking connect and registers the socket with epoll.
    void start() {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) throw BenchError(std::string("socket: ") + std::strerror(errno));
        sock_ = Fd(fd);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&sh_.addr), sizeof sh_.addr) != 0 &&
            errno != EINPROGRESS)
            throw BenchError(std::string("cannot connect to the server: ") + std::strerror(errno));
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = slot_;
        if (::epoll_ctl(sh_.epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            throw BenchError(std::string("epoll_ctl: ") + std::strerror(errno));
        state_ = State::connecting;
        channel_.emplace(sh_.keys, Role::client);
        reader_ = FrameReader(default_max_payload);
        pending_.clear();
        out_.clear();
        out_off_ = 0;
        write_len_ = 0;
        sent_ = 0;
    }

    // Runs the state machine after an epoll event (or a fresh start).
    void step() {
        if (state_ == State::connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(sock_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0)
                throw BenchError(std::string("cannot connect to the server: ") +
                                 std::strerror(err));
            sockaddr_in peer{};
            socklen_t plen = sizeof peer;
            if (::getpeername(sock_.get(), reinterpret_cast<sockaddr*>(&peer), &plen) != 0) {
                if (errno == ENOTCONN) return;  // still connecting: EPOLLOUT will come
                throw BenchError(std::string("getpeername: ") + std::strerror(errno));
            }
            tls_.emplace(sh_.ctx, sock_.get());
            state_ = State::handshaking;
        }
        if (state_ == State::handshaking) {
            tls::Io r = tls_->handshake();
            if (r == tls::Io::want_read || r == tls::Io::want_write) return;
            if (r != tls::Io::done) throw BenchError("TLS handshake failed: " + tls_->error_text());
            if (sh_.cipher.empty()) {
                sh_.cipher = tls_->cipher();
                sh_.version = tls_->version();
            }
            state_ = State::open;
        }
        if (state_ == State::open) {
            // Read even when output is stuck: the server may be waiting for
            // us to take its ACKs before it reads more.
            fill();
            flush();
            receive();
            if (state_ == State::open) {
                fill();
                flush();
            }
        }
        if (state_ == State::closing) {
            tls::Io r = tls_->shutdown();
            if (r == tls::Io::want_write) return;
            finish();
        }
    }

    State state() const { return state_; }

private:
    // How many MSGs this connection sends in the current mode (0: no limit).
    std::size_t quota() const {
        switch (sh_.cfg.mode) {
        case Mode::handshake:
        case Mode::idle: return 1;
        default: return 0;
        }
    }

    // Seals MSGs until the window is full (or the quota is reached).
    void fill() {
        compact();
        const std::size_t q = quota();
        const std::size_t window = q ? 1 : sh_.cfg.window;
        while (pending_.size() < window && (q == 0 || sent_ < q)) {
            pending_.push_back(channel_->seal(FrameType::msg, sh_.message, out_));
            ++sent_;
        }
    }

    // Writes pending output until it is all out (true) or TLS wants to wait.
    // After want_write the same bytes and length are offered again.
    bool flush() {
        while (out_off_ < out_.size()) {
            if (write_len_ == 0) write_len_ = out_.size() - out_off_;
            auto r = tls_->write({out_.data() + out_off_, write_len_});
            if (r.status == tls::Io::want_write || r.status == tls::Io::want_read) return false;
            if (r.status != tls::Io::done)
                throw BenchError("TLS write failed: " + tls_->error_text());
            out_off_ += r.bytes;
            write_len_ = 0;
        }
        out_.clear();
        out_off_ = 0;
        return true;
    }

    // Drops the already written front of the output buffer (when no write
    // waits for a retry), so that a connection that never drains completely
    // does not grow its buffer without bound.
    void compact() {
        if (write_len_ == 0 && out_off_ > 0 && out_off_ >= out_.size() / 2) {
            out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_off_));
            out_off_ = 0;
        }
    }

    // Reads until TLS wants more bytes from the socket, handling every frame.
    void receive() {
        while (state_ == State::open) {
            auto r = tls_->read(sh_.rx_buf);
            if (r.status == tls::Io::want_read || r.status == tls::Io::want_write) return;
            if (r.status == tls::Io::closed)
                throw BenchError("the server closed the connection with " +
                                 std::to_string(pending_.size()) + " messages unacknowledged");
            if (r.status != tls::Io::done)
                throw BenchError("TLS read failed: " + tls_->error_text());
            reader_.feed({sh_.rx_buf.data(), r.bytes});
            for (;;) {
                auto n = reader_.next();
                if (n.kind == FrameReader::Next::Kind::need_more) break;
                if (n.kind == FrameReader::Next::Kind::error)
                    throw BenchError("the server sent a bad frame: " +
                                     std::string(describe(n.error)));
                handle_frame(n.frame);
            }
        }
    }

    void handle_frame(std::span<const std::uint8_t> frame) {
        Opened o = channel_->open(frame, sh_.scratch);
        if (o.error != ProtoError::ok)
            throw BenchError(
                "a frame from the server was rejected: " + std::string(describe(o.error)) +
                (o.error == ProtoError::auth ? " (is the PSK the server's?)" : ""));
        if (o.type == FrameType::error) {
            auto e = parse_error(o.plaintext);
            throw BenchError(e ? "the server sent ERROR " + std::to_string(e->code) + ": " +
                                     std::string(e->reason)
                               : std::string("the server sent a truncated ERROR"));
        }
        auto ack = parse_ack(o.plaintext);
        if (!ack) throw BenchError("the server sent a truncated ACK");
        if (pending_.empty()) throw BenchError("the server acknowledged a message never sent");
        if (!ack_matches(*ack, pending_.front(), sh_.digest))
            throw BenchError("ACK mismatch: seq " + std::to_string(ack->acked_seq) + ", expected " +
                             std::to_string(pending_.front()) + " with the message's SHA-256");
        pending_.pop_front();
        if (sh_.measuring) {
            ++sh_.acked;
            sh_.acked_bytes += sh_.message.size();
        }
        if (sh_.cfg.mode == Mode::handshake && pending_.empty()) state_ = State::closing;
        if (sh_.cfg.mode == Mode::idle && pending_.empty()) ++sh_.idle_ready;
    }

    // Handshake loop: the connection is done; count it and start the next.
    void finish() {
        ::epoll_ctl(sh_.epoll.get(), EPOLL_CTL_DEL, sock_.get(), nullptr);
        tls_.reset();
        sock_.reset();
        state_ = State::finished;
        if (sh_.measuring) ++sh_.completed;
    }

    Shared& sh_;
    std::size_t slot_;
    State state_ = State::finished;
    Fd sock_;
    std::optional<tls::Session> tls_;
    std::optional<Channel> channel_;
    FrameReader reader_;
    std::deque<std::uint64_t> pending_;  // seqs sent, awaiting their ACK
    std::vector<std::uint8_t> out_;
    std::size_t out_off_ = 0;
    std::size_t write_len_ = 0;  // length offered to the write that wants a retry
    std::size_t sent_ = 0;
};

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void say(const std::string& line) { std::cout << line << '\n' << std::flush; }

// Raises the soft open-file limit to the hard limit; returns the new soft limit.
rlim_t raise_nofile() {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

class Bench {
public:
    explicit Bench(Shared& sh) : sh_(sh) {
        sh_.epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!sh_.epoll) throw BenchError(std::string("epoll_create1: ") + std::strerror(errno));
    }

    std::string run() {
        switch (sh_.cfg.mode) {
        case Mode::throughput:
        case Mode::large: return run_stream();
        case Mode::handshake: return run_handshakes();
        case Mode::idle: return run_idle();
        }
        return {};
    }

private:
    Conn& add() {
        conns_.push_back(std::make_unique<Conn>(sh_, conns_.size()));
        conns_.back()->start();
        conns_.back()->step();
        return *conns_.back();
    }

    // One epoll wait (at most timeout_ms) and the steps it calls for.
    void poll_once(int timeout_ms) {
        epoll_event evs[256];
        int n = ::epoll_wait(sh_.epoll.get(), evs, 256, timeout_ms);
        if (n < 0 && errno != EINTR)
            throw BenchError(std::string("epoll_wait: ") + std::strerror(errno));
        // Errors and hang-ups surface through the state machine's own reads.
        for (int i = 0; i < n; ++i) conns_[evs[i].data.u64]->step();
    }

    bool all_open() const {
        for (auto& c : conns_)
            if (c->state() != Conn::State::open) return false;
        return true;
    }

    std::string result_json(double wall, double cpu) {
        std::ostringstream j;
        j.setf(std::ios::fixed);
        j.precision(4);
        j << "{\"seconds\": " << wall << ", \"messages\": " << sh_.acked
          << ", \"bytes\": " << sh_.acked_bytes << ", \"connections_completed\": " << sh_.completed
          << ", \"generator_cpu_seconds\": " << cpu << ", \"tls_version\": \"" << sh_.version
          << "\", \"cipher\": \"" << sh_.cipher << "\"}";
        return j.str();
    }

    std::string run_stream() {
        for (std::size_t i = 0; i < sh_.cfg.connections; ++i) add();
        const auto setup_deadline = Clock::now() + std::chrono::seconds(60);
        while (!all_open()) {
            if (Clock::now() > setup_deadline)
                throw BenchError("connections not established within 60 s");
            poll_once(100);
        }
        const auto warm = Clock::now();
        while (seconds_since(warm) < sh_.cfg.warmup) poll_once(50);
        say("begin");
        sh_.measuring = true;
        const double cpu0 = cpu_seconds();
        const auto t0 = Clock::now();
        while (seconds_since(t0) < sh_.cfg.seconds) poll_once(50);
        sh_.measuring = false;
        const double wall = seconds_since(t0);
        return result_json(wall, cpu_seconds() - cpu0);
    }

    std::string run_handshakes() {
        for (std::size_t i = 0; i < sh_.cfg.connections; ++i) add();
        say("begin");
        sh_.measuring = true;
        const double cpu0 = cpu_seconds();
        const auto t0 = Clock::now();
        while (seconds_since(t0) < sh_.cfg.seconds) {
            poll_once(50);
            for (auto& c : conns_)
                if (c->state() == Conn::State::finished) {
                    c->start();
                    c->step();
                }
        }
        sh_.measuring = false;
        const double wall = seconds_since(t0);
        return result_json(wall, cpu_seconds() - cpu0);
    }

    std::string run_idle() {
        const double cpu0 = cpu_seconds();
        const auto t0 = Clock::now();
        for (std::size_t target : sh_.cfg.idle_steps) {
            const auto deadline = Clock::now() + std::chrono::seconds(120);
            while (sh_.idle_ready < target) {
                if (Clock::now() > deadline)
                    throw BenchError("only " + std::to_string(sh_.idle_ready) + " of " +
                                     std::to_string(target) + " idle connections within 120 s");
                // Keep a bounded number of handshakes in flight.
                const std::size_t busy = conns_.size() - sh_.idle_ready;
                for (std::size_t i = busy; i < sh_.cfg.idle_concurrency && conns_.size() < target;
                     ++i)
                    add();
                poll_once(20);
            }
            // Collect the tail (for example session tickets) before going quiet.
            poll_once(100);
            say("idle " + std::to_string(target));
            std::string line;
            if (!std::getline(std::cin, line)) break;
        }
        return result_json(seconds_since(t0), cpu_seconds() - cpu0);
    }

    Shared& sh_;
    std::vector<std::unique_ptr<Conn>> conns_;
};

std::vector<std::size_t> parse_steps(const std::string& s) {
    std::vector<std::size_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) out.push_back(std::stoul(item));
    if (out.empty()) throw BenchError("--idle-steps is empty");
    for (std::size_t i = 1; i < out.size(); ++i)
        if (out[i] <= out[i - 1]) throw BenchError("--idle-steps must increase");
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    std::string mode = "throughput";
    std::string steps = "1000";
    CLI::App app{"bench-load: secmsg/1 load generator (run by tests/bench_load.py)"};
    app.add_option("--host", cfg.host, "server IPv4 address");
    app.add_option("--port", cfg.port, "server port")->required();
    app.add_option("--psk-file", cfg.psk_file, "PSK file")->required();
    app.add_option("--ca-file", cfg.ca_file,
                   "verify the server against this certificate (default: no verification)");
    app.add_option("--mode", mode, "throughput, large, handshake or idle")
        ->check(CLI::IsMember({"throughput", "large", "handshake", "idle"}));
    app.add_option("--connections", cfg.connections, "concurrent connections (handshake: loops)");
    app.add_option("--window", cfg.window, "MSGs in flight per connection");
    app.add_option("--size", cfg.size, "message size in bytes")
        ->check(CLI::Range(std::size_t{0}, default_max_payload));
    app.add_option("--seconds", cfg.seconds, "measured period");
    app.add_option("--warmup", cfg.warmup, "unmeasured period before it (throughput, large)");
    app.add_option("--idle-steps", steps, "idle: connection counts to report, e.g. 1000,5000");
    CLI11_PARSE(app, argc, argv);

    try {
        if (sodium_init() < 0) throw BenchError("libsodium initialisation failed");
        cfg.mode = mode == "large"       ? Mode::large
                   : mode == "handshake" ? Mode::handshake
                   : mode == "idle"      ? Mode::idle
                                         : Mode::throughput;
        cfg.idle_steps = parse_steps(steps);
        if (cfg.window == 0 || cfg.connections == 0)
            throw BenchError("--window and --connections must be at least 1");
        const rlim_t nofile = raise_nofile();
        if (cfg.mode == Mode::idle && cfg.idle_steps.back() + 64 > nofile)
            throw BenchError("the open-file limit (" + std::to_string(nofile) +
                             ") is too low for " + std::to_string(cfg.idle_steps.back()) +
                             " connections");

        Shared sh;
        sh.cfg = cfg;
        {
            SecretBytes psk = load_sender_psk(cfg.psk_file);
            sh.keys = std::make_shared<const FrameKeys>(psk.bytes());
        }
        tls::ClientOptions co;
        if (cfg.ca_file.empty()) {
            co.insecure = true;
        } else {
            co.ca_file = cfg.ca_file;
            co.server_name = "localhost";
        }
        sh.ctx = tls::make_client_context(co);
        sh.addr.sin_family = AF_INET;
        sh.addr.sin_port = htons(cfg.port);
        if (::inet_pton(AF_INET, cfg.host.c_str(), &sh.addr.sin_addr) != 1)
            throw BenchError("--host must be an IPv4 address: " + cfg.host);
        sh.message.resize(cfg.size);
        randombytes_buf(sh.message.data(), sh.message.size());
        sh.digest = sha256(sh.message);

        Bench bench(sh);
        say("result " + bench.run());
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bench-load: " << e.what() << '\n';
        return 1;
    }
}
