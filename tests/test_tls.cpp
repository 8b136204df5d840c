// tls::Session and make_server_context through a real socket pair: both ends
// non-blocking, driven in one thread.  Certificates are made at test time by
// python3-cryptography (an implementation outside this codebase).
#include "tls.hpp"

#include "build_info.hpp"

#include <doctest/doctest.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace secmsg;
using tls::Io;

namespace {

// A temporary directory with certificates, removed at the end.
struct CertDir {
    fs::path dir;
    CertDir() {
        char tmpl[] = "/tmp/secmsg-tls-test-XXXXXX";
        dir = ::mkdtemp(tmpl);
        const char* py = R"PY(
import sys, datetime, os
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
d = sys.argv[1]
now = datetime.datetime.utcnow()
def make(name, key, algo):
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, algo))
    open(d + "/" + name + ".crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(d + "/" + name + ".key", "wb").write(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(d + "/" + name + ".key", 0o600)  # secmsgd refuses a key others can read
make("ecdsa", ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
make("ed25519", ed25519.Ed25519PrivateKey.generate(), None)
make("other", ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
os.chmod(sys.argv[0], 0o600)  # this script is also the test's "not a key" key file
)PY";
        std::ofstream(dir / "gen.py") << py;
        std::string cmd = "/usr/bin/python3 " + (dir / "gen.py").string() + " " + dir.string();
        REQUIRE(std::system(cmd.c_str()) == 0);
    }
    ~CertDir() { fs::remove_all(dir); }
    std::string operator()(const std::string& f) const { return (dir / f).string(); }
};

const CertDir& certs() {
    static CertDir d;
    return d;
}

tls::ServerOptions server_opts(const std::string& kind) {
    tls::ServerOptions o;
    o.cert_file = certs()(kind + ".crt");
    o.key_file = certs()(kind + ".key");
    return o;
}

struct Pair {
    int fds[2] = {-1, -1};
    Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0); }
    ~Pair() {
        ::close(fds[0]);
        ::close(fds[1]);
    }
};

// A raw wolfSSL client context (the real one is tls_client.cpp's, and it
// verifies; here the server side is under test).
std::shared_ptr<tls::Context> raw_client_ctx(bool tls12_only = false) {
    tls::init();
    auto ctx = std::make_shared<tls::Context>(
        wolfSSL_CTX_new(tls12_only ? wolfTLSv1_2_client_method() : wolfSSLv23_client_method()));
    REQUIRE(*ctx);
    wolfSSL_CTX_set_verify(ctx->get(), WOLFSSL_VERIFY_NONE, nullptr);
    return ctx;
}

// Drives both handshakes until both are done or one fails.
bool handshake_both(tls::Session& server, tls::Session& client) {
    Io s = Io::want_read, c = Io::want_read;
    for (int i = 0; i < 100; ++i) {
        if (c != Io::done) c = client.handshake();
        if (s != Io::done) s = server.handshake();
        if (s == Io::failed || c == Io::failed || s == Io::closed || c == Io::closed) return false;
        if (s == Io::done && c == Io::done) return true;
    }
    return false;
}

}  // namespace

TEST_CASE("tls: ECDSA P-256 handshake, TLS 1.3, ALPN, X25519, data both ways, close_notify once") {
    auto sctx = tls::make_server_context(server_opts("ecdsa"));
    Pair p;
    tls::Session server(sctx, p.fds[0], true);
    tls::Session client(raw_client_ctx(), p.fds[1], false);
    // The default client offers only a P-256 key share; ask for X25519 first.
    int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
    REQUIRE(wolfSSL_set_groups(client.get(), groups, 2) == WOLFSSL_SUCCESS);
    REQUIRE(handshake_both(server, client));
    CHECK(server.version() == "TLSv1.3");
    CHECK(server.alpn() == "secmsg/1");
    CHECK(client.alpn() == "secmsg/1");
    CHECK(server.cipher().find("TLS13") != std::string::npos);
    CHECK(std::string(wolfSSL_get_curve_name(server.get())) == "X25519");

    // Nothing to read yet: want_read, not an error.
    std::array<std::uint8_t, 16384> buf{};
    CHECK(server.read(buf).status == Io::want_read);

    // A large write that fills the socket: want_write, then retried with the
    // same buffer while the other side drains.
    std::vector<std::uint8_t> big(1 << 20);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7);
    std::vector<std::uint8_t> got;
    bool written = false;
    int want_writes = 0;
    for (int i = 0; i < 100000 && got.size() < big.size(); ++i) {
        if (!written) {
            auto w = client.write(big);
            if (w.status == Io::done) {
                CHECK(w.bytes == big.size());
                written = true;
            } else {
                REQUIRE(w.status == Io::want_write);
                ++want_writes;
            }
        }
        for (;;) {
            auto r = server.read(buf);
            if (r.status != Io::done) {
                REQUIRE(r.status == Io::want_read);
                break;
            }
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(r.bytes));
        }
    }
    CHECK(want_writes > 0);
    CHECK(got == big);

    // Several small records, read one small chunk at a time: has_pending says
    // bytes wait inside wolfSSL although the socket itself is drained.
    const std::string hello = "hello, pending bytes";
    REQUIRE(server.write({reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size()}).status == Io::done);
    std::array<std::uint8_t, 4> small{};
    auto r = client.read(small);
    REQUIRE(r.status == Io::done);
    CHECK(r.bytes == 4);
    CHECK(client.has_pending());
    std::string echoed(reinterpret_cast<char*>(small.data()), 4);
    while (client.has_pending()) {
        r = client.read(small);
        REQUIRE(r.status == Io::done);
        echoed.append(reinterpret_cast<char*>(small.data()), r.bytes);
    }
    CHECK(echoed == hello);
    CHECK(client.read(small).status == Io::want_read);

    // close_notify: done (sent once), repeated calls are no-ops, the peer sees closed.
    CHECK(server.shutdown() == Io::done);
    CHECK(server.shutdown() == Io::done);
    CHECK(client.read(buf).status == Io::closed);
}

TEST_CASE("tls: Ed25519 certificate") {
    auto sctx = tls::make_server_context(server_opts("ed25519"));
    Pair p;
    tls::Session server(sctx, p.fds[0], true);
    tls::Session client(raw_client_ctx(), p.fds[1], false);
    REQUIRE(handshake_both(server, client));
    CHECK(server.version() == "TLSv1.3");
}

TEST_CASE("tls: ALPN: other protocols only are refused, no ALPN is accepted") {
    auto sctx = tls::make_server_context(server_opts("ecdsa"));
    auto cctx = raw_client_ctx();
    {
        Pair p;
        tls::Session server(sctx, p.fds[0], true);
        WOLFSSL* c = wolfSSL_new(cctx->get());
        wolfSSL_set_fd(c, p.fds[1]);
        char other[] = "http/1.1";
        wolfSSL_UseALPN(c, other, 8, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
        Io s = Io::want_read;
        for (int i = 0; i < 50 && s != Io::failed && s != Io::done; ++i) {
            wolfSSL_connect(c);
            s = server.handshake();
        }
        CHECK(s == Io::failed);
        CHECK(!server.error_text().empty());
        wolfSSL_free(c);
    }
    {
        Pair p;
        tls::Session server(sctx, p.fds[0], true);
        WOLFSSL* c = wolfSSL_new(cctx->get());
        wolfSSL_set_fd(c, p.fds[1]);
        Io s = Io::want_read;
        int cr = 0;
        for (int i = 0; i < 50 && !(s == Io::done && cr == WOLFSSL_SUCCESS); ++i) {
            cr = wolfSSL_connect(c);
            s = server.handshake();
            if (s == Io::failed) break;
        }
        CHECK(s == Io::done);
        CHECK(server.alpn().empty());
        wolfSSL_free(c);
    }
}

TEST_CASE("tls: a TLS 1.2-only client is refused by default and accepted with min 1.2 (ECDHE+AEAD)") {
    auto cctx = raw_client_ctx(true);
    {
        auto sctx = tls::make_server_context(server_opts("ecdsa"));
        Pair p;
        tls::Session server(sctx, p.fds[0], true);
        tls::Session client(cctx, p.fds[1], false);
        CHECK_FALSE(handshake_both(server, client));
    }
    {
        auto o = server_opts("ecdsa");
        o.min_version = tls::Version::tls12;
        auto sctx = tls::make_server_context(o);
        Pair p;
        tls::Session server(sctx, p.fds[0], true);
        tls::Session client(cctx, p.fds[1], false);
        REQUIRE(handshake_both(server, client));
        CHECK(server.version() == "TLSv1.2");
        auto suite = server.cipher();
        CHECK(suite.rfind("ECDHE-", 0) == 0);
        CHECK((suite.find("GCM") != std::string::npos || suite.find("CHACHA20") != std::string::npos));
    }
}

TEST_CASE("tls: server context errors are one clear line naming the fault") {
    auto o = server_opts("ecdsa");
    o.key_file = certs()("other.key");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("does not match"), tls::TlsError);

    o = server_opts("ecdsa");
    o.cert_file = certs()("missing.crt");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("missing.crt"), tls::TlsError);

    o = server_opts("ecdsa");
    o.key_file = certs()("gen.py");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("no usable PEM private key"),
                         tls::TlsError);

    o = server_opts("ecdsa");
    o.ciphers = "AES128-SHA";
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("not allowed"), tls::TlsError);
    o.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("--tls-min-version 1.2"),
                         tls::TlsError);
    o.ciphers = "";
    o.groups = "X448:bogus";
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("unknown key exchange group"),
                         tls::TlsError);
}

TEST_CASE("tls: default suite order follows the AES hardware, X25519 first") {
    auto c = tls::default_ciphers();
    CHECK(c.rfind(aes_uses_hardware() ? "TLS13-AES128-GCM-SHA256:" : "TLS13-CHACHA20-POLY1305-SHA256:",
                  0) == 0);
    CHECK(c.find("ECDHE") == std::string::npos);  // TLS 1.3 only unless asked
    CHECK(tls::default_groups().rfind("X25519", 0) == 0);
}
