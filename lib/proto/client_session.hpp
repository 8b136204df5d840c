// The client side of one secmsg/1 connection, without I/O: seals MSGs, keeps
// the ones sent but not yet acknowledged (a bounded window), and checks every
// ACK or ERROR the server sends against them.  The caller moves the bytes.
// Nothing is kept about a message once it is acknowledged, so memory is
// bounded by the window however many messages pass.  A session that keeps
// messages (for sending again on a new connection after this one is lost)
// holds a copy of each until its ACK, and hands the unanswered ones back.
#pragma once

#include "proto/frame_reader.hpp"
#include "proto/payload.hpp"
#include "proto/protocol.hpp"
#include "proto/seal.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace secmsg {

inline constexpr std::size_t default_window = 64;

// A keeping session stops taking messages while it holds this many bytes of
// them (unless it holds none: one message of any size is always taken).
inline constexpr std::size_t max_kept_bytes = 8u << 20;

// A message sent but not acknowledged, kept to be sent again.
struct Unanswered {
    std::uint64_t number;  // the caller's number for it (its place in the input)
    std::vector<std::uint8_t> message;
};

// Whether a session keeps a copy of each message until its ACK, to be
// sent again on a new connection (take_unanswered).
enum class Keeping { none, until_acked };

class ClientSession {
public:
    // `window`: how many MSGs may await their ACK at once (at least 1).
    // `keep` until_acked: a copy of each message until its ACK (take_unanswered);
    // a message answered ERROR 6 is then kept too, to be sent again.
    explicit ClientSession(std::shared_ptr<const FrameKeys> keys,
                           std::size_t window = default_window, Keeping keep = Keeping::none);

    // What one frame from the server meant.  `text` is safe to print: what
    // the server wrote (note, reason) is escaped (escape.hpp), since anyone
    // holding the PSK can write it.
    struct Event {
        enum class Kind {
            acked,           // ACK matching the oldest unacknowledged MSG (seq, text = note)
            not_recorded,    // ERROR 6 for the oldest MSG (seq, code, text = reason); go on
            server_error,    // any other ERROR (code, seq = ref_seq, text = reason); finished
            protocol_error,  // this side found the server's frame wrong (local, text); finished
        };
        Kind kind;
        std::uint64_t seq = no_seq;
        std::uint16_t code = 0;
        ProtoError local = ProtoError::ok;  // protocol_error: what is wrong
        std::string text;
        std::uint64_t bytes = 0;        // acked, not_recorded: the size of that message
        std::uint64_t number = no_seq;  // acked, not_recorded: the number send() was given
    };

    bool can_send() const {
        return !finished_ && pending_.size() < window_ &&
               (kept_bytes_ < max_kept_bytes || pending_.empty());
    }
    std::size_t in_flight() const { return pending_.size(); }
    std::size_t window() const { return window_; }
    // True once a server_error or protocol_error event was produced.
    bool finished() const { return finished_; }
    // The seq of the oldest unacknowledged MSG; no_seq when none.
    std::uint64_t oldest_pending() const;

    // Seals `message` as the next MSG, appended to `out`, and remembers its
    // seq, digest and `number` (no_seq: its seq), and a copy of it when
    // keeping.  Returns its seq.  Precondition: can_send().
    std::uint64_t send(std::span<const std::uint8_t> message, std::vector<std::uint8_t>& out,
                       std::uint64_t number = no_seq);

    // Keeping: the messages not acknowledged, in the order they were sent
    // (those answered ERROR 6 first, as they are older than any still in
    // flight), moved out of the session, which then has none in flight.
    // Not keeping: empty.
    std::vector<Unanswered> take_unanswered();

    // Takes the next bytes received from the server (any split) and appends
    // one event per whole frame to `events`.  After a finishing event, later
    // input is ignored.
    void receive(std::span<const std::uint8_t> bytes, std::vector<Event>& events);

private:
    void handle_frame(std::span<const std::uint8_t> frame, std::vector<Event>& events);
    void fail(ProtoError e, std::string text, std::vector<Event>& events);

    struct Pending {
        std::uint64_t seq;
        Digest digest;
        std::uint64_t bytes;
        std::uint64_t number;
        std::vector<std::uint8_t> message;  // when keeping
    };
    // The oldest pending one is answered (`how`: acked or not_recorded):
    // forget it, or keep it aside (ERROR 6, when keeping).
    void answered(Event::Kind how);

    Channel channel_;
    FrameReader reader_;
    std::size_t window_;
    Keeping keep_;
    std::size_t kept_bytes_ = 0;  // of pending_ and not_recorded_
    std::deque<Pending> pending_;
    std::vector<Unanswered> not_recorded_;  // keeping: answered ERROR 6, in order
    std::vector<std::uint8_t> scratch_;
    bool finished_ = false;
};

}  // namespace secmsg
