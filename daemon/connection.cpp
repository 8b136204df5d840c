// The per-connection state machine (see connection.hpp).
#include "connection.hpp"

#include "io/proxy_header.hpp"
#include "log.hpp"
#include "proto/payload.hpp"

#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace secmsg::daemon {

const char* describe(CloseReason r) {
    switch (r) {
    case CloseReason::none: return "none";
    case CloseReason::client_closed: return "client-closed";
    case CloseReason::client_gone_mid_frame: return "client-gone-mid-frame";
    case CloseReason::tls_failed: return "tls-failed";
    case CloseReason::handshake_timeout: return "handshake-timeout";
    case CloseReason::idle_timeout: return "idle-timeout";
    case CloseReason::frame_timeout: return "frame-timeout";
    case CloseReason::shed: return "shed-partial-input";
    case CloseReason::tls_abuse: return "tls-abuse";
    case CloseReason::protocol_error: return "protocol-error";
    case CloseReason::server_shutdown: return "server-shutdown";
    case CloseReason::shutdown_timeout: return "shutdown-timeout";
    case CloseReason::write_failed: return "write-failed";
    }
    return "unknown";
}

Connection::Connection(Shared& shared, Fd fd, tls::Session session, std::string peer,
                       std::uint64_t id, std::shared_ptr<const KeyRing> keys)
    : shared_(shared),
      fd_(std::move(fd)),
      peer_(std::move(peer)),
      id_(id),
      tls_(std::move(session)),
      session_(std::move(keys), shared.limits.max_payload, shared.scratch),
      timer_(shared.reactor, [this] { on_timer(); }),
      started_(Clock::now()),
      last_activity_(started_) {
    tls_->read_in_passes();  // every pass begins with begin_pass (step)
    std::array<std::uint8_t, 16> r;
    randombytes_buf(r.data(), r.size());
    static constexpr char hex[] = "0123456789abcdef";
    record_id_.reserve(32);
    for (auto b : r) {
        record_id_ += hex[b >> 4];
        record_id_ += hex[b & 15];
    }
}

// "conn ID peer ADDR:PORT [via ADDR:PORT]", the start of every log line
// about this connection.
std::string Connection::who() const {
    return "conn " + std::to_string(id_) + " peer " + peer_ +
           (identity_.via.empty() ? "" : " via " + identity_.via);
}

Connection::~Connection() {
    shared_.recorder.forget(*this);
    if (fd_) shared_.reactor.remove(fd_.get());
}

void Connection::start(Clock::time_point accepted) {
    started_ = last_activity_ = accepted;
    shared_.reactor.add(fd_.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP, this);
    timer_.arm_at(accepted + shared_.limits.handshake_timeout);
}

void Connection::on_events(std::uint32_t events) {
    if (tls_ && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) tls_->peer_may_have_closed();
    step();
}

// Every entry does all it can in the current state; the states' own
// functions move the machine forward and may fall through to the next.
void Connection::step() {
    if (state_ == State::handshaking || state_ == State::open || state_ == State::draining)
        tls_->begin_pass(shared_.limits.pass_bytes, shared_.limits.pass_records);
    if (state_ == State::handshaking) do_handshake();
    if (state_ == State::open || state_ == State::draining) {
        if (!flush()) return;
        read_input();
        account_partial();
        if (state_ == State::open || state_ == State::draining) {
            if (!flush()) return;
        }
        if (state_ == State::draining && read_drained_ && !input_stopped()) {
            // Everything the client had sent is answered: say goodbye.
            session_.shutting_down(out_.queue());
            enter_closing(CloseReason::server_shutdown);
        }
    }
    if (state_ == State::closing) do_closing();
    if (state_ == State::lingering) do_lingering();
}

void Connection::do_handshake() {
    // A share of this pass's handshake work, or a turn in the next pass.
    if (shared_.handshake_pass != shared_.reactor.passes()) {
        shared_.handshake_pass = shared_.reactor.passes();
        shared_.handshake_steps = 0;
    }
    if (shared_.handshake_steps >= shared_.limits.handshake_steps_per_pass) {
        shared_.reactor.revisit(this);
        return;
    }
    ++shared_.handshake_steps;
    switch (tls_->handshake()) {
    case tls::Io::done:
        tls_version_ = tls_->version();
        tls_cipher_ = tls_->cipher();
        if (const tls::PeerCheck* peer = tls_->peer_check()) {  // its client certificate
            identity_.client = peer->identity;
            identity_.client_pin = tls::peer_pin(*tls_);
        }
        state_ = State::open;
        last_activity_ = Clock::now();
        timer_.arm_in(shared_.limits.idle_timeout);
        return;
    case tls::Io::want_read:
        // Stopped by this pass's budget: more may wait, and no edge will say so.
        if (tls_->budget_spent()) shared_.reactor.revisit(this);
        return;
    case tls::Io::want_write: return;
    case tls::Io::closed: close_now(CloseReason::client_closed); return;
    case tls::Io::failed:
        if (proxy::looks_like_header(tls_->first_bytes()))
            warn(
                "TLS handshake failed: a PROXY protocol v2 header, from an address not in "
                "--proxy-protocol-from");
        else
            warn("TLS handshake failed: " + tls_->error_text());
        close_now(CloseReason::tls_failed);
        return;
    }
}

// Reads until want-read, unless stopped on purpose: the output bound
// (input paused; flush() resumes it) or the per-pass budgets, of reads
// here and of raw bytes and records in the TLS session (revisit).
void Connection::read_input() {
    // Frames kept from an earlier pass first.
    session_.feed({});
    read_drained_ = false;  // only a want-read in this call says the input is all in
    if (!process_frames()) return;
    for (int budget = shared_.limits.reads_per_pass; !input_stopped(); --budget) {
        if (budget == 0) {
            shared_.reactor.revisit(this);
            return;
        }
        auto r = tls_->read(shared_.rbuf);
        if (!check_control_records()) return;
        switch (r.status) {
        case tls::Io::done:
            bytes_in_ += r.bytes;
            last_activity_ = Clock::now();
            session_.feed(std::span<const std::uint8_t>(shared_.rbuf).first(r.bytes));
            if (!process_frames()) return;
            continue;
        case tls::Io::want_read:
            if (r.budget_spent) {  // not drained: come back in a later pass
                shared_.reactor.revisit(this);
                return;
            }
            read_drained_ = true;
            session_.shrink();  // drop a large idle buffer (a partial frame stays)
            account_partial();
            return;
        case tls::Io::want_write:
            // TLS must write first (its own output, e.g. KeyUpdate answers,
            // waits for a peer that does not read): EPOLLOUT resumes.
            return;
        case tls::Io::closed:
            // The client is done sending: answer what came, then close.
            enter_closing(session_.has_buffered() ? CloseReason::client_gone_mid_frame
                                                  : CloseReason::client_closed);
            return;
        case tls::Io::failed:
            if (session_.has_buffered()) {
                close_now(CloseReason::client_gone_mid_frame);
            } else {
                warn("TLS read failed: " + tls_->error_text());
                close_now(CloseReason::tls_failed);
            }
            return;
        }
    }
}

// Handles whole messages until the session needs more input.  False when
// it stopped early (waiting for the recorder, output bound, frame budget,
// a wrong frame); any input not used yet is then kept by the session.
bool Connection::process_frames() {
    for (int budget = shared_.limits.frames_per_pass;; --budget) {
        if (record_wait_ != RecordWait::none) {
            session_.retain();
            return false;
        }
        if (session_.has_buffered() && !shared_.recorder.has_room(*this)) {
            // The recorder calls record_room() when it has room again.
            record_wait_ = RecordWait::room;
            if (record_since_ == Clock::time_point{}) record_since_ = Clock::now();
            session_.retain();
            return false;
        }
        if (pending_output() >= shared_.limits.max_output) {
            session_.retain();
            input_paused_ = true;
            return false;
        }
        if (budget == 0) {
            session_.retain();
            shared_.reactor.revisit(this);
            return false;
        }
        const auto next = session_.next(out_.queue());
        switch (next.kind) {
        case ServerSession::Next::Kind::need_more: return true;
        case ServerSession::Next::Kind::failed:
            // Its ERROR is sealed: send it, then close.
            warn(std::string(describe(next.error)) + " (ERROR " +
                 std::to_string(static_cast<int>(next.error)) + "), closing");
            enter_closing(CloseReason::protocol_error);
            return false;
        case ServerSession::Next::Kind::message:
            handle_message(next);
            if (state_ != State::open && state_ != State::draining) return false;
            break;
        }
    }
}

// TLS records without application data cost us work (a KeyUpdate is a key
// derivation and an answer) and carry nothing: a peer that sends more than
// a few per window is closed.  False when it was.
bool Connection::check_control_records() {
    const auto total = tls_->counters().records_without_data;
    const auto now = Clock::now();
    if (control_since_ == Clock::time_point{} ||
        now - control_since_ >= shared_.limits.control_window) {
        control_since_ = now;
        control_base_ = total;
        return true;
    }
    if (total - control_base_ <= shared_.limits.max_control_records) return true;
    warn(std::to_string(total - control_base_) +
         " TLS records without data (KeyUpdate, alerts) in " +
         std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(now - control_since_).count()) +
         " ms, more than " + std::to_string(shared_.limits.max_control_records) + " per " +
         std::to_string(shared_.limits.control_window.count() / 1000) + " s");
    close_now(CloseReason::tls_abuse);
    return false;
}

// Records the message; answers it now, or once the recorder says.
void Connection::handle_message(const ServerSession::Next& m) {
    const std::string id = record_id_ + "-" + std::to_string(m.seq);
    MessageInfo info;
    info.peer = peer_;
    info.conn = id_;
    info.id = id;
    info.seq = m.seq;
    info.payload = m.message;
    info.sha256 = &m.digest;
    info.via = identity_.via;
    info.client = identity_.client;
    info.client_pin = identity_.client_pin;
    info.key = session_.key_fingerprint();
    const auto since = record_since_ == Clock::time_point{} ? Clock::now() : record_since_;
    record_since_ = {};
    auto r = shared_.recorder.record(info, *this, since);
    switch (r.status) {
    case RecordResult::Status::recorded: answer_recorded(m.seq, m.digest); return;
    case RecordResult::Status::not_recorded: answer_not_recorded(m.seq, r.reason); return;
    case RecordResult::Status::queued:
        // Input stays paused until record_done(): answers keep the MSG order.
        record_wait_ = RecordWait::outcome;
        queued_seq_ = m.seq;
        queued_digest_ = m.digest;
        return;
    }
}

void Connection::answer_recorded(std::uint64_t seq, const Digest& digest) {
    session_.acknowledge(seq, digest, "recorded id=" + record_id_ + "-" + std::to_string(seq),
                         out_.queue());
}

void Connection::answer_not_recorded(std::uint64_t seq, const std::string& why) {
    if (!record_error_logged_) {  // once per connection; the summary counts them
        log::error(who() + ": message seq " + std::to_string(seq) + " not recorded: " + why);
        record_error_logged_ = true;
    }
    ++not_recorded_;
    session_.not_recorded(seq, "message not recorded (" + why + "); it may be resent",
                          out_.queue());
}

void Connection::record_done(const RecordResult& outcome) {
    if (record_wait_ != RecordWait::outcome || state_ == State::closed) return;
    record_wait_ = RecordWait::none;
    if (outcome.status == RecordResult::Status::recorded)
        answer_recorded(queued_seq_, queued_digest_);
    else
        answer_not_recorded(queued_seq_, outcome.reason);
    shared_.reactor.revisit(this);
}

void Connection::record_room() {
    if (record_wait_ != RecordWait::room || state_ == State::closed) return;
    record_wait_ = RecordWait::none;
    shared_.reactor.revisit(this);
}

// A failure worth a warning.  Until the peer has shown the key (one frame
// with a valid tag) it goes in the connection's summary line, which the
// rate-limited FailureLog writes, instead: anyone can cause those.
void Connection::warn(const std::string& what) {
    if (authenticated())
        log::warning(who() + ": " + what);
    else
        failure_ = what;
}

// Writes until everything is out or TLS wants to wait.  False when the
// connection closed.  Resumes paused input once the output is below half
// the bound (through the revisit list: no new edge will come for input
// that already waits).
bool Connection::flush() {
    const auto r = out_.flush(*tls_);
    if (r.bytes > 0) {
        bytes_out_ += r.bytes;
        last_activity_ = Clock::now();
    }
    switch (r.status) {
    case tls::Io::done:
    case tls::Io::want_write:  // EPOLLOUT continues
    case tls::Io::want_read: break;
    case tls::Io::closed: close_now(CloseReason::client_closed); return false;
    case tls::Io::failed:
        warn("TLS write failed: " + tls_->error_text());
        close_now(CloseReason::write_failed);
        return false;
    }
    if (input_paused_ && pending_output() < shared_.limits.max_output / 2) {
        input_paused_ = false;
        out_.trim();
        shared_.reactor.revisit(this);
    }
    return true;
}

void Connection::enter_closing(CloseReason why) {
    if (state_ == State::closing || state_ == State::lingering || state_ == State::closed) return;
    state_ = State::closing;
    reason_ = why;
    timer_.arm_in(shared_.limits.linger);
}

void Connection::do_closing() {
    if (record_wait_ == RecordWait::outcome) return;  // its answer goes out first
    if (!flush()) return;
    if (pending_output() > 0) return;  // want-write: the next edge continues
    switch (tls_->shutdown()) {
    case tls::Io::done:
        ::shutdown(fd_.get(), SHUT_WR);
        state_ = State::lingering;
        return;
    case tls::Io::want_read:
    case tls::Io::want_write: return;
    case tls::Io::closed:
    case tls::Io::failed: close_now(reason_); return;
    }
}

// Discards input until the peer closes (or the linger bound passes), so
// that closing never resets a connection whose last frames are unread.
void Connection::do_lingering() {
    for (int i = 0; i < shared_.limits.reads_per_pass; ++i) {
        ssize_t n = ::recv(fd_.get(), shared_.rbuf.data(), shared_.rbuf.size(), 0);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        close_now(reason_);  // EOF or error
        return;
    }
    shared_.reactor.revisit(this);
}

// Keeps Shared::partial_bytes true to what this reader holds, and the
// frame deadline to when its partial frame began.
void Connection::account_partial() {
    if (state_ == State::closed) return;
    const auto now_held = session_.input_capacity();
    shared_.partial_bytes += now_held;
    shared_.partial_bytes -= partial_counted_;
    partial_counted_ = now_held;
    if (shared_.partial_bytes > shared_.limits.max_partial_input && shared_.over_budget)
        shared_.over_budget();
    if (!session_.mid_frame()) {
        frame_started_ = {};
    } else if (frame_started_ == Clock::time_point{}) {
        frame_started_ = Clock::now();
        arm_frame_deadline();
    }
}

// The connection has one timer: it fires at the earliest of its
// deadlines, and on_timer() works out which one is due.
void Connection::arm_frame_deadline() {
    const auto due = frame_started_ + shared_.limits.frame_timeout;
    if (!timer_.armed() || timer_.deadline() > due) timer_.arm_at(due);
}

void Connection::on_timer() {
    switch (state_) {
    case State::handshaking: close_now(CloseReason::handshake_timeout); return;
    case State::open:
    case State::draining: {
        const auto now = Clock::now();
        // While its input is paused on our side, a frame cannot be the peer's fault.
        const bool frame_due = frame_started_ != Clock::time_point{} && !input_stopped();
        if (frame_due && frame_started_ + shared_.limits.frame_timeout <= now) {
            // Dribbling keeps a connection active, never a frame alive.
            warn("frame not complete within " +
                 std::to_string(shared_.limits.frame_timeout.count()) + " ms of its first byte");
            close_now(CloseReason::frame_timeout);
            return;
        }
        auto due = last_activity_ + shared_.limits.idle_timeout;
        if (frame_due) due = std::min(due, frame_started_ + shared_.limits.frame_timeout);
        if (due > now) {
            timer_.arm_at(due);
            return;
        }
        enter_closing(CloseReason::idle_timeout);
        step();
        return;
    }
    case State::closing:
    case State::lingering: close_now(reason_); return;
    case State::closed: return;
    }
}

void Connection::begin_shutdown() {
    switch (state_) {
    case State::handshaking: close_now(CloseReason::server_shutdown); return;
    case State::open:
        state_ = State::draining;
        shared_.reactor.revisit(this);
        return;
    default: return;
    }
}

void Connection::abort(CloseReason why) {
    if (state_ != State::closed) close_now(why);
}

void Connection::close_now(CloseReason why) {
    if (state_ == State::closed) return;
    if (reason_ == CloseReason::none || (state_ != State::closing && state_ != State::lingering))
        reason_ = why;
    state_ = State::closed;
    timer_.cancel();
    shared_.recorder.forget(*this);
    shared_.partial_bytes -= partial_counted_;
    partial_counted_ = 0;
    shared_.reactor.forget(this);
    shared_.reactor.remove(fd_.get());
    tls_.reset();
    fd_.reset();
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
    char dur[32];
    std::snprintf(dur, sizeof dur, "%lld.%03llds", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000));
    std::string line =
        who() + " closed: tls " + (tls_version_.empty() ? "-" : tls_version_ + " " + tls_cipher_) +
        ", in " + std::to_string(session_.frames_in()) + " frames " + std::to_string(bytes_in_) +
        " bytes, out " + std::to_string(session_.frames_out()) + " frames " +
        std::to_string(bytes_out_) + " bytes, " +
        (not_recorded_ ? std::to_string(not_recorded_) + " not recorded, " : "") + "duration " +
        dur + ", reason " + describe(reason_) +
        (identity_.client.empty() ? "" : ", client=" + identity_.client);
    if (authenticated())
        log::info(line);
    else if (shared_.failures)
        shared_.failures->report(peer_, failure_.empty() ? line : line + ": " + failure_);
    if (shared_.on_closed) shared_.on_closed(id_);
}

}  // namespace secmsg::daemon
