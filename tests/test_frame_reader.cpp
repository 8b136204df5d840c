// The incremental frame reader: any chunking, every length rejection, and
// no buffering of a body whose length prefix is already wrong.
#include "bytes.hpp"
#include "frame_reader.hpp"
#include "seal.hpp"

#include <doctest/doctest.h>

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
                   std::vector<std::uint8_t>(static_cast<std::size_t>(i * 13 % 300), static_cast<std::uint8_t>(i)), f);
        frames.push_back(f);
        all.insert(all.end(), f.begin(), f.end());
    }
    return all;
}

// Feeds `all` in the given chunk sizes; returns the frames read.
std::vector<std::vector<std::uint8_t>> read_chunked(const std::vector<std::uint8_t>& all,
                                                    const std::vector<std::size_t>& chunks) {
    FrameReader r;
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
        }
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
        CHECK(std::vector<std::uint8_t>(n.frame.begin(), n.frame.end()) == frames[static_cast<std::size_t>(i)]);
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
        {58, 65536, ProtoError::malformed},      // 58 + 16 * 0: k must be >= 1
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
