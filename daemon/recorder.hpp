// Recording of received messages: to the systemd journal (one entry per
// message, binary-safe), to stderr (one line per message), or nowhere.
//
// A recorder never blocks the loop.  A message is offered only when the
// recorder has room (has_room(); otherwise the connection waits, input
// paused, until record_room() tells it to offer again), and the answer is
// one of three: recorded (handed over now), not recorded (a reason: the
// connection answers ERROR 6), or queued (taken, but the journal or stderr
// would block: record_done() gives the outcome later, at the latest when
// the message's deadline passes).  A message counts as recorded once its
// whole entry was handed to the kernel: a datagram accepted by journald's
// socket, or the last byte of its line written to stderr.
#pragma once

#include "io/reactor.hpp"
#include "proto/escape.hpp"
#include "proto/payload.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace secmsg::daemon {

// "message received": `journalctl MESSAGE_ID=...` lists every recorded message.
inline constexpr std::string_view message_id = "7d5b1c3c9a0e4f4e8b2a6c1d0f3e5a71";

struct MessageInfo {
    std::string_view peer;   // "address:port"
    std::uint64_t conn = 0;  // connection id
    std::string_view id;     // SECMSG_ID: unique across restarts and hosts
    std::uint64_t seq = 0;   // the MSG's sequence number
    std::span<const std::uint8_t> payload;
    const Digest* sha256 = nullptr;
    // Optional; an empty field is left out of the record.
    std::string_view via;         // SECMSG_VIA: the proxy the connection came through
    std::string_view key;         // SECMSG_KEY: public fingerprint of the PSK used
    std::string_view client;      // SECMSG_CLIENT: the client's matched name, or pin
    std::string_view client_pin;  // SECMSG_CLIENT_PIN: sha256:PIN of its public key
};

// What became of a message: recorded, not recorded (with the reason), or
// queued (Recorder::record only: the outcome comes later, through
// RecordClient::record_done, as recorded or not_recorded).
struct RecordResult {
    enum class Status { recorded, not_recorded, queued } status;
    std::string reason;  // for not_recorded

    static RecordResult recorded() { return {Status::recorded, {}}; }
    static RecordResult not_recorded_because(std::string why) {
        return {Status::not_recorded, std::move(why)};
    }
};

// What a recorder calls back: the connection whose message is queued or
// which waits for room.  Both calls come from the loop, never from inside
// Recorder::record(); the client only updates its state and asks the
// reactor to revisit it.
class RecordClient {
public:
    virtual ~RecordClient() = default;
    // The queued message's outcome: recorded or not_recorded (never queued).
    virtual void record_done(const RecordResult& outcome) = 0;
    // The recorder has room again: offer the waiting message.
    virtual void record_room() = 0;
};

// Live figures for STATUS= and the closing log line.
struct RecordStats {
    std::uint64_t recorded = 0;
    std::uint64_t not_recorded = 0;
    std::size_t queued = 0;    // messages waiting for the journal or stderr now
    std::size_t waiting = 0;   // connections waiting for room now
    Clock::duration paused{};  // time spent unable to write (would block)
};

class Recorder {
public:
    virtual ~Recorder() = default;
    // True when a message may be offered now.  False: `c` is put on the
    // wait list and gets record_room() once there is room.
    virtual bool has_room(RecordClient& c) = 0;
    // Offers one message (after has_room() said yes).  `since`: when the
    // message began to wait (its deadline is since + the record timeout).
    virtual RecordResult record(const MessageInfo& m, RecordClient& c, Clock::time_point since) = 0;
    // `c` is going away: no more callbacks to it.  Its queued entry, if
    // any, is still written.
    virtual void forget(RecordClient& c) = 0;
    // No queued message waits past `when` (shutdown).
    virtual void cap_deadlines(Clock::time_point when) = 0;
    virtual RecordStats stats() const = 0;
    virtual std::string_view name() const = 0;
};

enum class RecordMode { automatic, journal, stderr_, none };

// Parses "journal", "stderr", "none" (or "auto"); throws std::invalid_argument.
RecordMode parse_record_mode(const std::string& s);

struct RecordOptions {
    RecordMode mode = RecordMode::automatic;
    std::string journal_namespace;            // empty: the default journal
    std::chrono::milliseconds timeout{3000};  // --record-timeout
};

// The path of journald's native socket for a namespace ("" = the default).
std::string journal_socket_path(const std::string& ns);

// The recorder for the options, on the reactor.  automatic: the journal
// when its socket accepts a connection, else stderr.  journal: throws
// std::runtime_error when the journal is unreachable.
std::unique_ptr<Recorder> make_recorder(Reactor& r, const RecordOptions& o);

// Payloads are rendered for people with secmsg::escape_payload (escape.hpp).
using secmsg::escape_payload;

// Lower-case hex of a digest.
std::string hex_digest(const Digest& d);

}  // namespace secmsg::daemon
