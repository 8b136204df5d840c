// wolfSSL wrappers shared by the daemon and the client: owners for contexts
// and sessions, and I/O results that say whether a call would block.
//
// Implemented in tls.cpp (sessions, library setup, server contexts) and
// tls_client.cpp (client contexts: CA verification, pinning).
#pragma once

#include "pin.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace secmsg::tls {

// Initialises wolfSSL once per process (idempotent).
void init();

// A TLS setup problem (file, key, certificate, option); what() is one clear line.
class TlsError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A certificate or pin rejected by the client.
class VerifyError : public TlsError {
public:
    using TlsError::TlsError;
};

enum class Version { tls12, tls13 };

// The TLS 1.3 suite order this build should prefer: AES-GCM first when
// wolfCrypt's AES runs on AES-NI, ChaCha20-Poly1305 first otherwise.
std::string default_ciphers();
std::string default_groups();  // X25519 first
// (whether AES runs on AES-NI: see build_info.hpp)

struct ServerOptions {
    std::string cert_file;   // PEM; ECDSA P-256 or Ed25519
    std::string key_file;    // PEM
    Version min_version = Version::tls13;
    std::string ciphers;     // empty: default_ciphers()
    std::string groups;      // empty: default_groups()
    bool session_tickets = true;
};

struct ClientOptions {
    std::string ca_file;      // empty: the system trust store
    std::string server_name;  // checked against the certificate, sent as SNI
    std::string pin;          // "sha256:BASE64" of the SubjectPublicKeyInfo; replaces CA checks
    bool insecure = false;    // no verification at all
    std::string ciphers;
    std::string groups;
};

// Owner of a WOLFSSL_CTX.  Move-only; an empty one is a no-op to destroy.
class Context {
public:
    Context() = default;
    // `pin`: for client contexts in pin mode, the digest the server
    // certificate's SubjectPublicKeyInfo must have (see PeerCheck).
    explicit Context(WOLFSSL_CTX* ctx, std::optional<PinDigest> pin = {}) : ctx_(ctx), pin_(pin) {}
    ~Context();
    Context(Context&& o) noexcept : ctx_(o.ctx_), pin_(o.pin_) { o.ctx_ = nullptr; }
    Context& operator=(Context&& o) noexcept;
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    WOLFSSL_CTX* get() const { return ctx_; }
    const std::optional<PinDigest>& pin() const { return pin_; }
    explicit operator bool() const { return ctx_ != nullptr; }

private:
    WOLFSSL_CTX* ctx_ = nullptr;
    std::optional<PinDigest> pin_;
};

// Builds a server context; throws TlsError naming the file or option at fault.
std::shared_ptr<Context> make_server_context(const ServerOptions& o);
// Builds a client context (tls_client.cpp); throws TlsError.
std::shared_ptr<Context> make_client_context(const ClientOptions& o);

// A client session's check of the server certificate: the pin its context
// requires, if any, and the digest of the server's (leaf) certificate key
// once the handshake has shown it.  Each client Session owns one and hands
// it to wolfSSL as the verify callback's context; the callback
// (tls_client.cpp, installed by make_client_context) fills `seen` and
// judges `want`.  Works without wolfSSL's OpenSSL layer or session
// certificate copies, which cost 22 KiB per session.
struct PeerCheck {
    std::optional<PinDigest> want;
    std::optional<PinDigest> seen;
};

enum class Io { done, want_read, want_write, closed, failed };

struct IoResult {
    Io status;
    std::size_t bytes = 0;  // for read and write: bytes moved when done
};

// Owner of a WOLFSSL session bound to a non-blocking fd it does not own.
// Keeps its context alive.  Move-only.  The side (server or client) is the
// one of the context's method.
class Session {
public:
    // Throws TlsError.  A client session (is_server false) also owns its
    // PeerCheck.
    Session(std::shared_ptr<Context> ctx, int fd, bool is_server);
    ~Session();
    Session(Session&& o) noexcept;
    Session& operator=(Session&& o) noexcept;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // For clients: the name for SNI and certificate checks (before handshake).
    void set_server_name(const std::string& name);

    Io handshake();  // done when established; closed if the peer hung up, failed on a TLS error
    IoResult read(std::span<std::uint8_t> buf);  // done with bytes > 0, or a would-block/closed/failed
    // After want_read or want_write, call again with the same buffer and length.
    IoResult write(std::span<const std::uint8_t> buf);
    // Sends close_notify once (done, or want_write to flush); never waits for the peer's.
    Io shutdown();
    // Bytes already decrypted inside wolfSSL, invisible to epoll.
    bool has_pending() const;

    std::string version() const;     // "TLSv1.3"
    std::string cipher() const;      // suite name
    std::string alpn() const;        // negotiated ALPN, empty if none
    std::string error_text() const;  // after failed: wolfSSL's reason
    // Client sessions: what the certificate check saw; null for servers.
    const PeerCheck* peer_check() const { return peer_.get(); }
    WOLFSSL* get() const { return ssl_; }

private:
    std::shared_ptr<Context> ctx_;
    std::unique_ptr<PeerCheck> peer_;  // on the heap: wolfSSL keeps its address
    WOLFSSL* ssl_ = nullptr;
    int last_error_ = 0;
};

}  // namespace secmsg::tls
