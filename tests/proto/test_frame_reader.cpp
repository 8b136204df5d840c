// The incremental frame reader: any chunking, every length rejection, and
// no buffering of a body whose length prefix is already wrong.
#include "proto/bytes.hpp"
#include "proto/frame_reader.hpp"
#include "proto/seal.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

using namespace secmsg;

namespace {

// n frames of growing sizes, concatenated.
std::vector<std::uint8_t> stream_of(int n, std::vector<std::vector<std::uint8_t>>& frames) {
    static const std::vector<std::uint8_t> psk(32, 7);
    static FrameKeys keys(psk);
    std::vector<std::uint8_t> all;
    for (int i = 0; i < n; ++i) {
        std::vector<std::uint8_t> f;
        seal_frame(keys, FrameType::msg, static_cast<std::uint64_t>(i),
                   std::vector<std::uint8_t>(static_cast<std::size_t>(i * 13 % 300),
                                             static_cast<std::uint8_t>(i)),
                   f);
        frames.push_back(f);
        all.insert(all.end(), f.begin(), f.end());
    }
    return all;
}

// Feeds `all` in the given chunk sizes; returns the frames read.  After
// every chunk the reader's memory is bounded by what it holds (twice that,
// or 256 bytes) or by the largest frame so far (its buffer, reused).
std::vector<std::vector<std::uint8_t>> read_chunked(const std::vector<std::uint8_t>& all,
                                                    const std::vector<std::size_t>& chunks,
                                                    std::size_t max_payload = default_max_payload) {
    FrameReader r(max_payload);
    std::size_t largest = 0;
    std::vector<std::vector<std::uint8_t>> got;
    std::size_t at = 0;
    for (auto c : chunks) {
        // A fresh copy per chunk, overwritten afterwards: the reader must not
        // keep pointers into memory the caller reuses.
        std::vector<std::uint8_t> chunk(all.begin() + static_cast<long>(at),
                                        all.begin() + static_cast<long>(at + c));
        at += c;
        r.feed(chunk);
        for (;;) {
            auto n = r.next();
            if (n.kind == FrameReader::Next::Kind::need_more) break;
            REQUIRE(n.kind == FrameReader::Next::Kind::frame);
            got.emplace_back(n.frame.begin(), n.frame.end());
            largest = std::max(largest, n.frame.size());
        }
        REQUIRE(r.capacity() <= std::max({2 * r.buffered(), std::size_t{256}, largest}));
        std::fill(chunk.begin(), chunk.end(), 0xEE);
    }
    CHECK_FALSE(r.has_buffered());
    return got;
}

}  // namespace

TEST_CASE("frames fed one byte at a time, all at once, and in random chunkings") {
    std::vector<std::vector<std::uint8_t>> frames;
    const auto all = stream_of(40, frames);

    CHECK(read_chunked(all, {all.size()}) == frames);
    CHECK(read_chunked(all, std::vector<std::size_t>(all.size(), 1)) == frames);

    std::mt19937 rng(12345);
    for (int round = 0; round < 200; ++round) {
        std::vector<std::size_t> chunks;
        for (std::size_t left = all.size(); left > 0;) {
            auto c = std::min<std::size_t>(left, 1 + rng() % (round % 2 ? 7 : 700));
            chunks.push_back(c);
            left -= c;
        }
        CHECK(read_chunked(all, chunks) == frames);
    }
}

TEST_CASE("whole frames in one feed are handed out in place, without a copy") {
    std::vector<std::vector<std::uint8_t>> frames;
    const auto all = stream_of(3, frames);
    FrameReader r;
    r.feed(all);
    auto n = r.next();
    REQUIRE(n.kind == FrameReader::Next::Kind::frame);
    CHECK(n.frame.data() == all.data());
}

TEST_CASE("retain keeps the unread rest when the caller stops early") {
    std::vector<std::vector<std::uint8_t>> frames;
    auto all = stream_of(5, frames);
    FrameReader r;
    r.feed(all);
    REQUIRE(r.next().kind == FrameReader::Next::Kind::frame);
    r.retain();  // the caller stops (backpressure) and reuses its buffer
    std::fill(all.begin(), all.end(), 0);
    CHECK(r.has_buffered());
    for (int i = 1; i < 5; ++i) {
        auto n = r.next();
        REQUIRE(n.kind == FrameReader::Next::Kind::frame);
        CHECK(std::vector<std::uint8_t>(n.frame.begin(), n.frame.end()) ==
              frames[static_cast<std::size_t>(i)]);
    }
    CHECK(r.next().kind == FrameReader::Next::Kind::need_more);
    CHECK_FALSE(r.has_buffered());
}

TEST_CASE("every bad length class is rejected from the four length bytes alone") {
    struct Case {
        std::uint32_t length;
        std::size_t max_payload;
        ProtoError expect;
    };
    const Case cases[] = {
        {0, 65536, ProtoError::malformed},
        {73, 65536, ProtoError::malformed},      // below the minimum
        {74 + 1, 65536, ProtoError::malformed},  // not 58 + 16k
        {74 + 15, 65536, ProtoError::malformed},
        {58, 65536, ProtoError::malformed},  // 58 + 16 * 0: k must be >= 1
        {0xFFFFFFFFu, 65536, ProtoError::malformed},
        {58 + 16 * 0x0FFFFFF0u, 65536, ProtoError::too_large},  // about 4 GiB
        {static_cast<std::uint32_t>(max_length_for(65536) + 16), 65536, ProtoError::too_large},
        {static_cast<std::uint32_t>(max_length_for(100) + 16), 100, ProtoError::too_large},
    };
    for (const auto& c : cases) {
        CAPTURE(c.length);
        FrameReader r(c.max_payload);
        std::uint8_t head[4];
        store_be(head, c.length, 4);
        // Byte by byte: the verdict comes with the fourth byte, before any body.
        for (int i = 0; i < 3; ++i) {
            r.feed({head + i, 1});
            CHECK(r.next().kind == FrameReader::Next::Kind::need_more);
        }
        r.feed({head + 3, 1});
        auto n = r.next();
        CHECK(n.kind == FrameReader::Next::Kind::error);
        CHECK(n.error == c.expect);
        CHECK(r.next().kind == FrameReader::Next::Kind::error);  // stays broken
    }
    // The largest lengths that are allowed are accepted.
    for (std::size_t maxp : {0u, 15u, 16u, 100u, 65536u}) {
        FrameReader r(maxp);
        std::uint8_t head[4];
        store_be(head, max_length_for(maxp), 4);
        r.feed({head, 4});
        CHECK(r.next().kind == FrameReader::Next::Kind::need_more);
    }
}

TEST_CASE("a valid frame after bytes that announce too much is never waited for") {
    FrameReader r(65536);
    std::vector<std::uint8_t> head(4);
    store_be(head.data(), 58 + 16 * 0x00FFFFFFu, 4);
    r.feed(head);
    CHECK(r.next().error == ProtoError::too_large);
}

namespace {

// One sealed frame with a payload of n bytes.
std::vector<std::uint8_t> frame_of_size(std::size_t n) {
    static const std::vector<std::uint8_t> psk(32, 9);
    static FrameKeys keys(psk);
    std::vector<std::uint8_t> payload(n);
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<std::uint8_t>(i * 31 + 7);
    std::vector<std::uint8_t> f;
    seal_frame(keys, FrameType::msg, 0, payload, f);
    return f;
}

}  // namespace

TEST_CASE("a maximum length prefix and one byte cost a few hundred bytes, not the frame") {
    for (std::size_t maxp : {default_max_payload, max_max_payload}) {
        CAPTURE(maxp);
        FrameReader r(maxp);
        CHECK_FALSE(r.mid_frame());
        std::uint8_t head[5] = {};
        store_be(head, max_length_for(maxp), 4);
        r.feed({head, 4});
        REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
        CHECK(r.mid_frame());
        r.feed({head + 4, 1});  // a later TLS record
        REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
        CHECK(r.buffered() == 5);
        CHECK(r.capacity() <= 256);
        CHECK(r.mid_frame());
        // Another 1000 bytes: the buffer follows them (at most twice what is held).
        std::vector<std::uint8_t> more(1000, 0x55);
        r.feed(more);
        REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
        CHECK(r.buffered() == 1005);
        CHECK(r.capacity() <= 2 * 1005);
        CHECK(r.mid_frame());
    }
}

TEST_CASE(
    "a large frame dribbled one byte at a time: memory follows the bytes, the frame is whole") {
    const auto f = frame_of_size(default_max_payload);
    FrameReader r;
    std::size_t reallocations = 0, last_cap = 0;
    for (std::size_t i = 0; i + 1 < f.size(); ++i) {
        std::uint8_t byte = f[i];
        r.feed({&byte, 1});
        REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
        REQUIRE(r.buffered() == i + 1);
        REQUIRE(r.capacity() <= std::max<std::size_t>(2 * (i + 1), 256));
        REQUIRE(r.mid_frame());
        if (r.capacity() != last_cap) ++reallocations;
        last_cap = r.capacity();
    }
    CHECK(reallocations < 20);  // geometric: O(n) bytes copied in all
    std::uint8_t last = f.back();
    r.feed({&last, 1});
    auto n = r.next();
    REQUIRE(n.kind == FrameReader::Next::Kind::frame);
    CHECK(std::vector<std::uint8_t>(n.frame.begin(), n.frame.end()) == f);
    CHECK(r.capacity() <= f.size());  // never past the frame
    CHECK_FALSE(r.mid_frame());
    CHECK(r.next().kind == FrameReader::Next::Kind::need_more);
    CHECK_FALSE(r.has_buffered());
    r.shrink();
    CHECK(r.capacity() == 0);
}

TEST_CASE("a 16 MiB frame in TLS-record-sized pieces reassembles, then a small one") {
    const auto big = frame_of_size(max_max_payload);
    const auto small = frame_of_size(10);
    std::vector<std::uint8_t> all = big;
    all.insert(all.end(), small.begin(), small.end());
    std::vector<std::size_t> chunks(all.size() / 16384, 16384);
    chunks.push_back(all.size() % 16384);
    auto got = read_chunked(all, chunks, max_max_payload);
    REQUIRE(got.size() == 2);
    CHECK(got[0] == big);
    CHECK(got[1] == small);
}

TEST_CASE("mid_frame: from a frame's first byte to its last; shrink keeps a partial frame") {
    const auto f = frame_of_size(20000);
    FrameReader r;
    CHECK_FALSE(r.mid_frame());
    r.feed({f.data(), 2});  // not even the whole length prefix
    REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
    CHECK(r.mid_frame());
    r.feed({f.data() + 2, f.size() - 3});
    REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
    CHECK(r.mid_frame());
    CHECK(r.buffered() == f.size() - 1);
    // shrink() never drops held bytes; a buffer much larger than them goes.
    const auto cap = r.capacity();
    r.shrink();
    CHECK(r.capacity() == cap);
    r.feed({&f.back(), 1});
    auto n = r.next();
    REQUIRE(n.kind == FrameReader::Next::Kind::frame);
    CHECK(std::vector<std::uint8_t>(n.frame.begin(), n.frame.end()) == f);
    CHECK_FALSE(r.mid_frame());

    // A large buffer holding a small partial frame shrinks to fit it.
    r.feed({f.data(), 100});
    REQUIRE(r.next().kind == FrameReader::Next::Kind::need_more);
    CHECK(r.capacity() >= f.size() - 1);  // the buffer is reused
    r.shrink();
    CHECK(r.capacity() <= 256);
    r.feed({f.data() + 100, f.size() - 100});
    n = r.next();
    REQUIRE(n.kind == FrameReader::Next::Kind::frame);
    CHECK(std::vector<std::uint8_t>(n.frame.begin(), n.frame.end()) == f);

    // Whole frames waiting (retained under backpressure) are not "mid frame";
    // a broken stream is not either.
    std::vector<std::uint8_t> two = f;
    two.insert(two.end(), f.begin(), f.end());
    r.feed(two);
    REQUIRE(r.next().kind == FrameReader::Next::Kind::frame);
    r.retain();
    CHECK(r.has_buffered());
    CHECK_FALSE(r.mid_frame());
    REQUIRE(r.next().kind == FrameReader::Next::Kind::frame);
    std::uint8_t bad[4] = {0, 0, 0, 1};
    r.feed(bad);
    CHECK(r.next().kind == FrameReader::Next::Kind::error);
    CHECK_FALSE(r.mid_frame());
}
