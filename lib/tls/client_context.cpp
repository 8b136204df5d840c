// Client TLS contexts: TLS 1.3 only, X25519 offered first, and one of three
// trust modes -- CA verification (--ca-file or the system store, plus the
// server name, checked per session by Session::set_server_name), a pin of
// the server's SubjectPublicKeyInfo instead of any CA, or none (--insecure).
#include "tls/client_context.hpp"

#include "keys/credentials.hpp"
#include "keys/files.hpp"
#include "keys/pin.hpp"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

namespace secmsg::tls {

namespace {

// Verify callback of every client context, whatever the trust mode; its
// context is the session's PeerCheck (Session sets it).  Both wolfSSL builds
// define WOLFSSL_ALWAYS_VERIFY_CB, so it runs for the leaf certificate even
// when that passed, and even under WOLFSSL_VERIFY_NONE (--insecure); Debian's
// also runs it for each intermediate.  Every call sees the whole chain as
// received, the leaf first (certs[0]): it records the leaf's key digest
// (for peer_pin) and judges the leaf.  In pin mode the handshake goes on
// exactly when that digest is the pinned one, whatever the CA checks said
// (no CA is loaded then); otherwise wolfSSL's own verdict stands unchanged
// (`preverify`: 1 when its checks passed, else 0 with its error code kept).
int check_server_certificate(int preverify, WOLFSSL_X509_STORE_CTX* store) noexcept {
    auto* check = store ? static_cast<PeerCheck*>(store->userCtx) : nullptr;
    if (!check) return preverify;
    std::optional<PinDigest> leaf;
    if (store->certs && store->totalCerts >= 1) {
        try {
            leaf = pin_digest_of_der({store->certs[0].buffer, store->certs[0].length});
        } catch (...) {  // not a certificate (PinError); nothing may cross into wolfSSL
        }
    }
    if (leaf) check->seen = leaf;
    if (check->want) return leaf && *leaf == *check->want ? 1 : 0;
    return preverify;
}

// The client certificate (chain) and its key, for servers that ask for one
// (mutual TLS): both files checked as the daemon checks its own (a key
// others can read is refused), and the key proven to be the certificate's
// (same public key).  Throws TlsError naming the file at fault.
void present_certificate(WOLFSSL_CTX* c, const ClientOptions& o) {
    if (o.cert_file.empty() || o.key_file.empty())
        throw TlsError("a client certificate and its private key go together: give both",
                       Setting::certificate_pair);
    SecretBytes cert, key;
    try {
        cert = read_credential_file(o.cert_file, CredentialKind::certificate).bytes;
        key = read_credential_file(o.key_file, CredentialKind::private_key).bytes;
    } catch (const KeyFileError& e) {
        throw TlsError(e.what());
    }
    if (wolfSSL_CTX_use_certificate_chain_buffer_format(c, cert.data(),
                                                        static_cast<long>(cert.size()),
                                                        WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        throw TlsError("certificate file " + o.cert_file + " holds no usable PEM certificate",
                       Setting::certificate);
    if (wolfSSL_CTX_use_PrivateKey_buffer(c, key.data(), static_cast<long>(key.size()),
                                          WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        throw TlsError("private key file " + o.key_file +
                           " holds no usable PEM private key (ECDSA P-256 or Ed25519)",
                       Setting::private_key);
    std::string cert_pin, key_pin;
    try {
        cert_pin = pin_of_certificate({cert.data(), cert.size()});
        key_pin = pin_of_private_key(o.key_file, key);
    } catch (const std::exception& e) {
        throw TlsError(e.what());
    }
    if (cert_pin != key_pin)
        throw TlsError("private key " + o.key_file + " does not belong to certificate " +
                       o.cert_file + " (their public keys differ)");
}

}  // namespace

std::shared_ptr<Context> make_client_context(const ClientOptions& o) {
    init();
    // In pin mode the context carries the pin; each Session copies it into
    // its PeerCheck.
    std::optional<PinDigest> pin;
    if (!o.insecure && !o.pin.empty()) {
        pin = parse_pin(o.pin);
        if (!pin)
            throw TlsError(o.pin + " is not a pin: expected sha256: and the base64 of 32 bytes",
                           Setting::pin);
    }
    auto ctx =
        std::make_shared<Context>(wolfSSL_CTX_new(wolfTLSv1_3_client_method()), Side::client, pin);
    if (!*ctx) throw TlsError("cannot create a wolfSSL client context (out of memory?)");
    WOLFSSL_CTX* c = ctx->get();

    const std::string ciphers = o.ciphers.empty() ? default_ciphers() : o.ciphers;
    if (wolfSSL_CTX_set_cipher_list(c, ciphers.c_str()) != WOLFSSL_SUCCESS)
        throw TlsError("this wolfSSL supports none of the cipher suites " + ciphers);

    // The group list decides the key share a wolfSSL client sends: its first
    // entry.  Without this Debian's wolfSSL offers a P-256 share only.
    const std::string groups = o.groups.empty() ? default_groups() : o.groups;
    set_groups(*ctx, groups);

    if (!o.cert_file.empty() || !o.key_file.empty()) present_certificate(c, o);

    if (o.insecure) {
        wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_NONE, check_server_certificate);
    } else if (pin) {
        wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, check_server_certificate);
    } else {
        const std::string& file = o.ca_file.empty() ? std::string(system_ca_file) : o.ca_file;
        const int rc = wolfSSL_CTX_load_verify_locations(c, file.c_str(), nullptr);
        if (rc != WOLFSSL_SUCCESS) {
            if (o.ca_file.empty())
                throw TlsError("cannot load the system trust store " + file, Setting::trust_store);
            throw TlsError("cannot load CA certificates from " + file +
                               ": not a readable PEM certificate file",
                           Setting::ca_file);
        }
        wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, check_server_certificate);
    }
    return ctx;
}

std::string key_exchange_group(const Session& s) {
    const char* name = wolfSSL_get_curve_name(s.get());
    return name ? name : "";
}

}  // namespace secmsg::tls
