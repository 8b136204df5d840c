// wolfSSL contexts and the library's set-up: the TLS settings a program
// gives (ServerOptions, ClientOptions), the errors a bad one raises, and the
// owner of a WOLFSSL_CTX that knows its side.  Sessions on a context are
// session.hpp's.
//
// Implemented in context.cpp (library set-up, server contexts) and
// client_context.cpp (client contexts: CA verification, pinning).
#pragma once

#include "keys/client_identity.hpp"
#include "keys/pin.hpp"
#include "keys/setup_error.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct WOLFSSL_CTX;

namespace secmsg::tls {

// Initialises wolfSSL once per process (idempotent).
void init();

// wolfSSL's text for one of its error codes.
std::string wolfssl_reason(int err);

// The setting a TLS setup problem is about, so that each program can name
// its own option and say how to fix it (the library names no program's
// flags).
enum class Setting {
    none,
    certificate,       // the certificate file
    private_key,       // the private key file
    certificate_pair,  // a client's certificate and key: both or neither
    pin,               // the pin of the server's key
    ca_file,           // CA certificates that verify the server
    trust_store,       // the system's CA certificates (no CA file given)
    client_ca,         // CA certificates that verify clients
    allowed_client,    // an entry of the server's list of allowed clients
    tls_version,       // the lowest TLS version accepted
};

// A TLS setup problem (file, key, certificate, option); what() is one clear
// line that says what failed, about() which setting it concerns.
class TlsError : public SetupError {
public:
    explicit TlsError(const std::string& what, Setting about = Setting::none)
        : SetupError(what), about_(about) {}
    Setting about() const { return about_; }

private:
    Setting about_;
};

// A certificate or pin rejected by the client.
class VerifyError : public TlsError {
public:
    using TlsError::TlsError;
};

enum class Version { tls12, tls13 };

// Which end of the connection a context's sessions are.
enum class Side { server, client };

// The TLS 1.3 suite order this build should prefer: AES-GCM first when
// wolfCrypt's AES runs on AES-NI, ChaCha20-Poly1305 first otherwise.
std::string default_ciphers();
std::string default_groups();  // X25519 first
// (whether AES runs on AES-NI: see build_info.hpp)

struct ServerOptions {
    std::string cert_file;  // PEM; ECDSA P-256 or Ed25519
    std::string key_file;   // PEM
    Version min_version = Version::tls13;
    std::string ciphers;  // empty: default_ciphers()
    std::string groups;   // empty: default_groups()
    bool session_tickets = true;
    // Mutual TLS (both empty: no client certificate is asked for).  With
    // either, every client must present a certificate: one that chains to
    // a CA of client_ca_file (PEM) when given, and one whose key pin or
    // subjectAltName is among allow_clients when any (names need the CA).
    // Session tickets and the session cache are then off, so that every
    // connection shows its certificate to the policy in force.
    std::string client_ca_file;
    std::vector<std::string> allow_clients;  // "sha256:PIN" or a name (client_identity.hpp)
};

struct ClientOptions {
    std::string cert_file;    // PEM client certificate (chain) to present, with key_file
    std::string key_file;     // PEM private key of cert_file (checked like the daemon's)
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
    // Takes `ctx` (null when wolfSSL could not make one: test with bool),
    // made with a method of `side`.  `pin`: for client contexts in pin
    // mode, the digest the server certificate's SubjectPublicKeyInfo must
    // have (see PeerCheck).
    Context(WOLFSSL_CTX* ctx, Side side, std::optional<PinDigest> pin = {})
        : ctx_(ctx), side_(side), pin_(pin) {}
    WOLFSSL_CTX* get() const { return ctx_.get(); }
    // The side its sessions take.
    Side side() const { return side_; }
    const std::optional<PinDigest>& pin() const { return pin_; }
    // For server contexts: the client certificates accepted (see
    // ServerOptions); inactive when none are asked for.
    const ClientPolicy& client_policy() const { return clients_; }
    void set_client_policy(ClientPolicy p) { clients_ = std::move(p); }
    explicit operator bool() const { return ctx_ != nullptr; }

private:
    struct Free {
        void operator()(WOLFSSL_CTX* c) const;
    };
    std::unique_ptr<WOLFSSL_CTX, Free> ctx_;
    Side side_;
    std::optional<PinDigest> pin_;
    ClientPolicy clients_;
};

// Sets the key exchange groups of `ctx` from a list like "X25519:P-256",
// in order (a client's key share is for the first).  Throws TlsError for an
// unknown name, an empty list, or groups this wolfSSL cannot use.
void set_groups(Context& ctx, const std::string& groups);

// Builds a server context; throws TlsError naming the file or option at fault.
std::shared_ptr<Context> make_server_context(const ServerOptions& o);
// Builds a client context (client_context.cpp); throws TlsError.
std::shared_ptr<Context> make_client_context(const ClientOptions& o);

}  // namespace secmsg::tls
