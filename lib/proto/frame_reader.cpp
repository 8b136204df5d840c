#include "proto/frame_reader.hpp"

#include "proto/bytes.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace secmsg {

namespace {
// The smallest buffer allocated: a few small frames, so that dribbled input
// does not reallocate for every byte.
constexpr std::size_t min_capacity = 256;
constexpr std::size_t idle_capacity = 4096;  // kept by shrink() when idle
constexpr std::size_t no_limit = std::numeric_limits<std::size_t>::max();
}  // namespace

FrameReader::FrameReader(std::size_t max_payload) : max_payload_(max_payload) {}

ProtoError FrameReader::judge(std::uint32_t length) const {
    if (length < min_length || (length - length_overhead) % block_size != 0)
        return ProtoError::malformed;
    if (length > max_length_for(max_payload_)) return ProtoError::too_large;
    return ProtoError::ok;
}

void FrameReader::feed(std::span<const std::uint8_t> in) { in_ = in; }

// Moves what buf_ holds into a new buffer of `cap` bytes (not zero-filled).
void FrameReader::reallocate(std::size_t cap) {
    const auto held = end_ - begin_;
    auto fresh = std::make_unique_for_overwrite<std::uint8_t[]>(cap);
    if (held > 0) std::memcpy(fresh.get(), buf_.get() + begin_, held);
    buf_ = std::move(fresh);
    cap_ = cap;
    begin_ = 0;
    end_ = held;
}

// Makes buf_ able to hold n bytes from begin_: moves what it holds to the
// front when that is enough, else grows it geometrically, to at most
// max(2 * n, min_capacity) and never past `limit` (>= n), the most the data
// at hand can need (the whole frame, once its length is known).
void FrameReader::make_room(std::size_t n, std::size_t limit) {
    if (cap_ - begin_ >= n) return;
    if (cap_ >= n) {
        std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
        return;
    }
    auto cap = std::max({n, 2 * cap_, min_capacity});
    reallocate(std::min(cap, std::max(n, limit)));
}

// Copies from the input until buf_ holds n bytes from begin_; false when
// the input ran out first.  Memory grows only with the bytes copied.
bool FrameReader::top_up(std::size_t n, std::size_t limit) {
    const auto held = end_ - begin_;
    if (held >= n) return true;
    const auto k = std::min(n - held, in_.size());
    make_room(held + k, limit);
    if (k > 0) std::memcpy(buf_.get() + end_, in_.data(), k);
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
        // Every valid frame has at least min_length bytes after the prefix.
        if (!top_up(length_field_size, length_field_size + min_length))
            return {Next::Kind::need_more, {}};
        const auto length = load_be32(buf_.get() + begin_);
        if (auto e = judge(length); e != ProtoError::ok) return fail(e);
        const auto total = length_field_size + length;
        if (!top_up(total, total)) return {Next::Kind::need_more, {}};
        auto frame = std::span<const std::uint8_t>(buf_.get() + begin_, total);
        begin_ += total;
        if (begin_ == end_) begin_ = end_ = 0;  // the frame's bytes stay where they are
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
    const auto need = end_ - begin_ + n;
    // Part of one frame: never more than that frame; several: geometric.
    const auto total = first_frame_total();
    make_room(need, total >= need ? total : no_limit);
    std::memcpy(buf_.get() + end_, in_.data(), n);
    end_ += n;
    in_ = {};
}

bool FrameReader::has_buffered() const { return end_ > begin_ || !in_.empty(); }

// The size of the first frame held (buf_, then in_), length field
// included; 0 when its length prefix is incomplete or invalid.
std::size_t FrameReader::first_frame_total() const {
    const auto held = end_ - begin_;
    if (held + in_.size() < length_field_size) return 0;
    std::uint8_t head[length_field_size];  // may straddle buf_ and in_
    for (std::size_t i = 0; i < length_field_size; ++i)
        head[i] = i < held ? buf_[begin_ + i] : in_[i - held];
    const auto length = load_be32(head);
    if (judge(length) != ProtoError::ok) return 0;
    return length_field_size + length;
}

bool FrameReader::mid_frame() const {
    if (error_ != ProtoError::ok) return false;
    const auto all = end_ - begin_ + in_.size();
    if (all == 0) return false;
    if (all < length_field_size) return true;
    const auto total = first_frame_total();
    return total != 0 && all < total;  // an invalid length awaits nothing: next() fails
}

void FrameReader::shrink() {
    const auto held = end_ - begin_;
    if (held == 0) {
        begin_ = end_ = 0;
        if (cap_ > idle_capacity) {
            buf_.reset();
            cap_ = 0;
        }
        return;
    }
    if (cap_ > idle_capacity && cap_ / 4 > held) reallocate(std::max(2 * held, min_capacity));
}

}  // namespace secmsg
