// ServerSession against the client side of the same library (ClientSession
// seals the MSGs; a client Channel opens the answers): real sealing, real
// tags, and a table of frames a server must refuse.
#include "proto/client_session.hpp"
#include "proto/server_session.hpp"

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

using secmsg::ProtoError;
using secmsg::ServerSession;
using Kind = secmsg::ServerSession::Next::Kind;

namespace {

std::shared_ptr<const secmsg::KeyRing> ring_of(std::initializer_list<std::uint8_t> fills) {
    std::vector<secmsg::SecretBytes> psks;
    for (auto f : fills) {
        secmsg::SecretBytes k(32);
        std::fill(k.data(), k.data() + k.size(), f);
        psks.push_back(std::move(k));
    }
    return std::make_shared<const secmsg::KeyRing>(psks);
}

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text(std::span<const std::uint8_t> b) { return {b.begin(), b.end()}; }

// One answer as the client reads it.
struct Answer {
    secmsg::FrameType type;
    std::uint64_t seq;       // the acknowledged seq, or the ERROR's ref_seq
    std::uint16_t code = 0;  // ERROR
    std::string text;        // note or reason
};

// Opens every frame the server wrote, as the client would.
std::vector<Answer> answers(std::shared_ptr<const secmsg::FrameKeys> keys,
                            const std::vector<std::uint8_t>& out) {
    secmsg::Channel client(std::move(keys), secmsg::Role::client);
    secmsg::FrameReader reader;
    std::vector<std::uint8_t> scratch;
    std::vector<Answer> got;
    reader.feed(out);
    for (auto n = reader.next(); n.kind == secmsg::FrameReader::Next::Kind::frame;
         n = reader.next()) {
        const auto o = client.open(n.frame, scratch);
        REQUIRE(o.error == ProtoError::ok);
        if (o.type == secmsg::FrameType::ack) {
            const auto a = secmsg::parse_ack(o.plaintext);
            REQUIRE(a);
            got.push_back({o.type, a->acked_seq, 0, std::string(a->note)});
        } else {
            const auto e = secmsg::parse_error(o.plaintext);
            REQUIRE(e);
            got.push_back({o.type, e->ref_seq, e->code, std::string(e->reason)});
        }
    }
    return got;
}

// Takes every message the session gives for `wire`, fed in pieces of
// `piece` bytes (0: whole); stops at a failure.
struct Taken {
    std::vector<std::string> messages;
    std::vector<std::uint64_t> seqs;
    ProtoError error = ProtoError::ok;
};
Taken take(ServerSession& s, std::span<const std::uint8_t> wire, std::vector<std::uint8_t>& out,
           std::size_t piece = 0) {
    Taken t;
    if (piece == 0) piece = wire.size() ? wire.size() : 1;
    for (std::size_t at = 0; at < wire.size() && t.error == ProtoError::ok; at += piece) {
        s.feed(wire.subspan(at, std::min(piece, wire.size() - at)));
        for (auto n = s.next(out); n.kind != Kind::need_more; n = s.next(out)) {
            if (n.kind == Kind::failed) {
                t.error = n.error;
                break;
            }
            CHECK(n.digest == secmsg::sha256(n.message));
            t.messages.push_back(text(n.message));
            t.seqs.push_back(n.seq);
        }
    }
    return t;
}

}  // namespace

TEST_CASE("messages come out in order with their digests, fed whole or byte by byte; ACKs match") {
    const auto ring = ring_of({7});
    for (const std::size_t piece : {std::size_t{0}, std::size_t{1}, std::size_t{33}}) {
        CAPTURE(piece);
        secmsg::ServerScratch scratch;
        ServerSession s(ring, secmsg::default_max_payload, scratch);
        secmsg::ClientSession c((*ring)[0].keys);
        std::vector<std::uint8_t> wire, out;
        const std::vector<std::string> sent{"first", "", std::string(5000, 'x')};
        for (const auto& m : sent) c.send(bytes(m), wire);
        CHECK_FALSE(s.authenticated());
        const Taken t = take(s, wire, out, piece);
        CHECK(t.error == ProtoError::ok);
        CHECK(t.messages == sent);
        CHECK(t.seqs == std::vector<std::uint64_t>{0, 1, 2});
        CHECK(s.authenticated());
        CHECK(s.frames_in() == 3);
        CHECK_FALSE(s.has_buffered());
        CHECK(out.empty());  // nothing is said before the caller answers

        for (std::uint64_t i = 0; i < sent.size(); ++i)
            s.acknowledge(i, secmsg::sha256(bytes(sent[i])), "recorded " + std::to_string(i), out);
        CHECK(s.frames_out() == 3);
        std::vector<secmsg::ClientSession::Event> ev;
        c.receive(out, ev);
        REQUIRE(ev.size() == 3);
        for (std::size_t i = 0; i < 3; ++i) {
            CHECK(ev[i].kind == secmsg::ClientSession::Event::Kind::acked);
            CHECK(ev[i].text == "recorded " + std::to_string(i));
        }
    }
}

TEST_CASE("a frame the server must refuse ends the session with its ERROR already sealed") {
    const auto ring = ring_of({3});
    const auto keys = (*ring)[0].keys;
    const auto other = (*ring_of({4}))[0].keys;

    struct Row {
        const char* what;
        std::size_t max_payload;
        std::vector<std::uint8_t> wire;  // after one good MSG "ok" (seq 0)
        ProtoError error;
        std::uint64_t ref_seq;
        std::size_t good;  // messages that come out first
    };
    std::vector<std::uint8_t> good;
    secmsg::seal_frame(*keys, secmsg::FrameType::msg, 0, bytes("ok"), good);
    const auto after_good = [&](std::vector<std::uint8_t> rest) {
        std::vector<std::uint8_t> w = good;
        w.insert(w.end(), rest.begin(), rest.end());
        return w;
    };
    const auto sealed = [](const secmsg::FrameKeys& k, secmsg::FrameType type, std::uint64_t seq,
                           std::string_view m) {
        std::vector<std::uint8_t> w;
        secmsg::seal_frame(k, type, seq, bytes(m), w);
        return w;
    };
    const std::vector<Row> rows{
        {"the first frame under an unknown key", secmsg::default_max_payload,
         sealed(*other, secmsg::FrameType::msg, 0, "hello"), ProtoError::auth, secmsg::no_seq, 0},
        {"a later frame under another key", secmsg::default_max_payload,
         after_good(sealed(*other, secmsg::FrameType::msg, 1, "hello")), ProtoError::auth,
         secmsg::no_seq, 1},
        {"a length below the smallest frame", secmsg::default_max_payload,
         after_good({0, 0, 0, 10, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1}), ProtoError::malformed,
         secmsg::no_seq, 1},
        {"a message above max_payload", 100,
         after_good(sealed(*keys, secmsg::FrameType::msg, 1, std::string(200, 'y'))),
         ProtoError::too_large, secmsg::no_seq, 1},
        {"the same MSG again (replay)", secmsg::default_max_payload, after_good(good),
         ProtoError::sequence, 0, 1},
        {"a seq skipped", secmsg::default_max_payload,
         after_good(sealed(*keys, secmsg::FrameType::msg, 2, "two")), ProtoError::sequence, 2, 1},
        {"an ACK from the client", secmsg::default_max_payload,
         after_good(sealed(*keys, secmsg::FrameType::ack, 1, std::string(40, 'a'))),
         ProtoError::version, 1, 1},
    };
    for (const auto& row : rows) {
        CAPTURE(row.what);
        secmsg::ServerScratch scratch;
        ServerSession s(ring, row.max_payload, scratch);
        std::vector<std::uint8_t> out;
        const Taken t = take(s, row.wire, out);
        CHECK(t.messages.size() == row.good);
        CHECK(t.error == row.error);
        CHECK(s.ended());
        CHECK(s.next(out).kind == Kind::need_more);  // nothing more, and nothing more sealed
        // The one answer is the ERROR; under the key the client uses (the
        // first, when no frame proved one).
        const auto got = answers(keys, out);
        REQUIRE(got.size() == 1);
        CHECK(got[0].type == secmsg::FrameType::error);
        CHECK(got[0].code == static_cast<std::uint16_t>(row.error));
        CHECK(got[0].seq == row.ref_seq);
        CHECK(got[0].text == std::string(secmsg::describe(row.error)));
    }
}

TEST_CASE("not recorded and shutting down are sealed as ERROR 6 and 7") {
    const auto ring = ring_of({5});
    secmsg::ServerScratch scratch;
    ServerSession s(ring, secmsg::default_max_payload, scratch);
    secmsg::ClientSession c((*ring)[0].keys);
    std::vector<std::uint8_t> wire, out;
    c.send(bytes("a"), wire);
    c.send(bytes("b"), wire);
    const Taken t = take(s, wire, out);
    REQUIRE(t.messages.size() == 2);
    s.not_recorded(0, "journal full; may be resent", out);
    s.acknowledge(1, secmsg::sha256(bytes("b")), "", out);
    s.shutting_down(out);
    const auto got = answers((*ring)[0].keys, out);
    REQUIRE(got.size() == 3);
    CHECK((got[0].code == 6 && got[0].seq == 0 && got[0].text == "journal full; may be resent"));
    CHECK((got[1].type == secmsg::FrameType::ack && got[1].seq == 1));
    CHECK((got[2].code == 7 && got[2].seq == secmsg::no_seq));
    CHECK(s.frames_out() == 3);
}

TEST_CASE("a key ring: the first frame's tag picks the key, which then serves the connection") {
    const auto ring = ring_of({1, 2, 3});
    secmsg::ServerScratch scratch;
    ServerSession s(ring, secmsg::default_max_payload, scratch);
    CHECK(s.key_fingerprint().empty());
    secmsg::ClientSession c((*ring)[2].keys);
    std::vector<std::uint8_t> wire, out;
    c.send(bytes("x"), wire);
    c.send(bytes("y"), wire);
    CHECK(take(s, wire, out).messages == std::vector<std::string>{"x", "y"});
    CHECK(s.key_fingerprint() == (*ring)[2].fingerprint);
    s.acknowledge(0, secmsg::sha256(bytes("x")), "", out);
    CHECK(answers((*ring)[2].keys, out).size() == 1);  // sealed under that key
}

TEST_CASE("backpressure: the caller stops after a message, retains, and goes on later") {
    const auto ring = ring_of({9});
    secmsg::ServerScratch scratch;
    ServerSession s(ring, secmsg::default_max_payload, scratch);
    secmsg::ClientSession c((*ring)[0].keys);
    std::vector<std::uint8_t> wire, out;
    for (const char* m : {"one", "two", "three"}) c.send(bytes(m), wire);
    std::vector<std::uint8_t> buffer = wire;  // the caller's receive buffer
    s.feed(buffer);
    auto n = s.next(out);
    REQUIRE(n.kind == Kind::message);
    CHECK(text(n.message) == "one");
    s.retain();                                  // e.g. the recorder has no room
    std::fill(buffer.begin(), buffer.end(), 0);  // the caller reuses its buffer
    CHECK(s.has_buffered());
    s.feed({});
    std::vector<std::string> rest;
    for (n = s.next(out); n.kind == Kind::message; n = s.next(out)) rest.push_back(text(n.message));
    CHECK(n.kind == Kind::need_more);
    CHECK(rest == std::vector<std::string>{"two", "three"});
    CHECK_FALSE(s.has_buffered());
    CHECK_FALSE(s.mid_frame());

    // Half a frame: kept, mid_frame, and counted in the input's memory.
    std::vector<std::uint8_t> next;
    c.send(bytes("four"), next);
    s.feed(std::span(next).first(10));
    CHECK(s.next(out).kind == Kind::need_more);
    CHECK(s.mid_frame());
    CHECK(s.input_capacity() > 0);
    s.feed(std::span(next).subspan(10));
    n = s.next(out);
    REQUIRE(n.kind == Kind::message);
    CHECK(text(n.message) == "four");
}
