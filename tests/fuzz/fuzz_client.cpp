// Fuzz target "client": the server's replies as the client takes them
// (ClientSession: frame reader, opening, ACK and ERROR payloads, the window
// of unacknowledged MSGs, and the checks of each reply against them).
//
// First byte: bit 7 sealed mode, bits 0-5 the chunk size - 1.  Second byte:
// bits 0-2 the window - 1, bits 3-6 how many MSGs the client sends in all
// (topped up after each chunk while the window allows).  Raw mode: the rest
// is the server's byte stream.  Sealed mode: a list of replies, each a kind
// byte then a record (fuzz.hpp):
//   kind 0: ACK payload for the oldest MSG not yet answered, right seq and
//           digest, the record's bytes as the note;
//   kind 1: the record's bytes as the payload, as they are;
//   kind 2: ERROR with the next 2 bytes as code, about the oldest MSG not
//           yet answered, the record's bytes as the reason;
//   kind 3: ERROR with the next 2 bytes as code and 8 as ref_seq.
// The session's events are checked against a model of what it has sent,
// and a run of well-formed replies to MSGs all sent must be all accepted.
#include "fuzz.hpp"

#include "proto/client_session.hpp"
#include "proto/payload.hpp"

#include <deque>
#include <string>
#include <vector>

namespace secmsg::fuzz {
namespace {

std::vector<std::uint8_t> message(std::uint64_t i) {
    const std::string s = "message " + std::to_string(i);
    return {s.begin(), s.end()};
}

}  // namespace

int client(const std::uint8_t* data, std::size_t size) {
    Input in({data, size});
    const std::uint8_t mode = in.byte();
    const std::uint8_t shape = in.byte();
    const bool sealed = mode & 0x80;
    const std::size_t chunk = 1 + (mode & 0x3f);
    const std::size_t window = 1 + (shape & 7);
    const std::uint64_t total = shape >> 3 & 15;

    std::vector<std::uint8_t> built;
    std::span<const std::uint8_t> stream;
    std::size_t replies = 0;
    bool all_proper = true;  // every reply answers the oldest open MSG, as it should
    if (sealed) {
        std::uint64_t answered = 0;  // MSGs the proper replies so far have answered
        std::vector<std::uint8_t> p;
        for (std::uint64_t seq = 0; !in.empty() && replies < 64; ++seq, ++replies) {
            const std::uint8_t kind = in.byte() & 3;
            const std::uint16_t code =
                kind >= 2 ? static_cast<std::uint16_t>(in.byte() << 8 | in.byte()) : 0;
            const std::uint64_t ref = kind == 3 ? in.u64() : answered;
            const Record r = read_record(in, seq);
            const auto bytes = in.take(r.length);
            p.clear();
            if (kind == 0) {
                const std::string note(bytes.begin(), bytes.end());
                build_ack(answered, sha256(message(answered)), note, p);
            } else if (kind == 1) {
                p.assign(bytes.begin(), bytes.end());
            } else {
                build_error(code, ref, {reinterpret_cast<const char*>(bytes.data()), bytes.size()},
                            p);
            }
            emit(r, p, built);
            const bool proper = r.proper && answered < total && p.size() <= default_max_payload &&
                                ((kind == 0 && r.type == 2) ||
                                 (kind >= 2 && r.type == 3 && code == 6 && ref == answered));
            all_proper = all_proper && proper;
            if (proper) ++answered;
        }
        stream = built;
    } else {
        stream = in.rest();
    }

    ClientSession s(keys(), window);
    std::deque<std::uint64_t> model;  // seqs sent, not yet answered
    std::uint64_t sent = 0;
    std::vector<std::uint8_t> out;
    const auto top_up = [&] {
        while (s.can_send() && sent < total) {
            out.clear();
            const auto m = message(sent);
            SECMSG_FUZZ_CHECK(s.send(m, out) == sent);
            model.push_back(sent++);
        }
        SECMSG_FUZZ_CHECK(s.in_flight() == model.size() && s.in_flight() <= window);
    };
    top_up();
    const bool all_sent_first = sent == total;

    std::vector<ClientSession::Event> events;
    std::size_t answers = 0;
    bool finished = false;
    in_chunks(stream, chunk, [&](std::span<const std::uint8_t> piece) {
        events.clear();
        s.receive(piece, events);
        if (finished) SECMSG_FUZZ_CHECK(events.empty());
        for (std::size_t i = 0; i < events.size(); ++i) {
            const auto& e = events[i];
            using K = ClientSession::Event::Kind;
            SECMSG_FUZZ_CHECK(!finished);
            if (e.kind == K::acked || e.kind == K::not_recorded) {
                SECMSG_FUZZ_CHECK(!model.empty() && e.seq == model.front());
                if (e.kind == K::not_recorded) SECMSG_FUZZ_CHECK(e.code == 6);
                model.pop_front();
                ++answers;
            } else {
                finished = true;
                SECMSG_FUZZ_CHECK(i + 1 == events.size());
                if (e.kind == K::protocol_error) SECMSG_FUZZ_CHECK(e.local != ProtoError::ok);
            }
        }
        SECMSG_FUZZ_CHECK(s.finished() == finished);
        top_up();
    });
    if (sealed && all_proper && all_sent_first) SECMSG_FUZZ_CHECK(!finished && answers == replies);
    return 0;
}

}  // namespace secmsg::fuzz
