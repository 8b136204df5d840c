#include "frame_reader.hpp"

#include "bytes.hpp"

#include <algorithm>
#include <cstring>

namespace secmsg {

FrameReader::FrameReader(std::size_t max_payload) : max_payload_(max_payload) {}

ProtoError FrameReader::judge(std::uint32_t length) const {
    if (length < min_length || (length - 58) % block_size != 0) return ProtoError::malformed;
    if (length > max_length_for(max_payload_)) return ProtoError::too_large;
    return ProtoError::ok;
}

void FrameReader::feed(std::span<const std::uint8_t> in) { in_ = in; }

// Makes buf_ able to hold n bytes from begin_, moving what it holds to the
// front first when that is enough.
void FrameReader::make_room(std::size_t n) {
    if (buf_.size() >= begin_ + n) return;
    if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (buf_.size() < n) buf_.resize(n);
}

// Copies from the input until buf_ holds n bytes from begin_; false when
// the input ran out first.
bool FrameReader::top_up(std::size_t n) {
    if (end_ - begin_ >= n) return true;
    make_room(n);
    const auto k = std::min(n - (end_ - begin_), in_.size());
    if (k > 0) std::memcpy(buf_.data() + end_, in_.data(), k);
    end_ += k;
    in_ = in_.subspan(k);
    return end_ - begin_ >= n;
}

// Frames come from two places: buf_ holds bytes that an earlier feed left
// (the start of a cut frame); in_ is the caller's memory.  A frame that lies
// whole in in_ is handed out in place; only a cut frame is copied, once.
FrameReader::Next FrameReader::next() {
    if (error_ != ProtoError::ok) return {Next::Kind::error, {}, error_};

    if (end_ > begin_) {  // finish what buf_ holds first
        if (!top_up(length_field_size)) return {Next::Kind::need_more, {}};
        const auto length = load_be32(buf_.data() + begin_);
        if (auto e = judge(length); e != ProtoError::ok) return fail(e);
        const auto total = length_field_size + length;
        if (!top_up(total)) return {Next::Kind::need_more, {}};
        auto frame = std::span<const std::uint8_t>(buf_).subspan(begin_, total);
        begin_ += total;
        return {Next::Kind::frame, frame};
    }

    if (in_.size() >= length_field_size) {
        const auto length = load_be32(in_.data());
        if (auto e = judge(length); e != ProtoError::ok) return fail(e);
        const auto total = length_field_size + length;
        if (in_.size() >= total) {
            auto frame = in_.first(total);
            in_ = in_.subspan(total);
            return {Next::Kind::frame, frame};
        }
    }
    retain();
    return {Next::Kind::need_more, {}};
}

FrameReader::Next FrameReader::fail(ProtoError e) {
    error_ = e;
    in_ = {};
    return {Next::Kind::error, {}, e};
}

void FrameReader::retain() {
    if (in_.empty()) return;
    if (begin_ == end_) begin_ = end_ = 0;
    const auto n = in_.size();
    make_room(end_ - begin_ + n);
    std::memcpy(buf_.data() + end_, in_.data(), n);
    end_ += n;
    in_ = {};
}

bool FrameReader::has_buffered() const { return end_ > begin_ || !in_.empty(); }

void FrameReader::shrink() {
    if (begin_ == end_) {
        begin_ = end_ = 0;
        if (buf_.size() > 4096) {
            buf_.clear();
            buf_.shrink_to_fit();
        }
    }
}

}  // namespace secmsg
