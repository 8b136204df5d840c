// One client connection: I/O, timers and lifecycle around a ServerSession
// (lib/proto/server_session.hpp: frames in, messages out, answers sealed),
// as a state machine with one entry point (on_events), driven by the
// reactor.  The socket is registered once for EPOLLIN and EPOLLOUT
// (edge-triggered) and every entry, whichever edge fired, does all it can
// in its state: write until TLS wants to wait, read until want-read.  So
// what TLS waits for needs no bookkeeping here; what does is stopping
// early on purpose (budgets, backpressure), which the reactor's revisit
// list remembers.
//
//   handshaking -> open -> draining (SIGTERM) -> closing -> lingering -> closed
//                     \____________________________/^
//
// handshaking: TLS handshake, bounded by the handshake timeout.
// open:        frames in, each MSG recorded then ACKed (or ERROR 6).  While
//              the recorder has no room, or holds this connection's
//              message queued (journald or stderr would block), input is
//              paused: the recorder's callback resumes it.  Answers keep
//              the order of the MSGs.
// draining:    server shutting down: every MSG already received is still
//              recorded and ACKed; at the first want-read, ERROR 7.
// closing:     no more input; pending output flushed, then close_notify.
// lingering:   close_notify sent, write side shut; input discarded until
//              the peer closes or a bound passes (so no RST eats our last
//              frames).
// closed:      the socket is closed; the object dies at the end of the pass.
#pragma once

#include "failure_log.hpp"
#include "io/fd.hpp"
#include "io/reactor.hpp"
#include "proto/server_session.hpp"
#include "recorder.hpp"
#include "tls/output.hpp"
#include "tls/session.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace secmsg::daemon {

// Why a connection ended (one word in its summary line).
enum class CloseReason {
    none,
    client_closed,          // close_notify or FIN from the client
    client_gone_mid_frame,  // the client vanished with part of a frame sent
    tls_failed,             // handshake or record layer failure
    handshake_timeout,
    idle_timeout,
    frame_timeout,     // a frame not complete within --frame-timeout of its first byte
    shed,              // the largest partial frame when the partial-input budget was reached
    tls_abuse,         // too many TLS records without data (a KeyUpdate flood)
    protocol_error,    // ERROR 1 to 5 sent
    server_shutdown,   // ERROR 7 sent
    shutdown_timeout,  // still open when the shutdown bound passed
    write_failed,
};

const char* describe(CloseReason r);

struct Limits {
    std::size_t max_payload = default_max_payload;
    std::size_t max_output = 1u << 20;  // pending output before input pauses
    std::chrono::milliseconds handshake_timeout{10000};
    std::chrono::milliseconds idle_timeout{300000};
    std::chrono::milliseconds frame_timeout{30000};  // first byte of a frame to its last
    std::size_t max_partial_input = 64u << 20;       // all connections' partial frames together
    std::chrono::milliseconds linger{2000};          // closing + lingering bound
    int reads_per_pass = 8;     // TLS reads (records with data) per connection per pass
    int frames_per_pass = 256;  // frames handled per connection per pass
    // What one pass may take from a connection's socket, whatever the
    // records hold: raw bytes and whole TLS records (tls::Session::begin_pass).
    std::size_t pass_bytes = 8 * (16384 + 512);
    std::size_t pass_records = 64;
    // TLS records without application data (KeyUpdate, alerts, empty
    // records) a peer may send per window before it is closed as abusive.
    std::uint64_t max_control_records = 64;
    // Handshake steps (a flight of the peer processed) per loop pass, over
    // all connections: the rest wait for the next pass, so that a flood
    // of new connections delays established ones by one pass at most.
    int handshake_steps_per_pass = 16;
    std::chrono::milliseconds control_window{10000};
};

// What every connection of a server shares: the loop, the recorder, the
// limits, one receive buffer and one plaintext scratch buffer for the whole
// loop.
struct Shared {
    Shared(Reactor& r, Recorder& rec, const Limits& l) : reactor(r), recorder(rec), limits(l) {}
    Reactor& reactor;
    Recorder& recorder;
    Limits limits;
    std::vector<std::uint8_t> rbuf = std::vector<std::uint8_t>(16384 + 512);
    ServerScratch scratch;
    FailureLog* failures = nullptr;  // lines about unauthenticated connections
    // Memory held by all frame readers (partial frames); over the budget,
    // over_budget() runs (once per pass: the server sheds the largest).
    std::size_t partial_bytes = 0;
    std::function<void()> over_budget;
    // Handshake steps taken in the current pass (Limits::handshake_steps_per_pass).
    std::uint64_t handshake_pass = 0;
    int handshake_steps = 0;
    // Called (once) when a connection has closed its socket; the owner
    // destroys the connection, deferred to the end of the pass.
    std::function<void(std::uint64_t id)> on_closed;
};

// Who the peer is beyond its address, as recorded with each message; each
// field empty when unknown (then left out of the record).
struct PeerIdentity {
    std::string via;         // SECMSG_VIA: the proxy the connection came through
    std::string client;      // SECMSG_CLIENT: the client certificate's matched name, or pin
    std::string client_pin;  // SECMSG_CLIENT_PIN: "sha256:PIN" of the client's public key
};

class Connection : public Handler, public RecordClient {
public:
    enum class State { handshaking, open, draining, closing, lingering, closed };

    // Takes the accepted, non-blocking socket, the server-side TLS session
    // made for it, and the keys (the first frame's tag picks one).  Nothing
    // happens until start().
    Connection(Shared& shared, Fd fd, tls::Session session, std::string peer, std::uint64_t id,
               std::shared_ptr<const KeyRing> keys);
    ~Connection() override;

    // Registers with the reactor and arms the handshake timeout, counted
    // from `accepted` (earlier than now when a PROXY header came first).
    // Throws std::system_error (epoll).
    void start(Clock::time_point accepted = Clock::now());

    // The balancer the connection came through (SECMSG_VIA), before start().
    void set_via(std::string via) { identity_.via = std::move(via); }

    // The one entry point: epoll's events, or 0 when revisited.
    void on_events(std::uint32_t events) override;

    // The server is shutting down: finish what was received, then ERROR 7.
    void begin_shutdown();
    // Closes the socket now (shutdown bound passed).
    void abort(CloseReason why);

    // RecordClient: the queued message's outcome; room to offer again.
    void record_done(const RecordResult& outcome) override;
    void record_room() override;

    State state() const { return state_; }
    // Memory its frame reader holds (counted in Shared::partial_bytes), and
    // since when its current partial frame has been arriving.
    std::size_t partial_bytes() const { return partial_counted_; }
    Clock::time_point frame_started() const { return frame_started_; }
    std::uint64_t id() const { return id_; }

private:
    void step();
    void do_handshake();
    void read_input();
    bool process_frames();
    void handle_message(const ServerSession::Next& m);
    void answer_recorded(std::uint64_t seq, const Digest& digest);
    void answer_not_recorded(std::uint64_t seq, const std::string& why);
    bool input_stopped() const { return input_paused_ || record_wait_ != RecordWait::none; }
    void warn(const std::string& what);
    bool authenticated() const { return session_.authenticated(); }
    bool flush();
    void do_closing();
    void do_lingering();
    void enter_closing(CloseReason why);
    void close_now(CloseReason why);
    void on_timer();
    void account_partial();
    void arm_frame_deadline();
    std::string who() const;
    bool check_control_records();
    // Everything waiting to leave: sealed frames, the write TLS holds, and
    // TLS's own output (KeyUpdate answers) that the peer has not read.
    std::size_t pending_output() const { return tls_ ? out_.pending(*tls_) : out_.size(); }

    Shared& shared_;
    Fd fd_;
    std::string peer_;
    PeerIdentity identity_;
    std::uint64_t id_;
    State state_ = State::handshaking;
    CloseReason reason_ = CloseReason::none;
    std::optional<tls::Session> tls_;
    ServerSession session_;
    tls::Output out_;  // sealed frames not yet taken by TLS
    // What the connection waits for from the recorder, if anything.
    enum class RecordWait { none, room, outcome };
    RecordWait record_wait_ = RecordWait::none;
    Clock::time_point record_since_{};  // when the waiting message began to wait
    std::uint64_t queued_seq_ = 0;      // the queued message (RecordWait::outcome)
    Digest queued_digest_{};
    std::string record_id_;      // SECMSG_ID prefix: 128 random bits, hex
    bool input_paused_ = false;  // output bound reached
    bool read_drained_ = false;  // the last read_input() ended at want-read
    bool record_error_logged_ = false;
    std::string failure_;  // why an unauthenticated connection failed (its summary says it)
    Timer timer_;
    Clock::time_point started_;
    Clock::time_point last_activity_;
    Clock::time_point frame_started_{};  // first byte of the partial frame; {} when none
    std::size_t partial_counted_ = 0;    // this reader's share of Shared::partial_bytes
    Clock::time_point control_since_{};  // start of the current control-record window
    std::uint64_t control_base_ = 0;     // records_without_data when it started
    std::string tls_version_;
    std::string tls_cipher_;
    std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
    std::uint64_t not_recorded_ = 0;
};

}  // namespace secmsg::daemon
