// Fuzz target "frames": what a peer's bytes reach before and just after the
// tag, for both roles.  The server's side is the library's ServerSession
// itself, as secmsgd drives it (input-chosen chunkings; every message
// acknowledged; the ERROR it seals on a wrong frame), under one key and
// under a key ring whose second key is the fixed one, which must take
// every stream as the one-key server does.  The client's side: the frame
// reader and frame opening through a client Channel, with the ACK and
// ERROR payload parsers on what opened (target "client" drives
// ClientSession and its checks of each reply).
//
// First byte: bit 7 sealed mode, bit 6 a small max_payload (100), bits 0-5
// the chunk size - 1.  Raw mode: the rest is the byte stream as is.  Sealed
// mode: the rest is a list of records (fuzz.hpp) sealed or forged into a
// stream with the seq each frame should carry, so that opening succeeds and
// the ordering checks and payload parsers get the fuzzer's bytes; a frame
// that was sealed properly must open to exactly its plaintext.
#include "fuzz.hpp"

#include "proto/frame_reader.hpp"
#include "proto/payload.hpp"
#include "proto/server_session.hpp"

#include <algorithm>
#include <optional>
#include <vector>

namespace secmsg::fuzz {
namespace {

struct Expected {
    bool proper;  // sealed at the right seq, version 1, a known type
    std::uint8_t type;
    std::vector<std::uint8_t> plaintext;
};

// The client's receiving side: a Channel, stopped at its first error as a
// connection would be.
struct Receiver {
    Role role;
    Channel channel;
    std::vector<std::uint8_t> scratch;
    bool open = true;
    bool all_proper_so_far = true;

    Receiver(Role r, std::size_t max_payload) : role(r), channel(keys(), r, max_payload) {}

    void take(std::span<const std::uint8_t> frame, std::size_t max_payload, const Expected* want) {
        if (!open) return;
        const std::uint64_t seq = channel.next_rx_seq();
        const Opened o = channel.open(frame, scratch);
        const auto admits = [this](std::uint8_t t) {
            return role == Role::server ? t == 1 : t == 2 || t == 3;
        };
        const bool may = admits(static_cast<std::uint8_t>(o.type));
        if (want) {
            // A properly sealed frame of this role's type, within the limit,
            // after properly sealed frames only, must open, to its plaintext.
            const bool should_open = want->proper && all_proper_so_far &&
                                     want->plaintext.size() <= max_payload && admits(want->type);
            if (should_open) SECMSG_FUZZ_CHECK(o.error == ProtoError::ok);
            if (o.error == ProtoError::ok && want->proper)
                SECMSG_FUZZ_CHECK(std::equal(o.plaintext.begin(), o.plaintext.end(),
                                             want->plaintext.begin(), want->plaintext.end()));
            all_proper_so_far = all_proper_so_far && should_open;
        }
        if (o.error != ProtoError::ok) {
            SECMSG_FUZZ_CHECK(channel.next_rx_seq() == seq);
            open = false;
            return;
        }
        SECMSG_FUZZ_CHECK(may && o.seq == seq && channel.next_rx_seq() == seq + 1);
        SECMSG_FUZZ_CHECK(o.plaintext.size() <= max_payload);
        if (o.type == FrameType::ack) {
            const auto a = parse_ack(o.plaintext);
            SECMSG_FUZZ_CHECK(a.has_value() == (o.plaintext.size() >= 40));
            if (a) SECMSG_FUZZ_CHECK(a->note.size() == o.plaintext.size() - 40);
        } else if (o.type == FrameType::error) {
            const auto e = parse_error(o.plaintext);
            SECMSG_FUZZ_CHECK(e.has_value() == (o.plaintext.size() >= 10));
            if (e) SECMSG_FUZZ_CHECK(e->reason.size() == o.plaintext.size() - 10);
        }
    }
};

// The server's side of one connection: a ServerSession fed the stream in
// pieces, each message acknowledged as secmsgd does, until it fails.
struct ServerSide {
    ServerScratch scratch;
    ServerSession session;
    std::size_t max_payload;
    std::vector<std::uint8_t> out;  // what it sealed: ACKs, then maybe one ERROR
    std::vector<std::vector<std::uint8_t>> messages;
    ProtoError error = ProtoError::ok;

    ServerSide(std::shared_ptr<const KeyRing> r, std::size_t max)
        : session(std::move(r), max, scratch), max_payload(max) {}

    void take(std::span<const std::uint8_t> piece) {
        if (session.ended()) return;
        session.feed(piece);
        for (;;) {
            const auto n = session.next(out);
            if (n.kind == ServerSession::Next::Kind::need_more) return;
            if (n.kind == ServerSession::Next::Kind::failed) {
                SECMSG_FUZZ_CHECK(n.error != ProtoError::ok && session.ended());
                SECMSG_FUZZ_CHECK(n.error != ProtoError::not_recorded &&
                                  n.error != ProtoError::shutting_down);
                error = n.error;
                return;
            }
            SECMSG_FUZZ_CHECK(n.seq == messages.size() && session.authenticated());
            SECMSG_FUZZ_CHECK(n.message.size() <= max_payload);
            SECMSG_FUZZ_CHECK(n.digest == sha256(n.message));
            messages.emplace_back(n.message.begin(), n.message.end());
            session.acknowledge(n.seq, n.digest, "", out);
        }
    }

    // What it sealed opens under `k` as the client reads it: one ACK per
    // message, in order, then the ERROR when it failed.
    void check_answers(const std::shared_ptr<const FrameKeys>& k) const {
        Channel client(k, Role::client);
        FrameReader reader;
        std::vector<std::uint8_t> scratch_plain;
        reader.feed(out);
        std::size_t acks = 0;
        bool error_seen = false;
        for (auto f = reader.next(); f.kind == FrameReader::Next::Kind::frame; f = reader.next()) {
            SECMSG_FUZZ_CHECK(!error_seen);
            const Opened o = client.open(f.frame, scratch_plain);
            SECMSG_FUZZ_CHECK(o.error == ProtoError::ok);
            if (o.type == FrameType::ack) {
                const auto a = parse_ack(o.plaintext);
                SECMSG_FUZZ_CHECK(a && acks < messages.size() && a->acked_seq == acks &&
                                  a->digest == sha256(messages[acks]));
                ++acks;
            } else {
                const auto e = parse_error(o.plaintext);
                SECMSG_FUZZ_CHECK(e && e->code == static_cast<std::uint16_t>(error));
                error_seen = true;
            }
        }
        SECMSG_FUZZ_CHECK(!reader.has_buffered());
        SECMSG_FUZZ_CHECK(acks == messages.size() && error_seen == (error != ProtoError::ok));
    }
};

}  // namespace

int frames(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    Input in({data, size});
    const std::uint8_t mode = in.byte();
    const bool sealed = mode & 0x80;
    const std::size_t max_payload = (mode & 0x40) ? 100 : default_max_payload;
    const std::size_t chunk = 1 + (mode & 0x3f);

    std::vector<std::uint8_t> built;
    std::vector<Expected> expected;
    std::span<const std::uint8_t> stream;
    if (sealed) {
        // Records carry their seq relative to the count of frames so far:
        // the server's MSGs and the client's ACK/ERRORs both start at 0.
        for (std::uint64_t seq = 0; !in.empty() && expected.size() < 64; ++seq) {
            const Record r = read_record(in, seq);
            const auto p = in.take(r.length);
            emit(r, p, built);
            expected.push_back({r.proper, r.type, {p.begin(), p.end()}});
        }
        stream = built;
    } else {
        stream = in.rest();
    }

    // The server's side: the session itself, under one key and under the ring.
    ServerSide server(one_key_ring(), max_payload);
    ServerSide ringed(ring(), max_payload);
    in_chunks(stream, chunk, [&](std::span<const std::uint8_t> piece) {
        server.take(piece);
        ringed.take(piece);
    });
    SECMSG_FUZZ_CHECK(ringed.messages == server.messages && ringed.error == server.error);
    if (ringed.session.authenticated())
        SECMSG_FUZZ_CHECK(ringed.session.key_fingerprint() == (*ring())[1].fingerprint);
    server.check_answers(keys());
    if (ringed.session.authenticated()) ringed.check_answers(keys());
    if (sealed) {
        // Properly sealed MSGs within the limit come out, each its plaintext,
        // up to the first frame that is not one.
        std::size_t good = 0;
        while (good < expected.size() && expected[good].proper && expected[good].type == 1 &&
               expected[good].plaintext.size() <= max_payload)
            ++good;
        SECMSG_FUZZ_CHECK(server.messages.size() >= good);
        for (std::size_t i = 0; i < server.messages.size() && i < expected.size(); ++i)
            if (expected[i].proper) SECMSG_FUZZ_CHECK(server.messages[i] == expected[i].plaintext);
        if (good == expected.size())
            SECMSG_FUZZ_CHECK(server.error == ProtoError::ok &&
                              server.messages.size() == expected.size());
    }

    // The client's side: frames cut by the reader, opened by a client Channel.
    FrameReader reader(max_payload);
    Receiver client(Role::client, max_payload);
    std::size_t index = 0;
    bool broken = false;
    in_chunks(stream, chunk, [&](std::span<const std::uint8_t> piece) {
        if (broken) return;
        reader.feed(piece);
        for (;;) {
            const auto n = reader.next();
            if (n.kind == FrameReader::Next::Kind::need_more) break;
            if (n.kind == FrameReader::Next::Kind::error) {
                SECMSG_FUZZ_CHECK(n.error == ProtoError::malformed ||
                                  n.error == ProtoError::too_large);
                // A sealed stream breaks only on a frame above the limit.
                if (sealed && index < expected.size())
                    SECMSG_FUZZ_CHECK(n.error == ProtoError::too_large &&
                                      expected[index].plaintext.size() > max_payload);
                broken = true;
                return;
            }
            SECMSG_FUZZ_CHECK(n.frame.size() >= length_field_size + min_length);
            const Expected* want = sealed && index < expected.size() ? &expected[index] : nullptr;
            if (sealed) SECMSG_FUZZ_CHECK(want != nullptr);
            client.take(n.frame, max_payload, want);
            ++index;
        }
    });
    // Every frame of a sealed stream comes out, unless the stream broke.
    if (sealed && !broken) SECMSG_FUZZ_CHECK(index == expected.size() && !reader.has_buffered());

    // The payload parsers on the raw bytes too.
    (void)parse_ack(stream);
    (void)parse_error(stream);
    return 0;
}

}  // namespace secmsg::fuzz
