// The server side of one connection, without I/O (see server_session.hpp).
#include "proto/server_session.hpp"

namespace secmsg {

ServerSession::ServerSession(std::shared_ptr<const KeyRing> keys, std::size_t max_payload,
                             ServerScratch& scratch)
    : channel_(std::move(keys), Role::server, max_payload),
      reader_(max_payload),
      scratch_(scratch) {}

ServerSession::Next ServerSession::next(std::vector<std::uint8_t>& out) {
    if (ended_) return {};
    const auto n = reader_.next();
    switch (n.kind) {
    case FrameReader::Next::Kind::need_more: return {};
    case FrameReader::Next::Kind::error: return fail(n.error, no_seq, out);
    case FrameReader::Next::Kind::frame: break;
    }
    const Opened o = channel_.open(n.frame, scratch_.plaintext);
    // A frame whose tag failed names no seq: its seq field is unproven.
    if (o.error != ProtoError::ok)
        return fail(o.error, o.error == ProtoError::auth ? no_seq : o.seq, out);
    ++frames_in_;
    Next m;
    m.kind = Next::Kind::message;
    m.seq = o.seq;
    m.message = o.plaintext;
    m.digest = sha256(o.plaintext);
    return m;
}

ServerSession::Next ServerSession::fail(ProtoError e, std::uint64_t ref_seq,
                                        std::vector<std::uint8_t>& out) {
    seal_error(e, ref_seq, describe(e), out);
    ended_ = true;
    Next f;
    f.kind = Next::Kind::failed;
    f.error = e;
    return f;
}

void ServerSession::acknowledge(std::uint64_t seq, const Digest& digest, std::string_view note,
                                std::vector<std::uint8_t>& out) {
    auto& p = scratch_.payload;
    p.clear();
    build_ack(seq, digest, note, p);
    channel_.seal(FrameType::ack, p, out);
    ++frames_out_;
}

void ServerSession::not_recorded(std::uint64_t seq, std::string_view reason,
                                 std::vector<std::uint8_t>& out) {
    seal_error(ProtoError::not_recorded, seq, reason, out);
}

void ServerSession::shutting_down(std::vector<std::uint8_t>& out) {
    seal_error(ProtoError::shutting_down, no_seq, describe(ProtoError::shutting_down), out);
}

void ServerSession::seal_error(ProtoError e, std::uint64_t ref_seq, std::string_view reason,
                               std::vector<std::uint8_t>& out) {
    auto& p = scratch_.payload;
    p.clear();
    build_error(static_cast<std::uint16_t>(e), ref_seq, reason, p);
    channel_.seal(FrameType::error, p, out);
    ++frames_out_;
}

}  // namespace secmsg
