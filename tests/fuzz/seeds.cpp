// Generated seeds (seeds.hpp): each names what it exercises.
#include "seeds.hpp"

#include "fuzz.hpp"
#include "io/proxy_header.hpp"
#include "proto/bytes.hpp"
#include "proto/payload.hpp"

#include <string>

namespace secmsg::fuzz {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes text(const std::string& s) { return {s.begin(), s.end()}; }

// A sealed-mode record: ctl, length byte, plaintext (scale x1).
void record(Bytes& out, std::uint8_t ctl, const Bytes& p) {
    out.push_back(ctl);
    out.push_back(static_cast<std::uint8_t>(p.size()));
    out.insert(out.end(), p.begin(),
               p.begin() + static_cast<long>(std::min<std::size_t>(p.size(), 255)));
}

Bytes ack_payload(std::uint64_t seq, const Bytes& msg, const std::string& note) {
    Bytes p;
    build_ack(seq, sha256(msg), note, p);
    return p;
}

Bytes error_payload(std::uint16_t code, std::uint64_t ref, const std::string& reason) {
    Bytes p;
    build_error(code, ref, reason, p);
    return p;
}

Bytes message(std::uint64_t i) { return text("message " + std::to_string(i)); }

// A PROXY protocol v2 header: signature, version/command, family/transport,
// length, then `block`.
Bytes proxy_header(std::uint8_t ver_cmd, std::uint8_t family, const Bytes& block) {
    Bytes h(proxy::signature.begin(), proxy::signature.end());
    h.push_back(ver_cmd);
    h.push_back(family);
    append_be(h, block.size(), 2);
    h.insert(h.end(), block.begin(), block.end());
    return h;
}

Bytes operator+(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

}  // namespace

std::vector<Seed> frames_seeds() {
    std::vector<Seed> s;
    const auto raw = [&](const std::string& name, std::uint8_t mode, auto&& build) {
        Bytes b{mode};
        build(b);
        s.emplace_back("gen-raw-" + name, std::move(b));
    };
    raw("msg-hello", 0x3f, [](Bytes& b) { seal(FrameType::msg, 0, text("hello"), b); });
    raw("msgs-3-chunk-1", 0x00, [](Bytes& b) {
        for (std::uint64_t i = 0; i < 3; ++i) seal(FrameType::msg, i, message(i), b);
    });
    raw("msg-empty-chunk-7", 0x06, [](Bytes& b) { seal(FrameType::msg, 0, {}, b); });
    raw("msg-16-bytes", 0x3f, [](Bytes& b) { seal(FrameType::msg, 0, Bytes(16, 'x'), b); });
    raw("msg-at-limit-100", 0x7f, [](Bytes& b) { seal(FrameType::msg, 0, Bytes(100, 'y'), b); });
    raw("msg-over-limit-101", 0x7f, [](Bytes& b) { seal(FrameType::msg, 0, Bytes(101, 'y'), b); });
    raw("msg-too-large-112", 0x7f, [](Bytes& b) { seal(FrameType::msg, 0, Bytes(112, 'y'), b); });
    raw("msg-seq-1", 0x3f, [](Bytes& b) { seal(FrameType::msg, 1, text("late"), b); });
    raw("msg-replayed", 0x3f, [](Bytes& b) {
        seal(FrameType::msg, 0, text("once"), b);
        seal(FrameType::msg, 0, text("once"), b);
    });
    raw("msg-bad-tag", 0x3f, [](Bytes& b) {
        seal(FrameType::msg, 0, text("hello"), b);
        b.back() ^= 1;
    });
    raw("msg-truncated", 0x3f, [](Bytes& b) {
        seal(FrameType::msg, 0, text("hello"), b);
        b.erase(b.end() - 5, b.end());
    });
    raw("length-73", 0x3f, [](Bytes& b) {
        b.insert(b.end(), {0, 0, 0, 73});
        b.resize(78, 0);
    });
    raw("length-4g", 0x3f, [](Bytes& b) { b.insert(b.end(), {0xff, 0xff, 0xff, 0xff}); });
    raw("ack-and-error", 0x09, [](Bytes& b) {
        seal(FrameType::ack, 0, ack_payload(0, message(0), "recorded"), b);
        seal(FrameType::error, 1, error_payload(6, 1, "journal unavailable"), b);
        seal(FrameType::error, 2, error_payload(7, no_seq, "shutting down"), b);
    });
    raw("ack-short", 0x3f, [](Bytes& b) { seal(FrameType::ack, 0, Bytes(39, 0), b); });
    raw("error-short", 0x3f, [](Bytes& b) { seal(FrameType::error, 0, Bytes(9, 0), b); });

    const auto sealed = [&](const std::string& name, std::uint8_t mode, auto&& build) {
        Bytes b{static_cast<std::uint8_t>(0x80 | mode)};
        build(b);
        s.emplace_back("gen-sealed-" + name, std::move(b));
    };
    sealed("msgs", 0x3f, [](Bytes& b) {
        record(b, 0x00, text("hello"));
        record(b, 0x00, text("world"));
        record(b, 0x00, {});
    });
    sealed("msg-seq-skip", 0x05, [](Bytes& b) {
        record(b, 0x00, text("first"));
        record(b, 0x04, text("skipped one"));
    });
    sealed("msg-seq-back", 0x05, [](Bytes& b) {
        record(b, 0x00, text("first"));
        record(b, 0x08, text("replayed"));
    });
    sealed("ack-error", 0x3f, [](Bytes& b) {
        record(b, 0x01, ack_payload(0, message(0), "ok"));
        record(b, 0x02, error_payload(3, 5, "unexpected sequence number"));
    });
    sealed("type-raw-4", 0x3f, [](Bytes& b) {
        b.push_back(0x03);
        b.push_back(4);
        b.push_back(3);
        b.insert(b.end(), {'a', 'b', 'c'});
    });
    sealed("forged-version-2", 0x3f, [](Bytes& b) {
        b.push_back(0x30);
        b.push_back(2);
        Bytes blocks(16, 0x10);
        b.push_back(16);
        b.insert(b.end(), blocks.begin(), blocks.end());
    });
    sealed("forged-padding", 0x3f, [](Bytes& b) {
        Bytes good(16, 'z');
        good[15] = 1;  // one byte of padding: 15 bytes of plaintext
        record(b, 0x10, good);
        Bytes bad(32, 'z');
        bad[31] = 2;  // claims two, the byte before is not 2
        record(b, 0x10, bad);
    });
    sealed("forged-padding-zero", 0x3f, [](Bytes& b) { record(b, 0x10, Bytes(16, 0)); });
    sealed("forged-padding-17", 0x3f, [](Bytes& b) { record(b, 0x10, Bytes(32, 17)); });
    sealed("limit-100", 0x7f, [](Bytes& b) {
        record(b, 0x00, Bytes(100, 'q'));
        record(b, 0x00, Bytes(101, 'q'));
    });
    sealed("scaled-1k", 0x3f, [](Bytes& b) {
        b.push_back(0x40);  // length x16
        b.push_back(64);    // 1024 bytes
        b.insert(b.end(), 1024, 'k');
    });
    return s;
}

std::vector<Seed> client_seeds() {
    std::vector<Seed> s;
    // shape: window - 1 in bits 0-2, MSGs to send in bits 3-6.
    const auto shape = [](int window, int total) {
        return static_cast<std::uint8_t>((window - 1) | total << 3);
    };
    const auto raw = [&](const std::string& name, std::uint8_t mode, std::uint8_t sh,
                         auto&& build) {
        Bytes b{mode, sh};
        build(b);
        s.emplace_back("gen-raw-" + name, std::move(b));
    };
    raw("acks-3", 0x3f, shape(4, 3), [](Bytes& b) {
        for (std::uint64_t i = 0; i < 3; ++i)
            seal(FrameType::ack, i, ack_payload(i, message(i), "recorded"), b);
    });
    raw("acks-window-1-chunk-3", 0x02, shape(1, 3), [](Bytes& b) {
        for (std::uint64_t i = 0; i < 3; ++i)
            seal(FrameType::ack, i, ack_payload(i, message(i), ""), b);
    });
    raw("not-recorded-then-ack", 0x3f, shape(4, 2), [](Bytes& b) {
        seal(FrameType::error, 0, error_payload(6, 0, "journal unavailable"), b);
        seal(FrameType::ack, 1, ack_payload(1, message(1), "recorded"), b);
    });
    raw("shutting-down", 0x3f, shape(4, 2), [](Bytes& b) {
        seal(FrameType::ack, 0, ack_payload(0, message(0), "recorded"), b);
        seal(FrameType::error, 1, error_payload(7, no_seq, "server shutting down"), b);
    });
    raw("ack-wrong-digest", 0x3f, shape(2, 1), [](Bytes& b) {
        seal(FrameType::ack, 0, ack_payload(0, text("not what was sent"), ""), b);
    });
    raw("ack-wrong-seq", 0x3f, shape(2, 2),
        [](Bytes& b) { seal(FrameType::ack, 0, ack_payload(1, message(1), ""), b); });
    raw("ack-unsent", 0x3f, shape(2, 0),
        [](Bytes& b) { seal(FrameType::ack, 0, ack_payload(0, message(0), ""), b); });
    raw("msg-from-server", 0x3f, shape(2, 1),
        [](Bytes& b) { seal(FrameType::msg, 0, text("?"), b); });

    // Sealed: kind byte, then a record.
    const auto sealed = [&](const std::string& name, std::uint8_t mode, std::uint8_t sh,
                            auto&& build) {
        Bytes b{static_cast<std::uint8_t>(0x80 | mode), sh};
        build(b);
        s.emplace_back("gen-sealed-" + name, std::move(b));
    };
    sealed("acks-4", 0x3f, shape(8, 4), [](Bytes& b) {
        for (int i = 0; i < 4; ++i) {
            b.push_back(0);  // kind 0: the right ACK
            record(b, 0x01, text("recorded"));
        }
    });
    sealed("acks-window-2-chunk-5", 0x04, shape(2, 6), [](Bytes& b) {
        for (int i = 0; i < 6; ++i) {
            b.push_back(0);
            record(b, 0x01, {});
        }
    });
    sealed("not-recorded", 0x3f, shape(4, 2), [](Bytes& b) {
        b.insert(b.end(), {2, 0, 6});  // kind 2, code 6
        record(b, 0x02, text("journal unavailable"));
        b.push_back(0);
        record(b, 0x01, text("recorded"));
    });
    sealed("error-ref-raw", 0x3f, shape(4, 2), [](Bytes& b) {
        b.insert(b.end(), {3, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1});  // kind 3, code 5, ref 1
        record(b, 0x02, text("too large"));
    });
    sealed("ack-raw-payload", 0x3f, shape(4, 2), [](Bytes& b) {
        b.push_back(1);
        record(b, 0x01, Bytes(40, 0));
    });
    sealed("ack-seq-skew", 0x3f, shape(4, 2), [](Bytes& b) {
        b.push_back(0);
        record(b, 0x05, {});  // ACK, seq + 1
    });
    return s;
}

std::vector<Seed> proxy_seeds() {
    std::vector<Seed> s;
    const Bytes v4 = {192, 0, 2, 7, 198, 51, 100, 1, 0x12, 0x67, 0x20, 0xfb};
    Bytes v6(36, 0);
    v6[0] = 0x20, v6[1] = 0x01, v6[2] = 0x0d, v6[3] = 0xb8, v6[15] = 7;
    v6[16] = 0x20, v6[17] = 0x01, v6[18] = 0x0d, v6[19] = 0xb8, v6[31] = 1;
    v6[32] = 0x12, v6[33] = 0x67, v6[34] = 0x20, v6[35] = 0xfb;
    const Bytes tls = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};  // what follows: a ClientHello
    const Bytes tlvs = {0x01, 0, 2, 'h', '2', 0x04, 0, 0, 0x03, 0, 4, 1, 2, 3, 4, 0x05, 0, 1, 'u'};
    const auto add = [&](const std::string& name, std::uint8_t piece, const Bytes& b) {
        s.emplace_back("gen-" + name, Bytes{piece} + b);
    };
    add("v4-whole", 63, proxy_header(0x21, 0x11, v4) + tls);
    add("v4-byte-by-byte", 0, proxy_header(0x21, 0x11, v4));
    add("v6-pieces-7", 6, proxy_header(0x21, 0x21, v6) + tls);
    add("v4-tlvs", 63, proxy_header(0x21, 0x11, v4 + tlvs));
    add("v6-tlvs-pieces-5", 4, proxy_header(0x21, 0x21, v6 + tlvs) + tls);
    add("local", 63, proxy_header(0x20, 0x00, {}) + tls);
    add("local-with-v4", 2, proxy_header(0x20, 0x11, v4));
    add("unix", 63, proxy_header(0x21, 0x31, Bytes(216, 0)));
    add("udp", 63, proxy_header(0x21, 0x12, v4));
    add("unspec", 63, proxy_header(0x21, 0x00, {}));
    add("version-1-nibble", 63, proxy_header(0x11, 0x11, v4));
    add("short-v6", 63, proxy_header(0x21, 0x21, v4));
    add("tlv-past-end", 63, proxy_header(0x21, 0x11, v4 + Bytes{0x01, 0, 9, 'x'}));
    add("tlv-head-cut", 63, proxy_header(0x21, 0x11, v4 + Bytes{0x01, 0}));
    Bytes longest = v4 + Bytes{0x04, 0x03, 0xf1};
    longest.resize(proxy::max_length, 0xaa);
    add("longest", 63, proxy_header(0x21, 0x11, longest));
    Bytes too_long = longest;
    too_long.push_back(0);
    add("too-long", 63, proxy_header(0x21, 0x11, too_long));
    add("tls-only", 63, tls);
    add("version-1-text", 63, text("PROXY TCP4 192.0.2.7 198.51.100.1 4711 8443\r\n"));
    return s;
}

}  // namespace secmsg::fuzz
