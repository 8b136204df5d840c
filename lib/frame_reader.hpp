// Incremental frame reader: cuts a byte stream into whole secmsg/1 frames.
//
// It does no I/O and no cryptography.  It judges each frame by its 4-byte
// length prefix alone, before buffering any of the body, so a peer that
// announces 4 GiB costs nothing.  Frames that arrive whole inside one fed span
// are handed out in place (no copy); only a frame split across feeds is copied,
// once, into the reader's own buffer, which is reused (no allocation per frame
// once it has grown to the largest frame seen).
#pragma once

#include "protocol.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace secmsg {

class FrameReader {
public:
    explicit FrameReader(std::size_t max_payload = default_max_payload);

    struct Next {
        enum class Kind { frame, need_more, error } kind;
        // For kind == frame: the whole frame, length field included.  Valid
        // until the next call to next(), feed() or retain().
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

    // Releases a large idle buffer (keeps the partial frame, if any).
    void shrink();

    std::size_t max_payload() const { return max_payload_; }

private:
    ProtoError judge(std::uint32_t length) const;
    Next fail(ProtoError e);
    bool top_up(std::size_t n);
    void make_room(std::size_t n);

    std::size_t max_payload_;
    std::vector<std::uint8_t> buf_;  // bytes carried across feeds: [begin_, end_)
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    std::span<const std::uint8_t> in_;
    ProtoError error_ = ProtoError::ok;
};

}  // namespace secmsg
