// wolfSSL sessions on non-blocking sockets (see session.hpp): the socket
// I/O callbacks, the per-pass budgets and read-ahead, the verbs, and the
// classification of failures.
#include "tls/session.hpp"

#include "io/fd.hpp"
#include "keys/files.hpp"
#include "proto/protocol.hpp"
#include "proto/secret.hpp"
#include "tls/build_info.hpp"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <string_view>
#include <sys/socket.h>
#include <system_error>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace secmsg::tls {

// The session's socket I/O: wolfSSL's receive and send callbacks (their
// context), the per-pass budget, TLS's own output that could not leave, and
// a scan of the raw stream's record headers that counts records.
//
// Why TLS's own output is held here rather than left inside wolfSSL: wolfSSL
// 5.5.4 resumes an unfinished wolfSSL_write from its output buffer and then
// skips the bytes the last write that blocked had already taken
// (SendData: sent = prevSent + plainSz).  Output that TLS made by itself
// (a KeyUpdate answer) left in that buffer would make the next, unrelated
// write skip or refuse bytes.  So output made outside write() is taken out
// of wolfSSL at once (the callback reports it sent) unless a write is
// unfinished, in which case wolfSSL keeps it behind that write's rest, and
// the retried write sends both.  Either way, reading stops until it has left.
struct SessionIo {
    int fd = -1;
    // Per pass (begin_pass): what may still be read.
    std::size_t byte_budget = SIZE_MAX;
    std::size_t record_budget = SIZE_MAX;
    bool budget_spent = false;  // a receive was refused by the budget
    bool stalled = false;       // a receive was refused: TLS's own output is blocked
    // Output.
    bool in_write = false;           // inside Session::write (application data)
    bool write_unfinished = false;   // wolfSSL keeps part of a write(): retry it
    bool own_blocked = false;        // wolfSSL keeps own output behind that write
    std::size_t wolfssl_holds = 0;   // bytes wolfSSL kept at the last short send
    std::vector<std::uint8_t> held;  // TLS's own output taken from wolfSSL, unsent
    int send_errno = 0;              // a hard send error met while flushing `held`
    // Client sessions: a send to a peer that reset the connection is taken
    // as sent (those bytes can never arrive), so that wolfSSL goes on to read
    // what the peer said before it closed: a server refusing our client
    // certificate sends its alert, closes, and our next handshake message
    // or first frame meets the reset; the alert is still in the socket.
    // With nothing there, the read reports the reset.
    bool read_after_reset = false;
    // Read-ahead (edge-triggered callers only: Session::read_in_passes).
    // wolfSSL asks for a record's 5-byte header, then for its body: two
    // receives per small record.  A receive for less than ahead_size bytes
    // reads up to ahead_size instead and keeps the rest here for wolfSSL's
    // next receives: one system call per small record, or fewer.  Holds at
    // most ahead_size bytes, and memory only while it holds some; larger
    // receives (a large record's body) go straight to wolfSSL.
    static constexpr std::size_t ahead_size = 2048;
    bool read_ahead = false;
    std::vector<std::uint8_t> ahead;
    std::size_t ahead_used = 0;
    // The socket gave less than was asked in this pass: it was empty then,
    // and bytes that arrive later bring a new edge, so the pass asks no
    // more (begin_pass clears it).  Not once the peer may have closed: its
    // FIN may have come with the last bytes, and no edge would follow.
    bool drained = false;
    bool peer_may_have_closed = false;
    // The raw stream's record framing.
    std::uint8_t header[5] = {};
    std::size_t header_have = 0;
    std::size_t body_left = 0;
    SessionCounters counters;
    std::uint8_t first[16] = {};  // the stream's first bytes
    std::uint8_t first_have = 0;

    bool at_record_boundary() const { return header_have == 0 && body_left == 0; }
    void scan(const std::uint8_t* p, std::size_t n);
    // Up to `want` bytes into buf: from `ahead`, else from the socket;
    // bytes, or a negative wolfSSL I/O error.
    int receive(char* buf, std::size_t want);
    Io flush_held();
    bool output_blocked() const { return !held.empty() || own_blocked; }
};

namespace {

int translate_errno(int e) {
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return WOLFSSL_CBIO_ERR_WANT_READ;  // == WANT_WRITE
    case ECONNRESET: return WOLFSSL_CBIO_ERR_CONN_RST;
    case EINTR: return WOLFSSL_CBIO_ERR_ISR;
    case EPIPE:
    case ECONNABORTED: return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    default: return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

// ::send without SIGPIPE; bytes sent (0 when the socket is full), or -errno.
ssize_t send_some(int fd, const void* p, std::size_t n) {
    for (;;) {
        ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
        if (k >= 0) return k;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -errno;
    }
}

}  // namespace

// Follows the record framing of the bytes received (5-byte headers, then
// the length they give): counts whole records, against the pass's budget.
void SessionIo::scan(const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
        if (body_left > 0) {
            const auto k = std::min(n, body_left);
            body_left -= k;
            p += k;
            n -= k;
        } else {
            header[header_have++] = *p++;
            --n;
            if (header_have < sizeof header) continue;  // type, version (2), length (2)
            header_have = 0;
            body_left = std::size_t{header[3]} << 8 | header[4];
        }
        if (body_left == 0) {
            ++counters.records_in;
            if (record_budget > 0) --record_budget;
        }
    }
}

// Sends what `held` has; done when it is empty.  After a hard error the
// bytes are dropped (they can never leave) and the error is kept.
Io SessionIo::flush_held() {
    while (!held.empty()) {
        ssize_t k = send_some(fd, held.data(), held.size());
        if (k == 0) return Io::want_write;
        if (k < 0) {
            send_errno = static_cast<int>(-k);
            held.clear();
            held.shrink_to_fit();
            return send_errno == EPIPE || send_errno == ECONNRESET ? Io::closed : Io::failed;
        }
        held.erase(held.begin(), held.begin() + k);
    }
    if (held.capacity() > 4096) held.shrink_to_fit();
    return Io::done;
}

namespace {

int receive_cb(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto& io = *static_cast<SessionIo*>(ctx);
    if (!io.held.empty()) io.flush_held();
    if (io.output_blocked()) {
        io.stalled = true;
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    if (io.byte_budget == 0 || (io.record_budget == 0 && io.at_record_boundary())) {
        io.budget_spent = true;
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    const auto want = std::min(static_cast<std::size_t>(sz), io.byte_budget);
    const int n = io.receive(buf, want);
    if (n <= 0) return n;
    const auto got = static_cast<std::size_t>(n);
    io.byte_budget -= got;
    io.counters.bytes_in += got;
    for (std::size_t i = 0; i < got && io.first_have < sizeof io.first; ++i)
        io.first[io.first_have++] = static_cast<std::uint8_t>(buf[i]);
    io.scan(reinterpret_cast<const std::uint8_t*>(buf), got);
    return static_cast<int>(n);
}

}  // namespace

int SessionIo::receive(char* buf, std::size_t want) {
    if (ahead_used < ahead.size()) {
        const auto k = std::min(want, ahead.size() - ahead_used);
        std::memcpy(buf, ahead.data() + ahead_used, k);
        ahead_used += k;
        if (ahead_used == ahead.size()) {
            ahead.clear();
            ahead.shrink_to_fit();
            ahead_used = 0;
        }
        return static_cast<int>(k);
    }
    if (drained && !peer_may_have_closed) return WOLFSSL_CBIO_ERR_WANT_READ;
    const bool via_ahead = read_ahead && want < ahead_size;
    // One buffer for the whole thread: bytes only pass through it.
    thread_local std::uint8_t scratch[ahead_size];
    const std::size_t ask = via_ahead ? ahead_size : want;
    ssize_t n = ::recv(fd, via_ahead ? static_cast<void*>(scratch) : buf, ask, 0);
    if (n < 0) return translate_errno(errno);
    if (n == 0) return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    const auto got = static_cast<std::size_t>(n);
    if (read_ahead && got < ask) drained = true;
    if (!via_ahead) return static_cast<int>(got);
    const auto k = std::min(got, want);
    std::memcpy(buf, scratch, k);
    if (got > k) ahead.assign(scratch + k, scratch + got);
    return static_cast<int>(k);
}

namespace {

int send_cb(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto& io = *static_cast<SessionIo*>(ctx);
    const auto size = static_cast<std::size_t>(sz);
    // wolfSSL may keep what does not leave only while a write() is
    // unfinished (or running): the retried write sends it (see SessionIo).
    const bool wolfssl_may_keep = io.in_write || io.write_unfinished;
    std::size_t sent = 0;
    const Io before = io.flush_held();  // what is held is older: it goes first
    if (before == Io::closed || before == Io::failed) return translate_errno(io.send_errno);
    if (before == Io::done) {
        ssize_t k = send_some(io.fd, buf, size);
        if (k < 0 && io.read_after_reset && (k == -EPIPE || k == -ECONNRESET)) return sz;
        if (k < 0) return translate_errno(static_cast<int>(-k));
        sent = static_cast<std::size_t>(k);
    }
    if (sent == size) {
        io.own_blocked = false;
        io.wolfssl_holds = 0;
        return sz;
    }
    if (wolfssl_may_keep) {
        if (!io.in_write) io.own_blocked = true;
        io.wolfssl_holds = size - sent;
        return sent > 0 ? static_cast<int>(sent) : WOLFSSL_CBIO_ERR_WANT_WRITE;
    }
    io.held.insert(io.held.end(), buf + sent, buf + size);
    io.wolfssl_holds = 0;
    return sz;  // taken: wolfSSL's own buffer is empty again
}

}  // namespace

void Session::Free::operator()(WOLFSSL* s) const { wolfSSL_free(s); }

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Session::Session(std::shared_ptr<Context> ctx, int fd)
    : ctx_(std::move(ctx)), io_(std::make_unique<SessionIo>()), ssl_(wolfSSL_new(ctx_->get())) {
    WOLFSSL* ssl = ssl_.get();
    if (!ssl) throw TlsError("cannot create a TLS session (out of memory?)");
    const bool is_server = ctx_->side() == Side::server;
    if (wolfSSL_set_fd(ssl, fd) != WOLFSSL_SUCCESS)
        throw TlsError("cannot attach a TLS session to its socket");
    // Our own socket I/O (see SessionIo); wolfSSL_get_fd still names the fd.
    io_->fd = fd;
    wolfSSL_SSLSetIORecv(ssl, receive_cb);
    wolfSSL_SSLSetIOSend(ssl, send_cb);
    wolfSSL_SetIOReadCtx(ssl, io_.get());
    wolfSSL_SetIOWriteCtx(ssl, io_.get());
    // A peer that hangs up under a write is an error code (EPIPE: closed),
    // never a SIGPIPE that ends the process, whatever its signal disposition
    // (a server thread in a test, a program embedding the library).  Our
    // send callback passes MSG_NOSIGNAL itself; the flag stays set for
    // wolfSSL's own socket code.
    wolfSSL_SetIOWriteFlags(ssl, MSG_NOSIGNAL);
    // The server answers secmsg/1 or refuses a client that offers only other
    // protocols; a client that offers no ALPN at all is accepted.
    char proto[alpn_protocol.size() + 1];
    std::memcpy(proto, alpn_protocol.data(), alpn_protocol.size());
    proto[alpn_protocol.size()] = '\0';
    if (wolfSSL_UseALPN(ssl, proto, static_cast<unsigned>(alpn_protocol.size()),
                        is_server ? WOLFSSL_ALPN_FAILED_ON_MISMATCH
                                  : WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) != WOLFSSL_SUCCESS)
        throw TlsError("cannot set ALPN on a TLS session");
    if (!is_server) {
        io_->read_after_reset = true;
        peer_ = std::make_unique<PeerCheck>();
        peer_->want = ctx_->pin();
        wolfSSL_SetCertCbCtx(ssl, peer_.get());
    } else if (ctx_->client_policy().active()) {
        peer_ = std::make_unique<PeerCheck>();
        peer_->clients = &ctx_->client_policy();  // the context outlives the session
        wolfSSL_SetCertCbCtx(ssl, peer_.get());
    }
}

namespace {

// The name to check the certificate against.  wolfSSL writes an IPv6
// subjectAltName as eight groups of four hex digits ("0000:...:0001") and
// compares names as text, so an IPv6 literal is expanded to that form.
std::string name_for_check(const std::string& name) {
    in6_addr a{};
    if (::inet_pton(AF_INET6, name.c_str(), &a) != 1) return name;
    std::string out;
    char group[8];
    for (int i = 0; i < 16; i += 2) {
        std::snprintf(group, sizeof group, "%02X%02X", a.s6_addr[i], a.s6_addr[i + 1]);
        out += (i ? ":" : "") + std::string(group);
    }
    return out;
}

}  // namespace

void Session::set_server_name(const std::string& server_name) {
    if (server_name.empty()) return;
    const std::string name = name_for_check(server_name);
    // SNI carries host names only, never address literals (RFC 6066).
    bool literal = name.find(':') != std::string::npos ||
                   name.find_first_not_of("0123456789.") == std::string::npos;
    if (!literal)
        wolfSSL_UseSNI(ssl_.get(), WOLFSSL_SNI_HOST_NAME, name.data(),
                       static_cast<unsigned short>(name.size()));
    wolfSSL_check_domain_name(ssl_.get(), name.c_str());
}

namespace {

// Classifies a failed wolfSSL call.
Io classify(WOLFSSL* ssl, int ret, int& last_error) {
    int err = wolfSSL_get_error(ssl, ret);
    switch (err) {
    case WOLFSSL_ERROR_WANT_READ: return Io::want_read;
    case WOLFSSL_ERROR_WANT_WRITE: return Io::want_write;
    case WOLFSSL_ERROR_ZERO_RETURN:  // close_notify received
        last_error = err;
        return Io::closed;
    default: break;
    }
    last_error = err;
    if (err == SOCKET_PEER_CLOSED_E) return Io::closed;  // TCP FIN without close_notify
    if (err == SOCKET_ERROR_E) {
        // wolfSSL says "socket error" for a plain end of stream too (during
        // the handshake): the socket itself tells which it was.
        char byte;
        ssize_t n = ::recv(wolfSSL_get_fd(ssl), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) return Io::closed;
    }
    return Io::failed;
}

}  // namespace

Io Session::handshake() {
    if (io_->flush_held() == Io::want_write) return Io::want_write;
    io_->stalled = false;
    int ret = wolfSSL_negotiate(ssl_.get());
    if (ret == WOLFSSL_SUCCESS) return Io::done;    // its last flight may still be held: flush()
    Io r = classify(ssl_.get(), ret, last_error_);  // closed: the peer hung up first
    if (r == Io::want_read && io_->stalled) return Io::want_write;
    return r;
}

IoResult Session::read(std::span<std::uint8_t> buf) {
    if (io_->flush_held() == Io::want_write) return {Io::want_write, 0};
    io_->stalled = false;
    int want = static_cast<int>(std::min<std::size_t>(buf.size(), 1u << 30));
    const auto records_before = io_->counters.records_in;
    int ret = wolfSSL_read(ssl_.get(), buf.data(), want);
    // wolfSSL reads one record at a time and returns at the first one with
    // application data: every other record it completed had none.
    const auto records = io_->counters.records_in - records_before;
    io_->counters.records_without_data += ret > 0 && records > 0 ? records - 1 : records;
    if (ret > 0) return {Io::done, static_cast<std::size_t>(ret)};
    Io r = classify(ssl_.get(), ret, last_error_);
    if (r == Io::want_read && io_->stalled) return {Io::want_write, 0};
    return {r, 0, r == Io::want_read && io_->budget_spent};
}

IoResult Session::write(std::span<const std::uint8_t> buf) {
    if (buf.empty()) return {Io::done, 0};
    // TLS's own output first, in order; wolfSSL has not seen `buf` yet.
    if (io_->flush_held() == Io::want_write) return {Io::want_write, 0};
    int len = static_cast<int>(std::min<std::size_t>(buf.size(), 1u << 30));
    io_->in_write = true;
    int ret = wolfSSL_write(ssl_.get(), buf.data(), len);
    io_->in_write = false;
    if (ret > 0) {
        io_->write_unfinished = false;
        return {Io::done, static_cast<std::size_t>(ret)};
    }
    Io r = classify(ssl_.get(), ret, last_error_);
    io_->write_unfinished = r == Io::want_write;
    return {r, 0};
}

Io Session::flush() {
    Io r = io_->flush_held();
    if (r == Io::done && io_->own_blocked)
        return Io::want_write;  // leaves with the retried write()
    return r;
}

Io Session::shutdown() {
    if (Io r = io_->flush_held(); r != Io::done) return r == Io::want_write ? Io::want_write : r;
    // Once close_notify has left (wolfSSL records it), never call again:
    // a second wolfSSL_shutdown would wait for the peer's.
    if (wolfSSL_get_shutdown(ssl_.get()) & WOLFSSL_SENT_SHUTDOWN) return Io::done;
    int ret = wolfSSL_shutdown(ssl_.get());
    if (ret == WOLFSSL_SUCCESS || ret == WOLFSSL_SHUTDOWN_NOT_DONE)
        return io_->held.empty() ? Io::done : Io::want_write;  // held: the next call flushes it
    Io r = classify(ssl_.get(), ret, last_error_);
    if (r == Io::want_write || r == Io::want_read) return Io::want_write;
    return r;
}

void Session::begin_pass(std::size_t bytes, std::size_t records) {
    io_->byte_budget = bytes;
    io_->record_budget = records;
    io_->budget_spent = false;
    io_->drained = false;
}

void Session::read_in_passes() { io_->read_ahead = true; }

void Session::peer_may_have_closed() { io_->peer_may_have_closed = true; }

bool Session::budget_spent() const { return io_->budget_spent; }

bool Session::output_blocked() const { return io_->output_blocked(); }

std::size_t Session::pending_output() const { return io_->held.size() + io_->wolfssl_holds; }

const SessionCounters& Session::counters() const { return io_->counters; }

std::span<const std::uint8_t> Session::first_bytes() const { return {io_->first, io_->first_have}; }

bool Session::has_pending() const { return wolfSSL_has_pending(ssl_.get()) != 0; }

std::string Session::version() const {
    const char* v = wolfSSL_get_version(ssl_.get());
    return v ? v : "";
}

std::string Session::cipher() const {
    const char* c = wolfSSL_get_cipher_name(ssl_.get());
    return c ? c : "";
}

std::string Session::alpn() const {
    char* name = nullptr;
    unsigned short size = 0;
    if (wolfSSL_ALPN_GetProtocol(ssl_.get(), &name, &size) != WOLFSSL_SUCCESS || !name) return {};
    return std::string(name, size);
}

std::string Session::error_text() const {
    if (peer_ && peer_->clients) {  // a server asking for client certificates
        if (!peer_->refused.empty()) return "client certificate refused: " + peer_->refused;
        if (last_error_ == NO_PEER_CERT)
            return "the client presented no certificate (the client policy requires one)";
    }
    if (last_error_ == 0) return "no error";
    return wolfssl_reason(last_error_);
}

namespace {

// wolfSSL's reason, kept by the session after the failed call: the peer's
// certificate (CA chain, name, validity) or pin rejected here (the pin
// callback's refusal is VERIFY_CERT_ERROR).
bool rejected_certificate(WOLFSSL* ssl) {
    switch (wolfSSL_get_error(ssl, 0)) {
    case ASN_NO_SIGNER_E:
    case ASN_AFTER_DATE_E:
    case ASN_BEFORE_DATE_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_SELF_SIGNED_E:
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
    case VERIFY_CERT_ERROR:
    case BAD_CERT_MANAGER_ERROR:
    case ASN_PATHLEN_INV_E:
    case ASN_PATHLEN_SIZE_E:
    case NOT_CA_ERROR: return true;
    default: return false;
    }
}

const char* fatal_certificate_alert(WOLFSSL* ssl) {
    WOLFSSL_ALERT_HISTORY h{};
    if (wolfSSL_get_alert_history(ssl, &h) != WOLFSSL_SUCCESS || h.last_rx.level != alert_fatal)
        return nullptr;
    switch (h.last_rx.code) {
    case bad_certificate: return "bad_certificate";
    case unsupported_certificate: return "unsupported_certificate";
    case certificate_revoked: return "certificate_revoked";
    case certificate_expired: return "certificate_expired";
    case certificate_unknown: return "certificate_unknown";
    case unknown_ca: return "unknown_ca";
    case certificate_required: return "certificate_required";
    default: return nullptr;
    }
}

bool connection_dropped(WOLFSSL* ssl) {
    const int e = wolfSSL_get_error(ssl, 0);
    return e == SOCKET_PEER_CLOSED_E || e == SOCKET_ERROR_E || e == WOLFSSL_ERROR_ZERO_RETURN;
}

}  // namespace

Fault Session::fault() const {
    if (rejected_certificate(ssl_.get())) return Fault::rejected;
    if (fatal_certificate_alert(ssl_.get())) return Fault::refused;
    if (connection_dropped(ssl_.get())) return Fault::dropped;
    return wolfSSL_get_error(ssl_.get(), 0) == 0 ? Fault::none : Fault::other;
}

const char* Session::refusal_alert() const { return fatal_certificate_alert(ssl_.get()); }

std::string peer_pin(const Session& s) {
    const PeerCheck* check = s.peer_check();
    if (!check || !check->seen) return {};
    return format_pin(*check->seen);
}

}  // namespace secmsg::tls
