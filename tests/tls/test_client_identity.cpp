// Client identities (mutual TLS): --allow-client entries, the names of a
// certificate, the verdict, and a server context judging real client
// certificates over a socket pair.  Certificates (a CA, clients it signed,
// a self-signed client, another CA's client) are made at test time by
// python3-cryptography, an implementation outside this codebase, which also
// computes the expected pins.
#include "keys/client_identity.hpp"
#include "test_util.hpp"
#include "tls/session.hpp"
#include "tls/client_context.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace secmsg;
using tls::Io;

namespace {

constexpr const char* cert_script = R"PY(
import sys, datetime, os, hashlib, base64
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
def save(stem, cert, key):
    open(d + "/" + stem + ".crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(d + "/" + stem + ".der", "wb").write(cert.public_bytes(serialization.Encoding.DER))
    open(d + "/" + stem + ".key", "wb").write(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(d + "/" + stem + ".key", 0o600)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    open(d + "/" + stem + ".pin", "w").write("sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode())
def cert(subject, key, issuer, issuer_key, ca=False, sans=None, days=2):
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), False)
    return b.sign(issuer_key, hashes.SHA256())
def key():
    return ec.generate_private_key(ec.SECP256R1())
names = [x509.DNSName("client1.example.com"), x509.UniformResourceIdentifier("spiffe://example.org/c1"),
         x509.RFC822Name("ops@Example.COM")]
ca_key = key(); save("ca", cert("test CA", ca_key, "test CA", ca_key, ca=True, days=30), ca_key)
other_key = key(); save("otherca", cert("other CA", other_key, "other CA", other_key, ca=True, days=30), other_key)
k = key(); save("client1", cert("client1", k, "test CA", ca_key, sans=names), k)
k = key(); save("client2", cert("client2", k, "test CA", ca_key, sans=[x509.DNSName("client2.example.com")]), k)
k = key(); save("nosan", cert("nosan", k, "test CA", ca_key), k)
k = key(); save("selfsigned", cert("client1", k, "client1", k, sans=names), k)
k = key(); save("foreign", cert("client1", k, "other CA", other_key, sans=names), k)
k = key(); save("server", cert("localhost", k, "localhost", k, sans=[x509.DNSName("localhost")]), k)
)PY";

struct Certs : test::ScriptDir {
    Certs() : ScriptDir("secmsg-mtls-test", cert_script) {}
    std::vector<std::uint8_t> der(const std::string& stem) const {
        std::ifstream in(path(stem + ".der"), std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    std::string pin(const std::string& stem) const {
        std::ifstream in(path(stem + ".pin"));
        std::string s;
        in >> s;
        return s;
    }
    PinDigest digest(const std::string& stem) const { return *parse_pin(pin(stem)); }
};

const Certs& certs() {
    static Certs c;
    return c;
}

ClientPolicy policy(bool ca, std::initializer_list<const char*> entries) {
    ClientPolicy p;
    p.require_ca = ca;
    for (const char* e : entries) p.allowed.push_back(parse_allowed_client(e));
    return p;
}

ClientVerdict judge(const ClientPolicy& p, const std::string& stem,
                    ChainCheck chain = ChainCheck::verified) {
    const auto der = certs().der(stem);
    return judge_client(p, der, certs().digest(stem), chain,
                        chain == ChainCheck::verified ? "" : "no signer");
}

}  // namespace

TEST_CASE("client identity: --allow-client entries are pins, DNS names, URIs or email addresses") {
    const std::string pin = certs().pin("client1");
    auto e = parse_allowed_client(pin);
    CHECK(e.kind == AllowedClient::Kind::pin);
    CHECK(e.pin == certs().digest("client1"));
    CHECK(e.text == pin);
    CHECK(parse_allowed_client("client1.example.com").kind == AllowedClient::Kind::dns);
    CHECK(parse_allowed_client("spiffe://example.org/c1").kind == AllowedClient::Kind::uri);
    CHECK(parse_allowed_client("ops@example.com").kind == AllowedClient::Kind::email);
    for (const char* bad : {"sha256:", "sha256:AAAA", "", "two words", "*.example.com", "a..b",
                            "-:x", "1x:y", "@example.com", "ops@", "caf\xc3\xa9.example"})
        CHECK_THROWS_AS(parse_allowed_client(bad), ClientIdentityError);
    try {
        parse_allowed_client("*.example.com");
    } catch (const ClientIdentityError& x) {
        CHECK(std::string(x.what()).find("allowed client *.example.com") != std::string::npos);
        CHECK(std::string(x.what()).find("wildcard") != std::string::npos);
    }
}

TEST_CASE("client identity: the subjectAltNames of a certificate, by kind") {
    const auto names = names_of_certificate(certs().der("client1"));
    CHECK(names.dns == std::vector<std::string>{"client1.example.com"});
    CHECK(names.uri == std::vector<std::string>{"spiffe://example.org/c1"});
    CHECK(names.email == std::vector<std::string>{"ops@Example.COM"});
    const auto none = names_of_certificate(certs().der("nosan"));
    CHECK(none.dns.empty());
    CHECK(none.uri.empty());
    CHECK(none.email.empty());
    const std::vector<std::uint8_t> junk{0x30, 0x03, 0x02, 0x01, 0x01};
    CHECK_THROWS_AS(names_of_certificate(junk), PinError);
}

TEST_CASE("client identity: verdicts") {
    SUBCASE("a CA alone: any certificate it signed, named by its first name, else its pin") {
        const auto p = policy(true, {});
        auto v = judge(p, "client1");
        CHECK(v.accepted);
        CHECK(v.identity == "client1.example.com");
        v = judge(p, "nosan");
        CHECK(v.accepted);
        CHECK(v.identity == certs().pin("nosan"));
        v = judge(p, "foreign", ChainCheck::not_verified);
        CHECK_FALSE(v.accepted);
        CHECK(v.why.find("does not chain to a client CA (no signer)") != std::string::npos);
        CHECK(v.why.find(certs().pin("foreign")) != std::string::npos);
    }
    SUBCASE("names, with a CA: DNS and email domains ignore case, URIs do not") {
        CHECK(judge(policy(true, {"CLIENT1.example.com"}), "client1").identity ==
              "CLIENT1.example.com");
        CHECK(judge(policy(true, {"ops@example.com"}), "client1").accepted);
        CHECK_FALSE(judge(policy(true, {"OPS@example.com"}), "client1").accepted);
        CHECK(judge(policy(true, {"spiffe://example.org/c1"}), "client1").accepted);
        CHECK_FALSE(judge(policy(true, {"spiffe://example.org/C1"}), "client1").accepted);
        CHECK_FALSE(judge(policy(true, {"example.com"}), "client1").accepted);  // no suffix match
        // a name is only ever a SAN of its own kind
        CHECK_FALSE(judge(policy(true, {"client2.example.com"}), "client1").accepted);
        CHECK(judge(policy(true, {"client2.example.com"}), "client2").accepted);
        // the CA still decides first
        CHECK_FALSE(
            judge(policy(true, {"client1.example.com"}), "foreign", ChainCheck::not_verified)
                .accepted);
    }
    SUBCASE("pins, with or without a CA; a matched name is preferred as the identity") {
        const std::string pin = certs().pin("selfsigned");
        auto v = judge(
            policy(false, {"sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", pin.c_str()}),
            "selfsigned", ChainCheck::not_verified);
        CHECK(v.accepted);
        CHECK(v.identity == pin);
        const std::string pin1 = certs().pin("client1");
        v = judge(policy(true, {pin1.c_str(), "client1.example.com"}), "client1");
        CHECK(v.accepted);
        CHECK(v.identity == "client1.example.com");
        v = judge(policy(false, {pin1.c_str()}), "selfsigned", ChainCheck::not_verified);
        CHECK_FALSE(v.accepted);
        CHECK(v.why == "client key " + pin +
                           " (names client1.example.com, spiffe://example.org/c1, "
                           "ops@Example.COM) matches no allowed client");
    }
    SUBCASE("without a CA a name is never consulted (a self-signed certificate claims any)") {
        ClientPolicy p;
        p.allowed.push_back(parse_allowed_client("client1.example.com"));
        CHECK_FALSE(judge(p, "selfsigned", ChainCheck::not_verified).accepted);
    }
}

namespace {

tls::ServerOptions server(const std::string& ca, std::vector<std::string> allow) {
    tls::ServerOptions o;
    o.cert_file = certs().path("server.crt");
    o.key_file = certs().path("server.key");
    if (!ca.empty()) o.client_ca_file = certs().path(ca + ".crt");
    o.allow_clients = std::move(allow);
    return o;
}

std::shared_ptr<tls::Context> client(const std::string& stem) {
    tls::ClientOptions o;
    o.insecure = true;  // the server is not under test here
    if (!stem.empty()) {
        o.cert_file = certs().path(stem + ".crt");
        o.key_file = certs().path(stem + ".key");
    }
    return tls::make_client_context(o);
}

// The outcome of one connection: the server's handshake, and then a byte
// the client writes and the server reads (TLS 1.3: the client learns of
// a refusal only then).
struct Outcome {
    bool accepted = false;
    std::string identity, pin, server_error;
    std::string alert;  // the client's view of the refusal (Session::refusal_alert)
};

Outcome connect(const tls::ServerOptions& so, const std::string& stem) {
    test::SocketPair p;
    tls::Session s(tls::make_server_context(so), p.fds[0]);
    tls::Session c(client(stem), p.fds[1]);
    Io sr = Io::want_read, cr = Io::want_read;
    for (int i = 0; i < 100 && sr != Io::failed && sr != Io::closed; ++i) {
        if (cr != Io::done && cr != Io::failed) cr = c.handshake();
        if (sr != Io::done) sr = s.handshake();
        if (sr == Io::done && cr == Io::done) break;
    }
    Outcome out;
    out.accepted = sr == Io::done;
    if (const auto* check = s.peer_check()) out.identity = check->identity;
    out.pin = tls::peer_pin(s);
    if (!out.accepted) {
        out.server_error = s.error_text();
        std::uint8_t b[16];
        const std::uint8_t one = 1;
        c.write({&one, 1});
        const auto r = c.read(b);
        if (r.status == Io::failed && c.fault() == tls::Fault::refused)
            out.alert = c.refusal_alert();
    }
    return out;
}

}  // namespace

TEST_CASE("client identity: a server context judges real client certificates over TLS") {
    SUBCASE("no policy: no certificate asked for, no identity") {
        const auto o = connect(server("", {}), "client1");
        CHECK(o.accepted);
        CHECK(o.identity.empty());
        CHECK(o.pin.empty());
    }
    SUBCASE(
        "a CA: its client is accepted and named; another CA's, a self-signed one, none: refused") {
        auto o = connect(server("ca", {}), "client1");
        CHECK(o.accepted);
        CHECK(o.identity == "client1.example.com");
        CHECK(o.pin == certs().pin("client1"));
        for (const char* stem : {"foreign", "selfsigned"}) {
            o = connect(server("ca", {}), stem);
            CHECK_FALSE(o.accepted);
            CHECK(o.server_error.find("client certificate refused: certificate of key " +
                                      certs().pin(stem) + " does not chain to a client CA") == 0);
            // wolfSSL 5.7 names the missing signer; Debian's 5.5.4 says bad_certificate
            CHECK((o.alert == "unknown_ca" || o.alert == "bad_certificate"));
        }
        o = connect(server("ca", {}), "");
        CHECK_FALSE(o.accepted);
        CHECK(o.server_error ==
              "the client presented no certificate (the client policy requires one)");
        CHECK(o.alert == "certificate_required");
    }
    SUBCASE("a CA and names: only the named client") {
        auto o = connect(server("ca", {"client2.example.com"}), "client2");
        CHECK(o.accepted);
        CHECK(o.identity == "client2.example.com");
        o = connect(server("ca", {"client2.example.com"}), "client1");
        CHECK_FALSE(o.accepted);
        CHECK(o.server_error.find("matches no allowed client") != std::string::npos);
        CHECK(o.alert == "bad_certificate");
    }
    SUBCASE("pins without a CA: a self-signed client by its key") {
        const std::string pin = certs().pin("selfsigned");
        auto o = connect(server("", {pin}), "selfsigned");
        CHECK(o.accepted);
        CHECK(o.identity == pin);
        CHECK(o.pin == pin);
        o = connect(server("", {pin}), "client1");
        CHECK_FALSE(o.accepted);
        CHECK(o.alert == "unknown_ca");  // wolfSSL names the missing signer it found
        o = connect(server("", {pin}), "");
        CHECK_FALSE(o.accepted);
    }
}

TEST_CASE("client identity: configurations that cannot work are one clear line") {
    CHECK_THROWS_WITH_AS(tls::make_server_context(server("", {"client1.example.com"})),
                         doctest::Contains("only a CA can vouch for"), tls::TlsError);
    CHECK_THROWS_WITH_AS(tls::make_server_context(server("", {"sha256:xyz"})),
                         doctest::Contains("allowed client sha256:xyz: not a pin"), tls::TlsError);
    auto o = server("", {});
    o.client_ca_file = certs().path("missing.crt");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o), doctest::Contains("missing.crt"),
                         tls::TlsError);
    o.client_ca_file = certs().path("ca.key");
    CHECK_THROWS_WITH_AS(tls::make_server_context(o),
                         doctest::Contains("no usable PEM CA certificate"), tls::TlsError);
    tls::ClientOptions c;
    c.insecure = true;
    c.cert_file = certs().path("client1.crt");
    CHECK_THROWS_WITH_AS(tls::make_client_context(c),
                         doctest::Contains("a client certificate and its private key go together"),
                         tls::TlsError);
    c.key_file = certs().path("client2.key");
    CHECK_THROWS_WITH_AS(tls::make_client_context(c),
                         doctest::Contains("does not belong to certificate"), tls::TlsError);
}

// The library says which setting is at fault and names no program's flag:
// each program adds its own option (secmsg --cert, secmsgd --allow-client).
TEST_CASE("client identity: a setup error says which setting it is about, in the library's words") {
    const auto about = [](auto&& make) {
        try {
            make();
        } catch (const tls::TlsError& e) {
            CHECK(std::string(e.what()).find("--") == std::string::npos);
            return e.about();
        }
        FAIL("no TlsError");
        return tls::Setting::none;
    };
    CHECK(about([] { tls::make_server_context(server("", {"client1.example.com"})); }) ==
          tls::Setting::allowed_client);
    CHECK(about([] { tls::make_server_context(server("", {"sha256:xyz"})); }) ==
          tls::Setting::allowed_client);
    auto o = server("", {});
    o.client_ca_file = certs().path("ca.key");
    CHECK(about([&] { tls::make_server_context(o); }) == tls::Setting::client_ca);
    tls::ClientOptions c;
    c.insecure = true;
    c.cert_file = certs().path("client1.crt");
    CHECK(about([&] { tls::make_client_context(c); }) == tls::Setting::certificate_pair);
    c = {};
    c.pin = "sha256:xyz";
    CHECK(about([&] { tls::make_client_context(c); }) == tls::Setting::pin);
}
