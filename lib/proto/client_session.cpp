// Client side of a secmsg/1 connection: sealing MSGs and checking replies.
#include "proto/client_session.hpp"

#include "proto/escape.hpp"

#include <algorithm>
#include <utility>

namespace secmsg {

namespace {

// What the server wrote, for people: at most this many bytes once escaped.
constexpr std::size_t shown_text = 1024;

}  // namespace

ClientSession::ClientSession(std::shared_ptr<const FrameKeys> keys, std::size_t window,
                             Keeping keep)
    : channel_(std::move(keys), Role::client),
      window_(std::max<std::size_t>(window, 1)),
      keep_(keep) {}

std::uint64_t ClientSession::oldest_pending() const {
    return pending_.empty() ? no_seq : pending_.front().seq;
}

std::uint64_t ClientSession::send(std::span<const std::uint8_t> message,
                                  std::vector<std::uint8_t>& out, std::uint64_t number) {
    const std::uint64_t seq = channel_.seal(FrameType::msg, message, out);
    pending_.push_back({seq, sha256(message), message.size(), number == no_seq ? seq : number, {}});
    if (keep_ == Keeping::until_acked) {
        pending_.back().message.assign(message.begin(), message.end());
        kept_bytes_ += message.size();
    }
    return seq;
}

void ClientSession::answered(Event::Kind how) {
    Pending& p = pending_.front();
    if (keep_ == Keeping::until_acked && how == Event::Kind::not_recorded) {
        not_recorded_.push_back({p.number, std::move(p.message)});
    } else {
        kept_bytes_ -= p.message.size();
    }
    pending_.pop_front();
}

std::vector<Unanswered> ClientSession::take_unanswered() {
    std::vector<Unanswered> out = std::move(not_recorded_);
    not_recorded_.clear();
    for (Pending& p : pending_)
        if (keep_ == Keeping::until_acked) out.push_back({p.number, std::move(p.message)});
    pending_.clear();
    kept_bytes_ = 0;
    return out;
}

void ClientSession::receive(std::span<const std::uint8_t> bytes, std::vector<Event>& events) {
    if (finished_) return;
    reader_.feed(bytes);
    while (!finished_) {
        const auto n = reader_.next();
        if (n.kind == FrameReader::Next::Kind::need_more) return;
        if (n.kind == FrameReader::Next::Kind::error) {
            fail(n.error,
                 n.error == ProtoError::too_large ? "the server sent a frame larger than allowed"
                                                  : "the server sent a malformed frame",
                 events);
            return;
        }
        handle_frame(n.frame, events);
    }
    reader_.retain();  // finished: nothing more will be read, but keep the contract
}

void ClientSession::fail(ProtoError e, std::string text, std::vector<Event>& events) {
    finished_ = true;
    events.push_back({Event::Kind::protocol_error, oldest_pending(), 0, e, std::move(text)});
}

void ClientSession::handle_frame(std::span<const std::uint8_t> frame, std::vector<Event>& events) {
    const Opened o = channel_.open(frame, scratch_);
    switch (o.error) {
    case ProtoError::ok: break;
    case ProtoError::auth:
        return fail(o.error,
                    "a frame from the server failed authentication: is the PSK the server's?",
                    events);
    case ProtoError::sequence:
        return fail(o.error,
                    "the server sent frame seq " + std::to_string(o.seq) + ", expected " +
                        std::to_string(channel_.next_rx_seq()),
                    events);
    default:
        return fail(o.error, "the server sent a bad frame: " + std::string(describe(o.error)),
                    events);
    }

    if (o.type == FrameType::ack) {
        const auto ack = parse_ack(o.plaintext);
        if (!ack) return fail(ProtoError::malformed, "the server sent a truncated ACK", events);
        if (pending_.empty())
            return fail(ProtoError::sequence,
                        "the server acknowledged seq " + std::to_string(ack->acked_seq) +
                            " but no message is awaiting acknowledgement",
                        events);
        const Pending& p = pending_.front();
        if (ack->acked_seq != p.seq)
            return fail(ProtoError::sequence,
                        "the server acknowledged seq " + std::to_string(ack->acked_seq) +
                            " where seq " + std::to_string(p.seq) + " was due",
                        events);
        if (!ack_matches(*ack, p.seq, p.digest))
            return fail(ProtoError::auth,
                        "the server's ACK for seq " + std::to_string(p.seq) +
                            " carries a digest that does not match the message sent",
                        events);
        events.push_back({Event::Kind::acked, p.seq, 0, ProtoError::ok,
                          escape_payload(ack->note, shown_text), p.bytes, p.number});
        answered(Event::Kind::acked);
        return;
    }

    // Role::client admits only ACK and ERROR.
    const auto err = parse_error(o.plaintext);
    if (!err) return fail(ProtoError::malformed, "the server sent a truncated ERROR", events);
    const auto code = static_cast<ProtoError>(err->code);
    if (code == ProtoError::not_recorded) {
        if (pending_.empty() || err->ref_seq != pending_.front().seq)
            return fail(ProtoError::sequence,
                        "the server reported seq " + std::to_string(err->ref_seq) +
                            " not recorded where seq " + std::to_string(oldest_pending()) +
                            " was due",
                        events);
        const Pending& p = pending_.front();
        events.push_back({Event::Kind::not_recorded, p.seq, err->code, ProtoError::ok,
                          escape_payload(err->reason, shown_text), p.bytes, p.number});
        answered(Event::Kind::not_recorded);
        return;
    }
    finished_ = true;
    events.push_back({Event::Kind::server_error, err->ref_seq, err->code, ProtoError::ok,
                      escape_payload(err->reason, shown_text)});
}

}  // namespace secmsg
