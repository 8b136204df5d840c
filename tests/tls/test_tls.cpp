// tls::Session and make_server_context through a real socket pair: both ends
// non-blocking, driven in one thread.  Certificates are made at test time by
// python3-cryptography (an implementation outside this codebase).
#include "tls/session.hpp"

#include "openssl_peer.hpp"
#include "test_util.hpp"
#include "tls/build_info.hpp"

#include <doctest/doctest.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <algorithm>
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
using tls::IoResult;

namespace {

// Certificates, in a temporary directory removed at the end.
constexpr const char* cert_script = R"PY(
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

struct CertDir : test::ScriptDir {
    CertDir() : ScriptDir("secmsg-tls-test", cert_script) {}
    std::string operator()(const std::string& f) const { return path(f); }
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

using Pair = test::SocketPair;

// A raw wolfSSL client context (the real one is client_context.cpp's, and it
// verifies; here the server side is under test).
std::shared_ptr<tls::Context> raw_client_ctx(bool tls12_only = false) {
    tls::init();
    auto ctx = std::make_shared<tls::Context>(
        wolfSSL_CTX_new(tls12_only ? wolfTLSv1_2_client_method() : wolfSSLv23_client_method()),
        tls::Side::client);
    REQUIRE(*ctx);
    wolfSSL_CTX_set_verify(ctx->get(), WOLFSSL_VERIFY_NONE, nullptr);
    return ctx;
}

// Drives the server's handshake and the client's (`client_step`: 1 done,
// 0 not yet, -1 failed) until both are done or one fails.
template <class Step>
bool handshake_loop(tls::Session& server, Step client_step) {
    Io s = Io::want_read;
    int c = 0;
    for (int i = 0; i < 100; ++i) {
        if (c == 0) c = client_step();
        if (s != Io::done) s = server.handshake();
        if (c < 0 || s == Io::failed || s == Io::closed) return false;
        if (c == 1 && s == Io::done) return true;
    }
    return false;
}

bool handshake_both(tls::Session& server, tls::Session& client) {
    return handshake_loop(server, [&] {
        const Io c = client.handshake();
        return c == Io::done ? 1 : c == Io::failed || c == Io::closed ? -1 : 0;
    });
}

// A server session (ECDSA certificate) and a raw wolfSSL client, past their
// handshake over a socket pair.
struct Connected {
    Pair p;
    tls::Session server{tls::make_server_context(server_opts("ecdsa")), p.fds[0]};
    tls::Session client{raw_client_ctx(), p.fds[1]};
    Connected() { REQUIRE(handshake_both(server, client)); }
};

}  // namespace

TEST_CASE("tls: ECDSA P-256 handshake, TLS 1.3, ALPN, X25519, data both ways, close_notify once") {
    auto sctx = tls::make_server_context(server_opts("ecdsa"));
    Pair p;
    tls::Session server(sctx, p.fds[0]);
    tls::Session client(raw_client_ctx(), p.fds[1]);
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
    REQUIRE(
        server.write({reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size()}).status ==
        Io::done);
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
    tls::Session server(sctx, p.fds[0]);
    tls::Session client(raw_client_ctx(), p.fds[1]);
    REQUIRE(handshake_both(server, client));
    CHECK(server.version() == "TLSv1.3");
}

TEST_CASE("tls: ALPN: other protocols only are refused, no ALPN is accepted") {
    auto sctx = tls::make_server_context(server_opts("ecdsa"));
    auto cctx = raw_client_ctx();
    {
        Pair p;
        tls::Session server(sctx, p.fds[0]);
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
        tls::Session server(sctx, p.fds[0]);
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

TEST_CASE(
    "tls: a TLS 1.2-only client is refused by default and accepted with min 1.2 (ECDHE+AEAD)") {
    auto cctx = raw_client_ctx(true);
    {
        auto sctx = tls::make_server_context(server_opts("ecdsa"));
        Pair p;
        tls::Session server(sctx, p.fds[0]);
        tls::Session client(cctx, p.fds[1]);
        CHECK_FALSE(handshake_both(server, client));
    }
    {
        auto o = server_opts("ecdsa");
        o.min_version = tls::Version::tls12;
        auto sctx = tls::make_server_context(o);
        Pair p;
        tls::Session server(sctx, p.fds[0]);
        tls::Session client(cctx, p.fds[1]);
        REQUIRE(handshake_both(server, client));
        CHECK(server.version() == "TLSv1.2");
        auto suite = server.cipher();
        CHECK(suite.rfind("ECDHE-", 0) == 0);
        CHECK((suite.find("GCM") != std::string::npos ||
               suite.find("CHACHA20") != std::string::npos));
    }
}

TEST_CASE("tls: server context errors are one clear line naming the fault") {
    auto o = server_opts("ecdsa");
    o.key_file = certs()("other.key");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("does not match"),
                         tls::TlsError);

    o = server_opts("ecdsa");
    o.cert_file = certs()("missing.crt");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("missing.crt"),
                         tls::TlsError);

    o = server_opts("ecdsa");
    o.key_file = certs()("gen.py");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o),
                         doctest::Contains("no usable PEM private key"), tls::TlsError);

    o = server_opts("ecdsa");
    o.ciphers = "AES128-SHA";
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("not allowed"),
                         tls::TlsError);
    o.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    CHECK_THROWS_WITH_AS(tls::make_server_context(o),
                         doctest::Contains("TLS 1.2 as the lowest version"), tls::TlsError);
    o.ciphers = "";
    o.groups = "X448:bogus";
    CHECK_THROWS_WITH_AS(tls::make_server_context(o),
                         doctest::Contains("unknown key exchange group"), tls::TlsError);
}

TEST_CASE("tls: default suite order follows the AES hardware, X25519 first") {
    auto c = tls::default_ciphers();
    CHECK(c.rfind(
              aes_uses_hardware() ? "TLS13-AES128-GCM-SHA256:" : "TLS13-CHACHA20-POLY1305-SHA256:",
              0) == 0);
    CHECK(c.find("ECDHE") == std::string::npos);  // TLS 1.3 only unless asked
    CHECK(tls::default_groups().rfind("X25519", 0) == 0);
}

// ---------------------------------------------------------------- hostile peers

namespace {

// Writes `data` from the client until done, reading on the server side as
// the budget allows; returns the bytes the server got.
void client_write_all(tls::Session& client, const std::vector<std::uint8_t>& data) {
    for (int i = 0; i < 1000; ++i) {
        auto w = client.write(data);
        if (w.status == Io::done) return;
        REQUIRE(w.status == Io::want_write);
    }
    FAIL("the client could not write");
}

using secmsg::testing::OpenSslPeer;

// The server reads in passes of `budget` bytes until the socket is drained
// or TLS must write first; returns the last status.
Io server_drain(tls::Session& server, std::size_t budget,
                std::vector<std::uint8_t>* got = nullptr) {
    std::array<std::uint8_t, 16384> buf{};
    for (int pass = 0; pass < 100000; ++pass) {
        server.begin_pass(budget);
        for (;;) {
            auto r = server.read(buf);
            if (r.status == Io::done) {
                if (got)
                    got->insert(got->end(), buf.begin(), buf.begin() + static_cast<long>(r.bytes));
                continue;
            }
            if (r.status == Io::want_read && r.budget_spent) break;  // the next pass
            return r.status;
        }
    }
    FAIL("the server never drained its input");
    return Io::failed;
}

}  // namespace

TEST_CASE(
    "tls: the per-pass budget bounds raw bytes and records read; budget_spent says come back") {
    Connected c;
    auto& server = c.server;
    auto& client = c.client;

    // 200 records of 100 bytes each, all in the server's socket at once.
    std::vector<std::uint8_t> rec(100);
    std::vector<std::uint8_t> sent;
    for (int i = 0; i < 200; ++i) {
        std::fill(rec.begin(), rec.end(), static_cast<std::uint8_t>(i));
        client_write_all(client, rec);
        sent.insert(sent.end(), rec.begin(), rec.end());
    }
    std::array<std::uint8_t, 16384> buf{};
    std::vector<std::uint8_t> got;

    // Bytes: one pass of 1000 raw bytes reads at most that, then stops on
    // the budget, not on the socket.
    auto before = server.counters();
    server.begin_pass(1000);
    IoResult r{Io::done};
    for (int i = 0; i < 1000 && r.status == Io::done; ++i) {
        r = server.read(buf);
        if (r.status == Io::done)
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(r.bytes));
    }
    CHECK(r.status == Io::want_read);
    CHECK(r.budget_spent);
    CHECK(server.budget_spent());
    CHECK(server.counters().bytes_in - before.bytes_in == 1000);
    CHECK(got.size() < 1000);
    CHECK(got.size() >= 500);  // records of 100 + 22 bytes: about 8 of them

    // Records: a pass of 10 records reads 10 (the one cut by the byte
    // budget finishes first), whatever their size.
    before = server.counters();
    server.begin_pass(SIZE_MAX, 10);
    r = {Io::done};
    for (int i = 0; i < 1000 && r.status == Io::done; ++i) {
        r = server.read(buf);
        if (r.status == Io::done)
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(r.bytes));
    }
    CHECK(r.status == Io::want_read);
    CHECK(r.budget_spent);
    CHECK(server.counters().records_in - before.records_in == 10);

    // Pass after pass, everything arrives; the last want-read is the
    // socket's (budget_spent false), and no record came without data.
    CHECK(server_drain(server, 1000, &got) == Io::want_read);
    CHECK_FALSE(server.budget_spent());
    CHECK(got == sent);
    CHECK(server.counters().records_without_data == 0);
    CHECK(server.pending_output() == 0);
    CHECK_FALSE(server.output_blocked());
}

TEST_CASE(
    "tls: read_in_passes: small records read ahead, a short read ends the pass, "
    "the end of stream is still seen once the peer may have closed") {
    Connected c;
    auto& server = c.server;
    auto& client = c.client;
    server.read_in_passes();
    std::array<std::uint8_t, 16384> buf{};
    std::vector<std::uint8_t> got, sent;
    auto read_pass = [&] {
        IoResult r{Io::done};
        for (int i = 0; i < 10000 && r.status == Io::done; ++i) {
            r = server.read(buf);
            if (r.status == Io::done)
                got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(r.bytes));
        }
        return r;
    };

    // 100 records of 20 bytes (42 raw each, twice the 2 KiB read
    // ahead): all arrive, in order, and the last want-read is the
    // socket's.
    std::vector<std::uint8_t> rec(20);
    for (int i = 0; i < 100; ++i) {
        std::fill(rec.begin(), rec.end(), static_cast<std::uint8_t>(i));
        client_write_all(client, rec);
        sent.insert(sent.end(), rec.begin(), rec.end());
    }
    server.begin_pass(SIZE_MAX);
    auto r = read_pass();
    CHECK(r.status == Io::want_read);
    CHECK_FALSE(r.budget_spent);
    CHECK(got == sent);
    CHECK(server.counters().records_in >= 100);

    // A short read ended this pass: bytes that come now wait for the next
    // pass (on epoll, their edge), and are not lost.
    client_write_all(client, rec);
    sent.insert(sent.end(), rec.begin(), rec.end());
    CHECK(server.read(buf).status == Io::want_read);
    server.begin_pass(SIZE_MAX);
    CHECK(read_pass().status == Io::want_read);
    CHECK(got == sent);

    // Records and the end of the stream together: once the caller says the
    // peer may have closed, the same pass reads on to the end.
    for (int i = 0; i < 3; ++i) {
        client_write_all(client, rec);
        sent.insert(sent.end(), rec.begin(), rec.end());
    }
    REQUIRE(client.shutdown() == Io::done);
    ::shutdown(c.p.fds[1], SHUT_WR);
    server.peer_may_have_closed();
    server.begin_pass(SIZE_MAX);
    CHECK(read_pass().status == Io::closed);
    CHECK(got == sent);
}

TEST_CASE(
    "tls: a KeyUpdate flood from a peer that never reads: reading stops, memory stays bounded, "
    "the counter rises, later data leaves intact") {
    auto sctx = tls::make_server_context(server_opts("ecdsa"));
    Pair p;
    tls::Session server(sctx, p.fds[0]);
    OpenSslPeer peer;
    std::string load_error;
    if (!peer.load(p.fds[1], load_error)) {
        REQUIRE(load_error.empty());
        MESSAGE("no libssl.so.3: skipped");
        return;
    }
    REQUIRE(handshake_loop(server, [&] { return peer.connect_step(); }));
    REQUIRE(server.version() == "TLSv1.3");

    // First a large write that blocks once and then completes: it leaves
    // wolfSSL's resume offset for unfinished writes set (see SessionIo).
    std::vector<std::uint8_t> big(512 * 1024);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 13 + 1);
    std::vector<std::uint8_t> peer_got;
    int want_writes = 0;
    for (int i = 0; i < 100000; ++i) {
        auto w = server.write(big);
        if (w.status == Io::done) break;
        REQUIRE(w.status == Io::want_write);
        ++want_writes;
        REQUIRE(peer.read_all(peer_got));
    }
    REQUIRE(peer.read_all(peer_got));
    REQUIRE(want_writes > 0);
    REQUIRE(peer_got == big);

    // The flood: KeyUpdate(update_requested) after KeyUpdate, never reading.
    // The server answers each until its socket is full, then holds one
    // answer and reads no more: want_write, not an ever-growing buffer.
    const auto before = server.counters();
    int sent = 0;
    Io last = Io::want_read;
    std::size_t most_pending = 0;
    for (int round = 0; round < 2000 && last != Io::want_write; ++round) {
        for (int k = 0; k < 50 && peer.key_update(); ++k) ++sent;
        last = server_drain(server, 64 * 1024);
        most_pending = std::max(most_pending, server.pending_output());
        REQUIRE((last == Io::want_read || last == Io::want_write));
    }
    REQUIRE(last == Io::want_write);
    CHECK(server.output_blocked());
    CHECK(server.pending_output() > 0);
    CHECK(most_pending < 256);  // one answer held, whatever the flood
    const auto without_data = server.counters().records_without_data - before.records_without_data;
    MESSAGE(sent << " KeyUpdates sent, " << without_data << " read before the server stopped, "
                 << most_pending << " bytes held at most");
    CHECK(without_data > 100);
    CHECK(without_data <= static_cast<std::uint64_t>(sent));
    // More KeyUpdates are not read while blocked: nothing grows.
    for (int k = 0; k < 200 && peer.key_update(); ++k) ++sent;
    const auto in_before = server.counters().bytes_in;
    CHECK(server_drain(server, 64 * 1024) == Io::want_write);
    CHECK(server.counters().bytes_in == in_before);
    CHECK(server.pending_output() == most_pending);

    // New application data waits behind the held answer, then leaves whole
    // once the peer reads.
    const std::string after = "after the flood";
    const std::span<const std::uint8_t> after_bytes(
        reinterpret_cast<const std::uint8_t*>(after.data()), after.size());
    peer_got.clear();
    bool written = false;
    for (int i = 0; i < 100000 && !written; ++i) {
        REQUIRE(peer.read_all(peer_got));
        server_drain(server, 64 * 1024);  // the server reads the rest of the flood as room frees
        auto w = server.write(after_bytes);
        REQUIRE((w.status == Io::done || w.status == Io::want_write));
        written = w.status == Io::done;
    }
    REQUIRE(written);
    for (int i = 0; i < 100 && peer_got.size() < after.size(); ++i) {
        REQUIRE(peer.read_all(peer_got));
        server_drain(server, 64 * 1024);
    }
    CHECK(std::string(peer_got.begin(), peer_got.end()) == after);
    CHECK(server.counters().records_without_data - before.records_without_data ==
          static_cast<std::uint64_t>(sent));
}
