// Incremental frame reader: cuts a byte stream into whole secmsg/1 frames.
//
// It does no I/O and no cryptography.  It judges each frame by its 4-byte
// length prefix alone, before buffering any of the body, so a peer that
// announces 4 GiB costs nothing.  Frames that arrive whole inside one fed span
// are handed out in place (no copy); only a frame split across feeds is copied,
// once, into the reader's own buffer, which is reused (no allocation per frame
// once it has grown to the largest frame seen).
//
// Memory follows the bytes actually received, never the announced length: a
// peer that sends a maximum length prefix and one byte pins a few hundred
// bytes, not the whole frame.  The buffer grows geometrically (so dribbled
// input is copied O(n) times in all), to at most max(2 * held, 256) bytes and
// never past the frame being reassembled; nothing is zero-filled.
#pragma once

#include "proto/protocol.hpp"

#include <cstdint>
#include <memory>
#include <span>

namespace secmsg {

class FrameReader {
public:
    explicit FrameReader(std::size_t max_payload = default_max_payload);

    struct Next {
        enum class Kind { frame, need_more, error } kind;
        // For kind == frame: the whole frame, length field included.  Valid
        // until the next call to next(), feed(), retain() or shrink().
        std::span<const std::uint8_t> frame;
        ProtoError error = ProtoError::ok;  // malformed or too_large
    };

    // Makes `in` the current input.  The reader does not copy it yet: the
    // caller keeps it alive until next() returns need_more or retain() runs.
    // Precondition: the previous input was used up (need_more) or retained.
    void feed(std::span<const std::uint8_t> in);

    // The next whole frame, need_more (every fed byte is consumed or kept),
    // or error (the stream is broken; every later call returns it again).
    Next next();

    // Copies the unconsumed rest of the current input into the reader's
    // buffer, so the caller may reuse its memory.  For callers that stop
    // before need_more (backpressure).
    void retain();

    // True when whole frames or part of one are waiting inside the reader
    // or in the current input.
    bool has_buffered() const;

    // Bytes of input the reader itself holds (copied from earlier feeds and
    // not yet handed out): what a peer costs now, for a budget shared by all
    // connections.  The memory behind them is capacity().
    std::size_t buffered() const { return end_ - begin_; }

    // Bytes allocated for held input: at most max(2 * buffered(), 256) while
    // a frame is being reassembled; after a frame completes the buffer is
    // kept for reuse until shrink().
    std::size_t capacity() const { return cap_; }

    // True when the reader holds the start of a frame whose rest has not
    // arrived: the peer is in the middle of sending a frame.  Meaningful
    // after next() returned need_more (it then goes from false to true with
    // the first byte of a frame, and back to false when next() hands the
    // frame out), so a caller can bound the time from a frame's first byte
    // to its last.  False once the stream is broken.
    bool mid_frame() const;

    // Releases memory not needed for what is held: an idle buffer above
    // 4 KiB, or one more than four times larger than the partial frame it
    // holds (which stays).
    void shrink();

    std::size_t max_payload() const { return max_payload_; }

private:
    ProtoError judge(std::uint32_t length) const;
    Next fail(ProtoError e);
    bool top_up(std::size_t n, std::size_t limit);
    void make_room(std::size_t n, std::size_t limit);
    void reallocate(std::size_t cap);
    std::size_t first_frame_total() const;

    std::size_t max_payload_;
    // Bytes carried across feeds: [begin_, end_) of buf_, which holds cap_.
    std::unique_ptr<std::uint8_t[]> buf_;
    std::size_t cap_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    std::span<const std::uint8_t> in_;
    ProtoError error_ = ProtoError::ok;
};

}  // namespace secmsg
