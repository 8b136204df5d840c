// A wolfSSL session on a non-blocking socket: the owner of a WOLFSSL, its
// own socket I/O (read-ahead, per-pass budgets, TLS's own output held
// apart), I/O results that say whether a call would block, what the peer
// has sent (SessionCounters) and how a failure is classified (Fault).
//
// Implemented in session.cpp.
#pragma once

#include "tls/context.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

struct WOLFSSL;

namespace secmsg::tls {

// What kind of failure ended a session's call (Session::fault()).
enum class Fault { none, rejected, refused, dropped, other };

// A session's check of the peer's certificate.  Each client Session owns
// one, and so does each server Session whose context asks for client
// certificates; it is the verify callback's context.  For a client: the
// pin its context requires, if any (`want`; the callback in client_context.cpp
// judges it).  For a server: the context's ClientPolicy (`clients`; the
// callback in context.cpp judges the client's certificate with judge_client
// and keeps the identity, or why it was refused).  Either side: `seen`,
// the digest of the peer's (leaf) certificate key once the handshake has
// shown it.  Works without wolfSSL's OpenSSL layer or session certificate
// copies, which cost 22 KiB per session: the callback sees the certificate
// as received, and only these few bytes stay.
struct PeerCheck {
    std::optional<PinDigest> want;
    std::optional<PinDigest> seen;
    const ClientPolicy* clients = nullptr;  // server sessions: owned by the context
    std::string identity;                   // server: accepted client (SECMSG_CLIENT)
    std::string refused;                    // server: why the certificate was refused
};

enum class Io { done, want_read, want_write, closed, failed };

struct IoResult {
    Io status;
    std::size_t bytes = 0;  // for read and write: bytes moved when done
    // For read's want_read: true when it stopped because this pass's budget
    // (Session::begin_pass) ran out, not because the socket is drained.
    // More input may wait in the kernel and no new edge will announce it:
    // come back in a later pass (the reactor's revisit list).
    bool budget_spent = false;
};

// What a session has read from its peer, for policies on unauthenticated
// peers.  Records are counted on the raw stream (complete TLS records whose
// last byte has been received), so they count what the peer sent before
// any of it is decrypted.
struct SessionCounters {
    std::uint64_t bytes_in = 0;    // raw bytes received from the socket
    std::uint64_t records_in = 0;  // complete TLS records received
    // Records that read() consumed without any application data coming of
    // them: TLS 1.3 KeyUpdate (each can make us answer), alerts, empty
    // application records, post-handshake handshake messages.  A peer
    // sending many of them per second is abusive.
    std::uint64_t records_without_data = 0;
};

struct SessionIo;  // session.cpp: the session's own socket I/O (wolfSSL callbacks)

// Owner of a WOLFSSL session bound to a non-blocking fd it does not own.
// Keeps its context alive.  Move-only.  The side (server or client) is the
// one of the context's method.
//
// The session does its own socket I/O (wolfSSL's custom I/O callbacks, not
// its built-in socket code), for two bounds a peer cannot push past:
// - Work per pass: begin_pass() sets how many raw bytes and TLS records
//   the session may read until the next begin_pass(); then read() says
//   want_read with budget_spent.  A single wolfSSL_read no longer processes
//   every record queued in the kernel.
// - TLS's own output: a reply that TLS makes by itself (a KeyUpdate answer,
//   an alert, tickets) and that cannot leave because the socket is full is
//   held here (pending_output()), and until it has left the session reads
//   nothing more: read() and handshake() say want_write.  A peer that sends
//   KeyUpdate(update_requested) and never reads cannot make us accumulate
//   replies.  It leaves on the next read(), write(), handshake(), flush()
//   or shutdown() once the socket has room (EPOLLOUT).
// Writes use MSG_NOSIGNAL: a peer gone under a write is an error (EPIPE:
// closed), never a SIGPIPE.
class Session {
public:
    // A session of the context's side on `fd`.  Throws TlsError.  A client
    // session also owns its PeerCheck.
    Session(std::shared_ptr<Context> ctx, int fd);
    // Defaulted in session.cpp, where SessionIo is complete.  Move-only.
    ~Session();
    Session(Session&& o) noexcept;
    Session& operator=(Session&& o) noexcept;

    // For clients: the name for SNI and certificate checks (before handshake;
    // an IPv6 literal is checked in the expanded form wolfSSL compares with).
    void set_server_name(const std::string& name);

    // done when established; closed if the peer hung up, failed on a TLS
    // error; want_write also while TLS's own output is blocked (see above).
    Io handshake();
    // done with bytes > 0, or a would-block/closed/failed.  want_read: the
    // socket is drained, or (budget_spent) this pass's budget is.
    // want_write: TLS must send before it reads on (its own output is
    // blocked, or a write() is unfinished): wait for EPOLLOUT, then retry
    // that write(), if any, and read again.
    IoResult read(std::span<std::uint8_t> buf);
    // After want_read or want_write, call again with the same buffer and length.
    IoResult write(std::span<const std::uint8_t> buf);
    // Sends TLS's own output that the session holds: done when none is
    // left, want_write, closed (the peer is gone) or failed.  (The rest of
    // an unfinished write() leaves only by retrying that write().)
    Io flush();
    // Sends close_notify once (done once it has left, or want_write to
    // flush); never waits for the peer's.
    Io shutdown();
    // Bytes already decrypted inside wolfSSL, invisible to epoll.
    bool has_pending() const;

    // Starts a loop pass: until the next call, the session reads at most
    // `bytes` raw bytes and `records` whole TLS records from its socket
    // (handshake included), then reports want_read with budget_spent.
    // Without any call there is no limit.  Cheap; call it once per pass
    // before the first handshake() or read().
    void begin_pass(std::size_t bytes, std::size_t records = SIZE_MAX);
    // True when a read or handshake stopped on this pass's budget (the
    // socket may hold more): the caller must come back by itself.
    bool budget_spent() const;
    // For a caller on an edge-triggered epoll that calls begin_pass() at
    // every edge and every return of its own: small receives read ahead
    // (up to 2 KiB, held by the session until wolfSSL asks for them), and a
    // receive that got less than it asked for ends the pass's reading (the
    // socket was empty; later bytes bring a new edge).  Saves one or two
    // system calls per small record.  A caller that waits with poll() for
    // more must not use it: bytes read ahead are invisible to poll.
    void read_in_passes();
    // The caller saw EPOLLRDHUP, EPOLLHUP or EPOLLERR: from now on every
    // pass reads until the socket says want-read or end of stream, since
    // the FIN may have come with the last bytes and no edge would follow.
    void peer_may_have_closed();
    // True while TLS's own output cannot leave (the socket is full): the
    // session reads nothing until it has, and the connection should wait
    // for EPOLLOUT.
    bool output_blocked() const;
    // Ciphertext waiting to leave: TLS's own output held by the session,
    // plus what wolfSSL kept of an unfinished write().  Count it against
    // the connection's output bound.
    std::size_t pending_output() const;
    // Running totals of what the peer sent (see SessionCounters).
    const SessionCounters& counters() const;
    // The first bytes the peer sent (up to 16), raw, for telling what a
    // failed handshake was given instead of TLS.
    std::span<const std::uint8_t> first_bytes() const;

    std::string version() const;  // "TLSv1.3"
    std::string cipher() const;   // suite name
    std::string alpn() const;     // negotiated ALPN, empty if none
    // Why the last handshake, read or write failed, classified once:
    // rejected (this side refused the peer's certificate or pin), refused
    // (the peer sent a fatal certificate alert, named by refusal_alert();
    // with TLS 1.3 a client learns it only at its first read or write after
    // the handshake), dropped (the connection was closed or reset under the
    // call), other (error_text() says what); none before any failure.
    Fault fault() const;
    // The fatal alert ("bad_certificate", "certificate_required",
    // "unknown_ca", ...) with which the peer refused this side's
    // certificate, or its lack of one; null when it did not.
    const char* refusal_alert() const;
    // After failed: wolfSSL's reason; for a server refusing a client
    // certificate, what was wrong with it (PeerCheck::refused) or that none came.
    std::string error_text() const;
    // What the certificate check saw: always for client sessions; for server
    // sessions only when their context asks for client certificates (then,
    // after the handshake, `identity` names the accepted client), else null.
    const PeerCheck* peer_check() const { return peer_.get(); }
    WOLFSSL* get() const { return ssl_.get(); }

private:
    struct Free {
        void operator()(WOLFSSL* s) const;
    };
    // Declared before ssl_, so destroyed after it: the WOLFSSL refers to
    // them until it is freed.
    std::shared_ptr<Context> ctx_;
    std::unique_ptr<PeerCheck> peer_;  // on the heap: wolfSSL keeps its address
    std::unique_ptr<SessionIo> io_;    // likewise (the I/O callbacks' context)
    std::unique_ptr<WOLFSSL, Free> ssl_;
    int last_error_ = 0;
};

// After a handshake: "sha256:BASE64" of the peer certificate's key, as the
// verify callback saw it during this handshake (a client: the server's, in
// every trust mode; a server: the client's, when it asks for one); empty
// when no certificate was seen (a resumed session, no client certificate).
std::string peer_pin(const Session& s);

}  // namespace secmsg::tls
