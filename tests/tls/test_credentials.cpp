// First-start credentials: files, modes, idempotence, and that the
// certificate really serves TLS and verifies as its own trust anchor.
#include <doctest/doctest.h>

#include "keys/credentials.hpp"
#include "keys/pin.hpp"
#include "keys/psk.hpp"
#include "tls/session.hpp"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

namespace fs = std::filesystem;
using secmsg::KeyType;

// Frees the calling thread's share of wolfCrypt's ECC point cache, where
// the build has one (FP_ECC): each server thread below ends with it.
void free_thread_ecc_cache() {
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}

// A fresh directory, removed with its contents at the end of the test.
struct TempDir {
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "secmsg-cred-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
    std::string path;
};

unsigned mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs a command and returns its standard output; fails the test on a non-zero status.
std::string run(const std::string& command) {
    FILE* p = ::popen(command.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    std::array<char, 4096> buf{};
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int status = ::pclose(p);
    INFO("command: " << command << "\noutput: " << out);
    REQUIRE(status == 0);
    return out;
}

// A listening TCP socket on 127.0.0.1, any port.
struct Listener {
    Listener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 4) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    }
    ~Listener() { ::close(fd); }
    int fd = -1;
    unsigned short port = 0;
};

int connect_loopback(unsigned short port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

// One TLS 1.3 handshake over real TCP: the server is the project's server
// context built from the generated files; the client is a plain wolfSSL
// client that trusts only the generated certificate and checks `name`.
// Returns whether the client accepted the server.
bool client_accepts(const secmsg::CredentialsReport& r, const std::string& name) {
    secmsg::tls::ServerOptions so;
    so.cert_file = r.cert_file;
    so.key_file = r.key_file;
    auto server_ctx = secmsg::tls::make_server_context(so);

    Listener listener;
    std::thread server([&] {
        int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        {
            secmsg::tls::Session s(server_ctx, fd);
            (void)s.handshake();  // blocking socket: done or failed
        }
        ::close(fd);
        free_thread_ecc_cache();
    });

    WOLFSSL_CTX* cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    REQUIRE(cctx != nullptr);
    REQUIRE(wolfSSL_CTX_load_verify_locations(cctx, r.cert_file.c_str(), nullptr) ==
            WOLFSSL_SUCCESS);
    wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_PEER, nullptr);
    int fd = connect_loopback(listener.port);
    WOLFSSL* ssl = wolfSSL_new(cctx);
    REQUIRE(ssl != nullptr);
    wolfSSL_set_fd(ssl, fd);
    REQUIRE(wolfSSL_check_domain_name(ssl, name.c_str()) == WOLFSSL_SUCCESS);
    const bool ok = wolfSSL_connect(ssl) == WOLFSSL_SUCCESS;
    wolfSSL_free(ssl);
    ::close(fd);
    wolfSSL_CTX_free(cctx);
    server.join();
    return ok;
}

// The same, with the project's own client context and session (lib/tls) as
// the verifier: what `secmsg --ca-file DIR/tls.crt --server-name NAME` does.
bool project_client_accepts(const secmsg::CredentialsReport& r, const std::string& name) {
    secmsg::tls::ServerOptions so;
    so.cert_file = r.cert_file;
    so.key_file = r.key_file;
    auto server_ctx = secmsg::tls::make_server_context(so);
    secmsg::tls::ClientOptions co;
    co.ca_file = r.cert_file;
    co.server_name = name;
    auto client_ctx = secmsg::tls::make_client_context(co);

    Listener listener;
    std::thread server([&] {
        int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        {
            secmsg::tls::Session s(server_ctx, fd);
            (void)s.handshake();
        }
        ::close(fd);
        free_thread_ecc_cache();
    });
    // What the client's connection does after connecting: the name set on
    // the session, then the handshake (a blocking socket here).
    const int fd = connect_loopback(listener.port);
    bool ok = false;
    {
        secmsg::tls::Session s(client_ctx, fd);
        s.set_server_name(name);
        const auto r = s.handshake();
        ok = r == secmsg::tls::Io::done;
        if (!ok) MESSAGE("client refused the server for " << name << ": " << s.error_text());
    }
    ::close(fd);
    server.join();
    return ok;
}

}  // namespace

TEST_CASE("credentials: created where missing, with private modes, and reported") {
    for (KeyType type : {KeyType::ecdsa_p256, KeyType::ed25519}) {
        CAPTURE(static_cast<int>(type));
        TempDir t;
        const std::string dir = t / "state";
        auto r = secmsg::init_credentials(dir, type);
        CHECK(r.key_file == dir + "/tls.key");
        CHECK(r.cert_file == dir + "/tls.crt");
        CHECK(r.psk_file == dir + "/psk");
        CHECK(r.created == std::vector<std::string>{dir, r.key_file, r.cert_file, r.psk_file});
        CHECK(mode_of(dir) == 0700);
        CHECK(mode_of(r.key_file) == 0600);
        CHECK(mode_of(r.psk_file) == 0600);
        CHECK(mode_of(r.cert_file) == 0644);
        CHECK(slurp(r.key_file).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        CHECK(slurp(r.cert_file).starts_with("-----BEGIN CERTIFICATE-----\n"));
        CHECK(secmsg::load_sender_psk(r.psk_file).size() == secmsg::psk_size);
        CHECK(r.pin == secmsg::pin_of_file(r.cert_file));
        CHECK(secmsg::parse_pin(r.pin).has_value());
        // No temporary files left behind.
        CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 3);
        const std::string text = secmsg::format_report(r);
        CHECK(text.find("created " + r.key_file) != std::string::npos);
        CHECK(text.find(r.pin) != std::string::npos);
    }
}

TEST_CASE("credentials: idempotent, and never overwrite") {
    TempDir t;
    auto first = secmsg::init_credentials(t.path);
    const std::string key = slurp(first.key_file), cert = slurp(first.cert_file),
                      psk = slurp(first.psk_file);

    auto second =
        secmsg::init_credentials(t.path, KeyType::ed25519);  // the type only matters for new keys
    CHECK(second.created.empty());
    CHECK(second.pin == first.pin);
    CHECK(slurp(first.key_file) == key);
    CHECK(slurp(first.cert_file) == cert);
    CHECK(slurp(first.psk_file) == psk);
    CHECK(secmsg::format_report(second).find("nothing created") != std::string::npos);

    SUBCASE("a missing PSK alone is created, nothing else touched") {
        fs::remove(first.psk_file);
        auto r = secmsg::init_credentials(t.path);
        CHECK(r.created == std::vector<std::string>{first.psk_file});
        CHECK(slurp(first.key_file) == key);
        CHECK(slurp(first.cert_file) == cert);
        CHECK(slurp(first.psk_file) != psk);
    }
    SUBCASE("a key without certificate gets a certificate for that same key") {
        fs::remove(first.cert_file);
        auto r = secmsg::init_credentials(t.path, KeyType::ed25519);
        CHECK(r.created == std::vector<std::string>{first.cert_file});
        CHECK(slurp(first.key_file) == key);
        CHECK(r.pin == first.pin);  // same key, so same SubjectPublicKeyInfo
        CHECK(slurp(first.cert_file) != cert);
    }
    SUBCASE("a certificate without its key is an error, and nothing is written") {
        fs::remove(first.key_file);
        CHECK_THROWS_WITH_AS(secmsg::init_credentials(t.path),
                             doctest::Contains("exists without its key"), std::runtime_error);
        CHECK_FALSE(fs::exists(first.key_file));
        CHECK(slurp(first.cert_file) == cert);
    }
}

TEST_CASE("credentials: files an administrator provided are kept as they are") {
    TempDir t;
    secmsg::generate_psk_file(t / "psk");
    const std::string psk = slurp(t / "psk");
    auto r = secmsg::init_credentials(t.path);
    CHECK(r.created == std::vector<std::string>{r.key_file, r.cert_file});
    CHECK(slurp(t / "psk") == psk);
}

TEST_CASE("credentials: unusable places and names fail with one clear line") {
    TempDir t;
    { std::ofstream(t / "file") << "x"; }
    CHECK_THROWS_WITH_AS(secmsg::init_credentials(t / "file"), doctest::Contains("not a directory"),
                         std::runtime_error);
    CHECK_THROWS_AS(secmsg::init_credentials(t / "no/such/parent"), std::runtime_error);
    CHECK(secmsg::parse_key_type("ecdsa") == KeyType::ecdsa_p256);
    CHECK(secmsg::parse_key_type("ed25519") == KeyType::ed25519);
    CHECK_THROWS_WITH_AS(secmsg::parse_key_type("rsa"), doctest::Contains("use ecdsa or ed25519"),
                         std::invalid_argument);
}

TEST_CASE(
    "credentials: the certificate serves TLS and verifies as its own CA for localhost and "
    "127.0.0.1") {
    for (KeyType type : {KeyType::ecdsa_p256, KeyType::ed25519}) {
        CAPTURE(static_cast<int>(type));
        TempDir t;
        auto r = secmsg::init_credentials(t.path, type);
        CHECK(client_accepts(r, "localhost"));
        CHECK(client_accepts(r, "127.0.0.1"));
        // The name check is live: a name the certificate does not carry is refused.
        CHECK_FALSE(client_accepts(r, "not-this-host.example"));
        // And through the project's client, including the IPv6 loopback name.
        CHECK(project_client_accepts(r, "localhost"));
        CHECK(project_client_accepts(r, "127.0.0.1"));
        CHECK(project_client_accepts(r, "::1"));
        CHECK_FALSE(project_client_accepts(r, "not-this-host.example"));
    }
}

TEST_CASE("credentials: an independent X.509 parser sees the names, validity and pin") {
    TempDir t;
    auto r = secmsg::init_credentials(t.path);
    // python3-cryptography (OpenSSL underneath) reads the certificate.
    const std::string script =
        "import sys, base64, hashlib, datetime\n"
        "from cryptography import x509\n"
        "from cryptography.hazmat.primitives import serialization\n"
        "c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())\n"
        "san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value\n"
        "names = [str(n.value) for n in san]\n"
        "spki = c.public_key().public_bytes(serialization.Encoding.DER,"
        " serialization.PublicFormat.SubjectPublicKeyInfo)\n"
        "now = datetime.datetime.utcnow()\n"
        "before = (now - c.not_valid_before).total_seconds()\n"
        "days = (c.not_valid_after - c.not_valid_before).total_seconds() / 86400\n"
        "print(' '.join(names))\n"
        "print('sha256:' + base64.b64encode(hashlib.sha256(spki).digest()).decode())\n"
        "print(int(3500 <= before <= 3700 and days == 397))\n";
    const std::string script_file = t / "check.py";
    std::ofstream(script_file) << script;
    const std::string out = run("/usr/bin/python3 " + script_file + " " + r.cert_file);
    std::istringstream lines(out);
    std::string names, pin, validity;
    std::getline(lines, names);
    std::getline(lines, pin);
    std::getline(lines, validity);
    CHECK(names.ends_with("localhost 127.0.0.1 ::1"));
    CHECK(pin == r.pin);
    CHECK(validity == "1");
}

namespace {

constexpr std::time_t day = 86400;

// The expiry of a certificate file, as python3-cryptography reads it.
std::time_t not_after_of(const TempDir& t, const std::string& cert) {
    const std::string script = t / "not_after.py";
    std::ofstream(script) << "import sys, calendar\n"
                             "from cryptography import x509\n"
                             "c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())\n"
                             "print(calendar.timegm(c.not_valid_after.timetuple()))\n";
    return std::stoll(run("/usr/bin/python3 " + script + " " + cert));
}

}  // namespace

TEST_CASE(
    "credentials: a certificate made here is renewed for the same key when under 30 days remain") {
    const std::time_t now = std::time(nullptr);
    for (KeyType type : {KeyType::ecdsa_p256, KeyType::ed25519}) {
        CAPTURE(static_cast<int>(type));
        TempDir t;
        // Made 380 days ago: 17 days left.
        auto old = secmsg::init_credentials(t.path, type, now - 380 * day);
        CHECK(old.not_after == now - 380 * day - 3600 + 397 * day);
        CHECK(not_after_of(t, old.cert_file) == old.not_after);
        const std::string key = slurp(old.key_file), cert = slurp(old.cert_file),
                          psk = slurp(old.psk_file);

        auto r = secmsg::init_credentials(t.path, type, now);
        CHECK(r.created.empty());
        CHECK(r.renewed_from == old.not_after);
        CHECK(r.not_after == now - 3600 + 397 * day);
        CHECK(not_after_of(t, r.cert_file) == r.not_after);
        CHECK(slurp(r.cert_file) != cert);
        CHECK(slurp(r.key_file) == key);
        CHECK(slurp(r.psk_file) == psk);
        CHECK(r.pin == old.pin);
        CHECK(secmsg::pin_of_file(r.cert_file) == old.pin);
        CHECK(mode_of(r.cert_file) == 0644);
        const std::string text = secmsg::format_report(r);
        CHECK(text.find("renewed " + r.cert_file) != std::string::npos);
        CHECK(text.find("pin is unchanged") != std::string::npos);
        CHECK(text.find("nothing created") == std::string::npos);
        CHECK(client_accepts(r, "localhost"));  // the renewed certificate serves with the key

        // Renewed once: the next start leaves it alone.
        const std::string renewed = slurp(r.cert_file);
        auto again = secmsg::init_credentials(t.path, type, now + day);
        CHECK(again.renewed_from == 0);
        CHECK(slurp(r.cert_file) == renewed);
    }
}

TEST_CASE("credentials: a certificate with time left, or one not made here, is never renewed") {
    const std::time_t now = std::time(nullptr);
    TempDir t;
    auto old =
        secmsg::init_credentials(t.path, KeyType::ecdsa_p256, now - 300 * day);  // 97 days left
    const std::string cert = slurp(old.cert_file);
    auto r = secmsg::init_credentials(t.path, KeyType::ecdsa_p256, now);
    CHECK(r.renewed_from == 0);
    CHECK(slurp(r.cert_file) == cert);
    CHECK(secmsg::format_report(r).find("nothing created") != std::string::npos);

    // An administrator's certificate for the same key, 10 days left, other names.
    const std::string script = t / "admin.py";
    std::ofstream(script)
        << "import sys, datetime\n"
           "from cryptography import x509\n"
           "from cryptography.x509.oid import NameOID\n"
           "from cryptography.hazmat.primitives import hashes, serialization\n"
           "key = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)\n"
           "name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'admin.example')])\n"
           "now = datetime.datetime.utcnow()\n"
           "c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)\n"
           "     .public_key(key.public_key()).serial_number(x509.random_serial_number())\n"
           "     .not_valid_before(now - datetime.timedelta(days=1))\n"
           "     .not_valid_after(now + datetime.timedelta(days=10)).sign(key, hashes.SHA256()))\n"
           "open(sys.argv[2], 'wb').write(c.public_bytes(serialization.Encoding.PEM))\n";
    run("/usr/bin/python3 " + script + " " + r.key_file + " " + r.cert_file);
    const std::string admin = slurp(r.cert_file);
    auto kept = secmsg::init_credentials(t.path, KeyType::ecdsa_p256, now);
    CHECK(kept.renewed_from == 0);
    CHECK(slurp(r.cert_file) == admin);
    CHECK(kept.pin == old.pin);
}

TEST_CASE("credentials: a certificate due for renewal that belongs to another key is an error") {
    const std::time_t now = std::time(nullptr);
    TempDir a, b;
    auto old = secmsg::init_credentials(a.path, KeyType::ecdsa_p256, now - 380 * day);
    auto other = secmsg::init_credentials(b.path);
    const std::string cert = slurp(old.cert_file);
    fs::copy_file(other.key_file, old.key_file, fs::copy_options::overwrite_existing);
    CHECK_THROWS_WITH_AS(secmsg::init_credentials(a.path, KeyType::ecdsa_p256, now),
                         doctest::Contains("renewing it would change the pin"), std::runtime_error);
    CHECK(slurp(old.cert_file) == cert);
}

TEST_CASE("credentials: refused in a directory others can write or that another user owns") {
    TempDir t;
    ::chmod(t.path.c_str(), 01777);  // like /tmp
    CHECK_THROWS_WITH_AS(secmsg::init_credentials(t.path),
                         doctest::Contains("mode 1777, writable by others"), secmsg::KeyFileError);
    CHECK(std::distance(fs::directory_iterator(t.path), fs::directory_iterator()) == 0);
    ::chmod(t.path.c_str(), 0700);
    if (::geteuid() != 0) return;
    REQUIRE(::chown(t.path.c_str(), 65534, 65534) == 0);
    const std::string fix = "chown root " + t.path;
    CHECK_THROWS_WITH_AS(secmsg::init_credentials(t.path), doctest::Contains(fix.c_str()),
                         secmsg::KeyFileError);
}

TEST_CASE(
    "credentials: the server refuses a key others can read and accepts a public certificate") {
    TempDir t;
    auto r = secmsg::init_credentials(t.path);
    secmsg::tls::ServerOptions so;
    so.cert_file = r.cert_file;
    so.key_file = r.key_file;
    CHECK(mode_of(r.cert_file) == 0644);
    CHECK_NOTHROW(secmsg::tls::make_server_context(so));
    ::chmod(r.key_file.c_str(), 0644);
    const std::string fix = "chmod 600 " + r.key_file;
    CHECK_THROWS_WITH_AS(secmsg::tls::make_server_context(so), doctest::Contains(fix.c_str()),
                         secmsg::tls::TlsError);
    // And --init-credentials, reading that key back to certify it, refuses it too.
    fs::remove(r.cert_file);
    CHECK_THROWS_AS(secmsg::init_credentials(t.path), secmsg::KeyFileError);
    CHECK_FALSE(fs::exists(r.cert_file));
}
