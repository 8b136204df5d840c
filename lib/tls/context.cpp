// Library set-up and server contexts (see context.hpp): the suite and
// group policy, the certificate and key loaded and proven by a handshake
// with itself, the client-certificate policy and its verify callback.
// Client contexts are client_context.cpp's.
#include "tls/context.hpp"
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

namespace {

constexpr std::string_view tls13_aes_first =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256";
constexpr std::string_view tls13_chacha_first =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384";
// TLS 1.2, only when --tls-min-version 1.2: ECDHE key exchange, AEAD only.
// The certificate is ECDSA or Ed25519, so only ECDSA-authenticated suites.
constexpr std::string_view tls12_aes_first =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305";
constexpr std::string_view tls12_chacha_first =
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384";

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    while (!s.empty()) {
        auto pos = s.find(sep);
        auto item = s.substr(0, pos);
        if (!item.empty()) out.push_back(item);
        if (pos == std::string_view::npos) break;
        s.remove_prefix(pos + 1);
    }
    return out;
}

bool is_tls13_suite(std::string_view s) { return s.starts_with("TLS13-") || s.starts_with("TLS_"); }

// TLS 1.2 suites allowed at all: ECDHE key exchange with an AEAD cipher.
bool is_allowed_tls12_suite(std::string_view s) {
    bool ecdhe = s.starts_with("ECDHE-");
    bool aead = s.find("-GCM-") != std::string_view::npos ||
                s.find("CHACHA20-POLY1305") != std::string_view::npos ||
                s.find("-CCM") != std::string_view::npos;
    return ecdhe && aead;
}

// The group names we accept, with their TLS codepoints.
int group_id(std::string_view name) {
    if (name == "X25519" || name == "x25519") return WOLFSSL_ECC_X25519;
    if (name == "P-256" || name == "secp256r1" || name == "prime256v1")
        return WOLFSSL_ECC_SECP256R1;
    if (name == "P-384" || name == "secp384r1") return WOLFSSL_ECC_SECP384R1;
    if (name == "P-521" || name == "secp521r1") return WOLFSSL_ECC_SECP521R1;
    return 0;
}

// Reads a whole certificate or key file into wiped memory, checked as
// read_credential_file does for its kind; throws TlsError naming it.
SecretBytes read_secret_file(const std::string& path, CredentialKind kind) {
    try {
        return read_credential_file(path, kind).bytes;
    } catch (const KeyFileError& e) {
        throw TlsError(e.what());
    }
}

}  // namespace

std::string wolfssl_reason(int err) {
    char buf[WOLFSSL_MAX_ERROR_SZ] = {};
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), buf, sizeof buf);
    return buf;
}

void init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (wolfSSL_Init() != WOLFSSL_SUCCESS) throw TlsError("wolfSSL initialisation failed");
    });
}

std::string default_ciphers() {
    return std::string(aes_uses_hardware() ? tls13_aes_first : tls13_chacha_first);
}

std::string default_groups() { return "X25519:P-256:P-384"; }

void set_groups(Context& ctx, const std::string& groups) {
    std::vector<int> ids;
    for (auto g : split(groups, ':')) {
        const int id = group_id(g);
        if (id == 0)
            throw TlsError("unknown key exchange group " + std::string(g) +
                           " (known: X25519, P-256, P-384, P-521)");
        ids.push_back(id);
    }
    if (ids.empty()) throw TlsError("the key exchange group list is empty");
    if (wolfSSL_CTX_set_groups(ctx.get(), ids.data(), static_cast<int>(ids.size())) !=
        WOLFSSL_SUCCESS)
        throw TlsError("this wolfSSL does not support the key exchange groups " + groups);
}

void Context::Free::operator()(WOLFSSL_CTX* c) const { wolfSSL_CTX_free(c); }

namespace {

bool loopback_handshake(const std::shared_ptr<Context>& server_ctx);

// Verify callback of server contexts that ask for client certificates; its
// context is the session's PeerCheck (Session sets it).  Both wolfSSL
// builds define WOLFSSL_ALWAYS_VERIFY_CB, so it runs for the client's leaf
// certificate even when that passed (Debian's build also for each
// intermediate); every call sees the chain as received, the leaf first.
// The leaf is judged by judge_client with wolfSSL's verdict on the chain
// (`preverify`; only consulted with --client-ca, when no CA is loaded it
// is always "no signer"): accepted, the identity is kept and the handshake
// goes on; refused, the reason is kept for the log and wolfSSL sends the
// client a bad_certificate alert.  Nothing of the certificate is kept but
// its key's digest and the identity.
int check_client_certificate(int preverify, WOLFSSL_X509_STORE_CTX* store) noexcept {
    auto* check = store ? static_cast<PeerCheck*>(store->userCtx) : nullptr;
    if (!check || !check->clients) return 0;  // never accept what was not judged
    check->identity.clear();
    if (!store->certs || store->totalCerts < 1) {
        check->refused = "no certificate to judge";
        return 0;
    }
    const std::span<const std::uint8_t> leaf{store->certs[0].buffer, store->certs[0].length};
    try {
        check->seen = pin_digest_of_der(leaf);
        const ChainCheck chain = preverify == 1 ? ChainCheck::verified : ChainCheck::not_verified;
        const std::string why = chain == ChainCheck::verified ? "" : wolfssl_reason(store->error);
        ClientVerdict v = judge_client(*check->clients, leaf, *check->seen, chain, why);
        if (v.accepted) {
            check->identity = std::move(v.identity);
            check->refused.clear();
            return 1;
        }
        check->refused = std::move(v.why);
    } catch (const std::exception& e) {  // nothing may cross into wolfSSL
        check->refused = std::string("unreadable certificate: ") + e.what();
    } catch (...) {
        check->refused = "unreadable certificate";
    }
    return 0;
}

// The client policy of `o` (see ServerOptions) installed on `ctx`: the CA
// file loaded, the verify callback, resumption off.  Nothing when neither
// option is given.  Throws TlsError naming the file or entry at fault.
void ask_for_client_certificates(Context& ctx, const ServerOptions& o) {
    WOLFSSL_CTX* c = ctx.get();
    ClientPolicy policy;
    policy.require_ca = !o.client_ca_file.empty();
    for (const auto& text : o.allow_clients) {
        try {
            policy.allowed.push_back(parse_allowed_client(text));
        } catch (const ClientIdentityError& e) {
            throw TlsError(e.what(), Setting::allowed_client);
        }
        if (!policy.require_ca && policy.allowed.back().kind != AllowedClient::Kind::pin)
            throw TlsError("allowed client " + text +
                               " names a client by a name in its certificate, which only a CA can "
                               "vouch for (a self-signed certificate may claim any name): give a "
                               "client CA, or allow the client's key pin instead",
                           Setting::allowed_client);
    }
    if (!policy.active()) {
        wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_NONE, nullptr);
        return;
    }
    if (policy.require_ca) {
        auto ca = read_secret_file(o.client_ca_file, CredentialKind::certificate);
        if (wolfSSL_CTX_load_verify_buffer(c, ca.data(), static_cast<long>(ca.size()),
                                           WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
            throw TlsError(
                "client CA file " + o.client_ca_file + " holds no usable PEM CA certificate",
                Setting::client_ca);
    }
    wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           check_client_certificate);
    // A resumed session shows no certificate: every connection must show
    // one to the policy in force (which a reload may have changed).
    wolfSSL_CTX_NoTicketTLSv12(c);
    wolfSSL_CTX_no_ticket_TLSv13(c);
    wolfSSL_CTX_set_session_cache_mode(c, WOLFSSL_SESS_CACHE_OFF);
    ctx.set_client_policy(std::move(policy));
}

}  // namespace

std::shared_ptr<Context> make_server_context(const ServerOptions& o) {
    init();
    if (o.cert_file.empty()) throw TlsError("no certificate file given", Setting::certificate);
    if (o.key_file.empty()) throw TlsError("no private key file given", Setting::private_key);

    auto ctx = std::make_shared<Context>(wolfSSL_CTX_new(wolfSSLv23_server_method()), Side::server);
    if (!*ctx) throw TlsError("cannot create a wolfSSL server context (out of memory?)");
    WOLFSSL_CTX* c = ctx->get();

    int minv = o.min_version == Version::tls13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
    if (wolfSSL_CTX_SetMinVersion(c, minv) != WOLFSSL_SUCCESS)
        throw TlsError("this wolfSSL cannot set the minimum TLS version");

    // Suites: validated here so that a configuration can never weaken the
    // policy (TLS 1.3 suites, or TLS 1.2 ECDHE + AEAD only).
    std::string ciphers = o.ciphers;
    if (ciphers.empty()) {
        ciphers = default_ciphers();
        if (o.min_version == Version::tls12)
            ciphers +=
                ":" + std::string(aes_uses_hardware() ? tls12_aes_first : tls12_chacha_first);
    }
    bool any13 = false;
    bool any12 = false;
    for (auto s : split(ciphers, ':')) {
        if (is_tls13_suite(s)) {
            any13 = true;
        } else if (is_allowed_tls12_suite(s)) {
            if (o.min_version == Version::tls13)
                throw TlsError("cipher suite " + std::string(s) +
                                   " is TLS 1.2; it needs TLS 1.2 as the lowest version",
                               Setting::tls_version);
            any12 = true;
        } else {
            throw TlsError("cipher suite " + std::string(s) +
                           " is not allowed (TLS 1.3 suites, or TLS 1.2 ECDHE with AES-GCM or "
                           "ChaCha20-Poly1305 only)");
        }
    }
    if (!any13 && !any12) throw TlsError("the cipher suite list is empty");
    if (wolfSSL_CTX_set_cipher_list(c, ciphers.c_str()) != WOLFSSL_SUCCESS)
        throw TlsError("this wolfSSL supports none of the cipher suites " + ciphers);

    std::string groups = o.groups.empty() ? default_groups() : o.groups;
    set_groups(*ctx, groups);

    {
        auto cert = read_secret_file(o.cert_file, CredentialKind::certificate);
        if (wolfSSL_CTX_use_certificate_chain_buffer_format(
                c, cert.data(), static_cast<long>(cert.size()), WOLFSSL_FILETYPE_PEM) !=
            WOLFSSL_SUCCESS)
            throw TlsError("certificate file " + o.cert_file +
                               " holds no usable PEM certificate (ECDSA P-256 or Ed25519)",
                           Setting::certificate);
    }
    {
        auto key = read_secret_file(o.key_file, CredentialKind::private_key);
        int rc = wolfSSL_CTX_use_PrivateKey_buffer(c, key.data(), static_cast<long>(key.size()),
                                                   WOLFSSL_FILETYPE_PEM);
        if (rc != WOLFSSL_SUCCESS)
            throw TlsError("private key file " + o.key_file +
                               " holds no usable PEM private key (ECDSA P-256 or Ed25519): " +
                               wolfssl_reason(rc),
                           Setting::private_key);
    }
    if (wolfSSL_CTX_check_private_key(c) != WOLFSSL_SUCCESS || !loopback_handshake(ctx))
        throw TlsError("private key " + o.key_file + " does not match certificate " + o.cert_file);

    if (!o.session_tickets) {
        wolfSSL_CTX_NoTicketTLSv12(c);
        wolfSSL_CTX_no_ticket_TLSv13(c);
    }
    // The server's flight (ServerHello to Finished) leaves in one send
    // instead of one per message: four system calls fewer per handshake.
    if (wolfSSL_CTX_set_group_messages(c) != WOLFSSL_SUCCESS)
        throw TlsError("this wolfSSL cannot group handshake messages");
    ask_for_client_certificates(*ctx, o);
    return ctx;
}

namespace {

// wolfSSL_CTX_check_private_key does not catch every mismatched ECDSA key, so
// the context proves itself: one TLS handshake with itself over a socket
// pair, whose CertificateVerify the client checks against the certificate.
bool loopback_handshake(const std::shared_ptr<Context>& server_ctx) {
    int raw[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, raw) != 0)
        throw TlsError(std::string("cannot test the certificate and key: socketpair: ") +
                       std::strerror(errno));
    const Fd server_end(raw[0]), client_end(raw[1]);  // closed on every path
    auto client_ctx =
        std::make_shared<Context>(wolfSSL_CTX_new(wolfSSLv23_client_method()), Side::client);
    bool ok = false;
    if (*client_ctx) {
        wolfSSL_CTX_set_verify(client_ctx->get(), WOLFSSL_VERIFY_NONE, nullptr);
        Session server(server_ctx, server_end.get());
        Session client(client_ctx, client_end.get());
        Io s = Io::want_read;
        Io c = Io::want_read;
        for (int i = 0; i < 50; ++i) {
            if (c != Io::done) c = client.handshake();
            if (s != Io::done) s = server.handshake();
            if (s == Io::failed || c == Io::failed || s == Io::closed || c == Io::closed) break;
            if (s == Io::done && c == Io::done) {
                ok = true;
                break;
            }
        }
    }
    return ok;
}

}  // namespace

}  // namespace secmsg::tls
