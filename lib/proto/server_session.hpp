// The server side of one secmsg/1 connection, without I/O: the client's
// bytes go in (any split), its MSGs come out one at a time, opened and
// checked, with their digests; the answers (ACK, ERROR 6, ERROR 7) are
// sealed by the verbs below into the caller's output.  A frame that is
// wrong ends the session, and the ERROR that says so (1 to 5) is already
// sealed when next() reports it.  The caller moves the bytes, records the
// messages and decides when to stop reading (backpressure: retain()).
#pragma once

#include "proto/frame_reader.hpp"
#include "proto/payload.hpp"
#include "proto/protocol.hpp"
#include "proto/seal.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace secmsg {

// Buffers that every server session of one loop (one thread) shares: the
// plaintext of the message being handled and the payload of an answer, so
// that an idle session holds neither.
struct ServerScratch {
    std::vector<std::uint8_t> plaintext;
    std::vector<std::uint8_t> payload;
};

class ServerSession {
public:
    // `keys`: the PSKs accepted (the first frame's tag picks one, which then
    // serves the whole connection).  `scratch` outlives the session.
    ServerSession(std::shared_ptr<const KeyRing> keys, std::size_t max_payload,
                  ServerScratch& scratch);

    // Input, as FrameReader takes it: `bytes` stays the caller's until
    // next() returns need_more or retain() runs.  feed({}) goes on with
    // what an earlier retain() kept.
    void feed(std::span<const std::uint8_t> bytes) { reader_.feed(bytes); }
    // Keeps the unread rest of the input inside the session (the caller
    // stops before need_more: the recorder has no room, the output is full).
    void retain() { reader_.retain(); }
    // Gives back a large input buffer that holds nothing (a partial frame stays).
    void shrink() { reader_.shrink(); }
    // Whole frames or part of one wait, in the session or in the input.
    bool has_buffered() const { return reader_.has_buffered(); }
    // A frame has begun to arrive and is not complete.
    bool mid_frame() const { return reader_.mid_frame(); }
    // Memory held for input (a budget shared by all connections counts it).
    std::size_t input_capacity() const { return reader_.capacity(); }

    struct Next {
        enum class Kind {
            need_more,  // everything fed is used (part of a frame may be kept)
            message,    // seq, message, digest
            failed,     // error: the ERROR about it is sealed; the session has ended
        };
        Kind kind = Kind::need_more;
        std::uint64_t seq = no_seq;
        // The MSG's plaintext: valid until the next call of next() on any
        // session sharing the scratch.
        std::span<const std::uint8_t> message;
        Digest digest{};  // SHA-256 of message, as its ACK carries it
        ProtoError error = ProtoError::ok;
    };
    // The next MSG.  On a frame that is cut wrong, too large, forged, out of
    // order or of the wrong version or type: failed, with its ERROR appended
    // to `out`; every later call returns need_more.
    Next next(std::vector<std::uint8_t>& out);

    // The answers, each sealed and appended to `out`.
    // ACK of the MSG `seq` with its digest and a note for people.
    void acknowledge(std::uint64_t seq, const Digest& digest, std::string_view note,
                     std::vector<std::uint8_t>& out);
    // ERROR 6 about the MSG `seq`: not recorded, may be sent again; `reason` for people.
    void not_recorded(std::uint64_t seq, std::string_view reason, std::vector<std::uint8_t>& out);
    // ERROR 7: the server is closing once it has answered what it received.
    void shutting_down(std::vector<std::uint8_t>& out);

    // True once a frame's tag proved the peer holds a key.
    bool authenticated() const { return frames_in_ > 0; }
    bool ended() const { return ended_; }
    // The fingerprint of the key the peer uses (empty before its first frame).
    std::string_view key_fingerprint() const { return channel_.key_fingerprint(); }
    std::uint64_t frames_in() const { return frames_in_; }
    std::uint64_t frames_out() const { return frames_out_; }

private:
    Next fail(ProtoError e, std::uint64_t ref_seq, std::vector<std::uint8_t>& out);
    void seal_error(ProtoError e, std::uint64_t ref_seq, std::string_view reason,
                    std::vector<std::uint8_t>& out);

    Channel channel_;
    FrameReader reader_;
    ServerScratch& scratch_;
    std::uint64_t frames_in_ = 0, frames_out_ = 0;
    bool ended_ = false;
};

}  // namespace secmsg
