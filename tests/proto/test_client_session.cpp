// ClientSession against a server side built from the same library (Channel
// with Role::server): real sealing, real tags, forged replies.
#include "proto/client_session.hpp"

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

using secmsg::ClientSession;
using Kind = secmsg::ClientSession::Event::Kind;

namespace {

std::shared_ptr<const secmsg::FrameKeys> keys_from(std::uint8_t fill) {
    std::array<std::uint8_t, 32> psk{};
    psk.fill(fill);
    return std::make_shared<const secmsg::FrameKeys>(psk);
}

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// The server's end: opens MSGs and seals replies.
struct Server {
    explicit Server(std::shared_ptr<const secmsg::FrameKeys> k)
        : channel(std::move(k), secmsg::Role::server) {}

    // Opens every MSG in `wire`; returns their plaintexts.
    std::vector<std::string> take(const std::vector<std::uint8_t>& wire) {
        secmsg::FrameReader reader;
        reader.feed(wire);
        std::vector<std::string> msgs;
        for (auto n = reader.next(); n.kind == secmsg::FrameReader::Next::Kind::frame;
             n = reader.next()) {
            const auto o = channel.open(n.frame, scratch);
            REQUIRE(o.error == secmsg::ProtoError::ok);
            msgs.emplace_back(o.plaintext.begin(), o.plaintext.end());
        }
        return msgs;
    }
    void ack(std::uint64_t seq, std::string_view msg, std::string_view note,
             std::vector<std::uint8_t>& out) {
        std::vector<std::uint8_t> p;
        secmsg::build_ack(seq, secmsg::sha256(bytes(msg)), note, p);
        channel.seal(secmsg::FrameType::ack, p, out);
    }
    void error(std::uint16_t code, std::uint64_t ref, std::string_view reason,
               std::vector<std::uint8_t>& out) {
        std::vector<std::uint8_t> p;
        secmsg::build_error(code, ref, reason, p);
        channel.seal(secmsg::FrameType::error, p, out);
    }

    secmsg::Channel channel;
    std::vector<std::uint8_t> scratch;
};

}  // namespace

TEST_CASE("every message is acknowledged in order, fed whole or byte by byte") {
    const auto keys = keys_from(7);
    for (const bool split : {false, true}) {
        ClientSession c(keys);
        Server s(keys);
        std::vector<std::uint8_t> wire;
        const std::vector<std::string> sent{"first", "", std::string(5000, 'x')};
        for (std::size_t i = 0; i < sent.size(); ++i) CHECK(c.send(bytes(sent[i]), wire) == i);
        CHECK(c.in_flight() == 3);
        REQUIRE(s.take(wire) == sent);

        std::vector<std::uint8_t> replies;
        for (std::size_t i = 0; i < sent.size(); ++i)
            s.ack(i, sent[i], "note " + std::to_string(i), replies);
        std::vector<ClientSession::Event> ev;
        if (split)
            for (auto b : replies) c.receive({&b, 1}, ev);
        else
            c.receive(replies, ev);
        REQUIRE(ev.size() == 3);
        for (std::size_t i = 0; i < 3; ++i) {
            CHECK(ev[i].kind == Kind::acked);
            CHECK(ev[i].seq == i);
            CHECK(ev[i].text == "note " + std::to_string(i));
        }
        CHECK(c.in_flight() == 0);
        CHECK_FALSE(c.finished());
    }
}

TEST_CASE("the window bounds the messages in flight") {
    const auto keys = keys_from(1);
    ClientSession c(keys, 2);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    c.send(bytes("a"), wire);
    CHECK(c.can_send());
    c.send(bytes("b"), wire);
    CHECK_FALSE(c.can_send());
    s.take(wire);
    s.ack(0, "a", "", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    CHECK(c.can_send());
    CHECK(c.oldest_pending() == 1);
}

TEST_CASE("a forged ACK is caught: wrong digest, wrong seq, nothing pending") {
    const auto keys = keys_from(2);
    SUBCASE("digest of another message") {
        ClientSession c(keys);
        Server s(keys);
        std::vector<std::uint8_t> wire, replies;
        c.send(bytes("pay 10 EUR"), wire);
        s.take(wire);
        s.ack(0, "pay 1000 EUR", "ok", replies);
        std::vector<ClientSession::Event> ev;
        c.receive(replies, ev);
        REQUIRE(ev.size() == 1);
        CHECK(ev[0].kind == Kind::protocol_error);
        CHECK(ev[0].text.find("digest") != std::string::npos);
        CHECK(c.finished());
        CHECK(c.in_flight() == 1);
    }
    SUBCASE("acked_seq of a later message") {
        ClientSession c(keys);
        Server s(keys);
        std::vector<std::uint8_t> wire, replies;
        c.send(bytes("a"), wire);
        c.send(bytes("b"), wire);
        s.take(wire);
        s.ack(1, "b", "", replies);
        std::vector<ClientSession::Event> ev;
        c.receive(replies, ev);
        REQUIRE(ev.size() == 1);
        CHECK(ev[0].kind == Kind::protocol_error);
        CHECK(ev[0].local == secmsg::ProtoError::sequence);
    }
    SUBCASE("an ACK when nothing was sent") {
        ClientSession c(keys);
        Server s(keys);
        std::vector<std::uint8_t> replies;
        s.ack(0, "a", "", replies);
        std::vector<ClientSession::Event> ev;
        c.receive(replies, ev);
        REQUIRE(ev.size() == 1);
        CHECK(ev[0].kind == Kind::protocol_error);
    }
    SUBCASE("a later ACK after a failure is ignored") {
        ClientSession c(keys);
        Server s(keys);
        std::vector<std::uint8_t> wire, replies;
        c.send(bytes("a"), wire);
        s.take(wire);
        s.ack(0, "x", "", replies);
        s.ack(0, "a", "", replies);
        std::vector<ClientSession::Event> ev;
        c.receive(replies, ev);
        CHECK(ev.size() == 1);
    }
}

TEST_CASE("replies sealed under another PSK fail authentication") {
    ClientSession c(keys_from(3));
    Server s(keys_from(4));
    std::vector<std::uint8_t> wire, replies;
    c.send(bytes("a"), wire);
    s.error(2, secmsg::no_seq, "authentication failed", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == Kind::protocol_error);
    CHECK(ev[0].local == secmsg::ProtoError::auth);
    CHECK(ev[0].text.find("is the PSK the server's?") != std::string::npos);
    CHECK(ev[0].text.find("--") == std::string::npos);  // the program names its option
}

TEST_CASE("ERROR 6 takes its message's place; ERROR 7 and 5 finish the session") {
    const auto keys = keys_from(5);
    ClientSession c(keys);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    for (auto m : {"a", "b", "c", "d"}) c.send(bytes(m), wire);
    s.take(wire);
    s.ack(0, "a", "", replies);
    s.error(6, 1, "journal unavailable", replies);
    s.ack(2, "c", "", replies);
    s.error(7, secmsg::no_seq, "shutting down", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    REQUIRE(ev.size() == 4);
    CHECK(ev[0].kind == Kind::acked);
    CHECK(ev[1].kind == Kind::not_recorded);
    CHECK(ev[1].seq == 1);
    CHECK(ev[1].code == 6);
    CHECK(ev[1].text == "journal unavailable");
    CHECK(ev[2].kind == Kind::acked);
    CHECK(ev[2].seq == 2);
    CHECK(ev[3].kind == Kind::server_error);
    CHECK(ev[3].code == 7);
    CHECK(c.finished());
    CHECK(c.in_flight() == 1);
    CHECK(c.oldest_pending() == 3);
}

TEST_CASE("ERROR 6 naming a message that is not the oldest is a protocol error") {
    const auto keys = keys_from(6);
    ClientSession c(keys);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    c.send(bytes("a"), wire);
    c.send(bytes("b"), wire);
    s.take(wire);
    s.error(6, 1, "no", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == Kind::protocol_error);
}

TEST_CASE("garbage from the server is a malformed frame") {
    ClientSession c(keys_from(8));
    std::vector<std::uint8_t> junk{0, 0, 0, 5, 1, 2, 3, 4, 5};
    std::vector<ClientSession::Event> ev;
    c.receive(junk, ev);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == Kind::protocol_error);
    CHECK(ev[0].local == secmsg::ProtoError::malformed);
}

TEST_CASE("nothing is kept about a message once it is acknowledged") {
    // Bounded memory for unbounded input: after any number of messages, the
    // session holds only those awaiting their reply, and every ACK reports
    // the size of its message (what the caller counts, instead of keeping
    // sizes of its own).
    const auto keys = keys_from(9);
    ClientSession c(keys, 8);
    Server s(keys);
    std::uint64_t total = 0, acked_bytes = 0;
    std::vector<std::uint8_t> wire, replies;
    std::vector<ClientSession::Event> ev;
    for (std::uint64_t i = 0; i < 20000; ++i) {
        const std::string m(i % 37, 'm');
        wire.clear();
        c.send(bytes(m), wire);
        total += m.size();
        REQUIRE(s.take(wire).size() == 1);
        replies.clear();
        s.ack(i, m, "recorded", replies);
        ev.clear();
        c.receive(replies, ev);
        REQUIRE(ev.size() == 1);
        REQUIRE(ev[0].kind == Kind::acked);
        CHECK(ev[0].bytes == m.size());
        acked_bytes += ev[0].bytes;
    }
    CHECK(c.in_flight() == 0);
    CHECK(c.oldest_pending() == secmsg::no_seq);
    CHECK(acked_bytes == total);
}

TEST_CASE("what the server writes comes out escaped: notes and reasons") {
    const auto keys = keys_from(10);
    ClientSession c(keys);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    c.send(bytes("a"), wire);
    c.send(bytes("b"), wire);
    s.take(wire);
    s.ack(0, "a", "\x1b]0;owned\x07 ok \xc3\xa9", replies);
    s.error(6, 1, "\x1b[2Jgone\r\n\x9b", replies);
    c.send(bytes("c"), wire);
    s.error(4, secmsg::no_seq, "\x1b[31mred", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    REQUIRE(ev.size() == 3);
    CHECK(ev[0].text == "\\x1b]0;owned\\x07 ok \xc3\xa9");
    CHECK(ev[1].kind == Kind::not_recorded);
    CHECK(ev[1].text == "\\x1b[2Jgone\\r\\n\\x9b");
    CHECK(ev[2].kind == Kind::server_error);
    CHECK(ev[2].text == "\\x1b[31mred");
}

TEST_CASE("keeping: the unacknowledged come back in order, ERROR 6 ones first") {
    const auto keys = keys_from(11);
    ClientSession c(keys, 8, secmsg::Keeping::until_acked);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    std::uint64_t number = 100;
    for (auto m : {"a", "b", "c", "d", "e"}) c.send(bytes(m), wire, number++);
    s.take(wire);
    s.ack(0, "a", "", replies);
    s.error(6, 1, "not now", replies);
    s.ack(2, "c", "", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    REQUIRE(ev.size() == 3);
    CHECK(ev[0].number == 100);
    CHECK(ev[1].kind == Kind::not_recorded);
    CHECK(ev[1].number == 101);
    CHECK(ev[2].number == 102);

    const auto back = c.take_unanswered();
    REQUIRE(back.size() == 3);
    CHECK(back[0].number == 101);
    CHECK(back[1].number == 103);
    CHECK(back[2].number == 104);
    CHECK(std::string(back[0].message.begin(), back[0].message.end()) == "b");
    CHECK(std::string(back[2].message.begin(), back[2].message.end()) == "e");
    CHECK(c.in_flight() == 0);
    CHECK(c.take_unanswered().empty());

    // On a new connection they are sealed again from seq 0, and accepted.
    ClientSession next(keys, 8, secmsg::Keeping::until_acked);
    Server fresh(keys);
    wire.clear();
    std::uint64_t seq = 0;
    for (const auto& u : back) CHECK(next.send(u.message, wire, u.number) == seq++);
    CHECK(fresh.take(wire) == std::vector<std::string>{"b", "d", "e"});
    replies.clear();
    fresh.ack(0, "b", "", replies);
    ev.clear();
    next.receive(replies, ev);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == Kind::acked);
    CHECK(ev[0].seq == 0);
    CHECK(ev[0].number == 101);
}

TEST_CASE("not keeping: nothing comes back") {
    const auto keys = keys_from(12);
    ClientSession c(keys);
    std::vector<std::uint8_t> wire;
    c.send(bytes("a"), wire);
    CHECK(c.take_unanswered().empty());
    CHECK(c.in_flight() == 0);
}

TEST_CASE("keeping: at most max_kept_bytes in flight, but always one message") {
    const auto keys = keys_from(13);
    ClientSession c(keys, 64, secmsg::Keeping::until_acked);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    const std::string big(3u << 20, 'b');
    int sent = 0;
    while (c.can_send()) {
        c.send(bytes(big), wire);
        ++sent;
    }
    CHECK(sent == 3);  // 9 MiB held: over the 8 MiB bound
    s.take(wire);
    for (int i = 0; i < 3; ++i) s.ack(static_cast<std::uint64_t>(i), big, "", replies);
    std::vector<ClientSession::Event> ev;
    c.receive(replies, ev);
    CHECK(ev.size() == 3);
    CHECK(c.can_send());
    const std::string huge(secmsg::max_kept_bytes + 1, 'h');  // alone, it is taken
    wire.clear();
    c.send(bytes(huge), wire);
    CHECK_FALSE(c.can_send());
    CHECK(c.take_unanswered().size() == 1);
    CHECK(c.can_send());  // nothing held any more
}

TEST_CASE("keeping: nothing is kept about a message once it is acknowledged") {
    const auto keys = keys_from(14);
    ClientSession c(keys, 4, secmsg::Keeping::until_acked);
    Server s(keys);
    std::vector<std::uint8_t> wire, replies;
    std::vector<ClientSession::Event> ev;
    for (std::uint64_t i = 0; i < 5000; ++i) {
        const std::string m(1000, static_cast<char>('a' + i % 26));
        wire.clear();
        c.send(bytes(m), wire);
        REQUIRE(s.take(wire).size() == 1);
        replies.clear();
        s.ack(i, m, "", replies);
        ev.clear();
        c.receive(replies, ev);
        REQUIRE(ev.size() == 1);
        REQUIRE(c.can_send());
    }
    CHECK(c.take_unanswered().empty());
}
