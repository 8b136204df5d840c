// Known answers for public-key pins.  The expected pins were computed with
// OpenSSL, independently of this code:
//   openssl x509 -in c.pem -pubkey -noout | openssl pkey -pubin -outform der |
//     openssl dgst -sha256 -binary | base64
#include "keys/pin.hpp"

#include <doctest/doctest.h>
#include <sodium.h>

#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

// ECDSA P-256, self-signed, CN=pin-test.
constexpr std::string_view p256_pem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfDCCASGgAwIBAgIUQePcsAtzLITOfpLSxcUP6w3wZAMwCgYIKoZIzj0EAwIw\n"
    "EzERMA8GA1UEAwwIcGluLXRlc3QwHhcNMjYxMTI2MDA0NzMyWhcNMzYxMTIzMDA0\n"
    "NzMyWjATMREwDwYDVQQDDAhwaW4tdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
    "A0IABAXDaToWlr8G+6Sej9ZR3t/IpebXuONbuktAKosBc1Jcnwk3rQM7s4UUhI4x\n"
    "BVuk80+yewcydsYp7fkbdeWZzdejUzBRMB0GA1UdDgQWBBQ/EtKAi7vSgNwWLGMt\n"
    "f+RcxxAYUjAfBgNVHSMEGDAWgBQ/EtKAi7vSgNwWLGMtf+RcxxAYUjAPBgNVHRMB\n"
    "Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCvM06n036ho8WS8nMkG2L5C3n2\n"
    "dpurRpigT1JcGeNZ6AIhAP2Kszjm78TgEGkqnzFa7aOqFqVjKN978kqusXMDC1WG\n"
    "-----END CERTIFICATE-----\n";
constexpr std::string_view p256_pin = "sha256:Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGwg=";

// Ed25519, self-signed, CN=pin-ed.
constexpr std::string_view ed25519_pem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBNjCB6aADAgECAhQyAK4qaxjVlJVpqLGsagZ77F1NmDAFBgMrZXAwETEPMA0G\n"
    "A1UEAwwGcGluLWVkMB4XDTI2MTEyNjAwNDczMloXDTM2MTEyMzAwNDczMlowETEP\n"
    "MA0GA1UEAwwGcGluLWVkMCowBQYDK2VwAyEAsdgGjU3hivPnL350E9OmGeYWJxSO\n"
    "0vBuKZdl2GPZGsijUzBRMB0GA1UdDgQWBBTrE0+FF/heKQfuCVElz3O7zd9xkzAf\n"
    "BgNVHSMEGDAWgBTrE0+FF/heKQfuCVElz3O7zd9xkzAPBgNVHRMBAf8EBTADAQH/\n"
    "MAUGAytlcANBAEKvOn4jnYP3qPBXAe8OcO3H9puMM8xAbKBzd9VfBko0bNok3zPP\n"
    "/O4hxAcUaCVxuIwaa81UxbsnRwWnTJ3NtQY=\n"
    "-----END CERTIFICATE-----\n";
constexpr std::string_view ed25519_pin = "sha256:FTQ+alJDBQ93ydOBnSGh0PQbkllyXsrZiY5ymmNC+Bk=";

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::vector<std::uint8_t> der_of(std::string_view pem) {
    const auto b = pem.find('\n') + 1;
    const auto e = pem.find("-----END");
    std::vector<std::uint8_t> der(pem.size());
    std::size_t n = 0;
    REQUIRE(sodium_base642bin(der.data(), der.size(), pem.data() + b, e - b, "\n", &n, nullptr,
                              sodium_base64_VARIANT_ORIGINAL) == 0);
    der.resize(n);
    return der;
}

}  // namespace

TEST_CASE("pin of a PEM certificate matches OpenSSL's") {
    CHECK(secmsg::pin_of_certificate(bytes(p256_pem)) == p256_pin);
    CHECK(secmsg::pin_of_certificate(bytes(ed25519_pem)) == ed25519_pin);
}

TEST_CASE("pin of a DER certificate matches the pin of its PEM form") {
    CHECK(secmsg::pin_of_der(der_of(p256_pem)) == p256_pin);
    CHECK(secmsg::pin_of_certificate(der_of(ed25519_pem)) == ed25519_pin);
}

TEST_CASE("pin of a file, PEM with text before the block") {
    char path[] = "/tmp/secmsg-pin-XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const std::string text = "subject=CN = pin-test\n" + std::string(p256_pem);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    CHECK(secmsg::pin_of_file(path) == p256_pin);
    unlink(path);
    CHECK_THROWS_AS(secmsg::pin_of_file(path), secmsg::PinError);
}

TEST_CASE("broken certificates are rejected, never pinned") {
    auto der = der_of(p256_pem);
    CHECK_THROWS_AS(secmsg::pin_of_der(std::span(der).first(100)), secmsg::PinError);
    der[1] = 0x81;  // length form that does not fit
    CHECK_THROWS_AS(secmsg::pin_of_der(der), secmsg::PinError);
    CHECK_THROWS_AS(secmsg::pin_of_certificate(bytes("hello")), secmsg::PinError);
    CHECK_THROWS_AS(secmsg::pin_of_certificate(bytes("-----BEGIN CERTIFICATE-----\n!!\n"
                                                     "-----END CERTIFICATE-----\n")),
                    secmsg::PinError);
    CHECK_THROWS_AS(secmsg::pin_of_der({}), secmsg::PinError);
}

TEST_CASE("parse_pin accepts exactly sha256: and 32 bytes of base64") {
    const auto d = secmsg::parse_pin(p256_pin);
    REQUIRE(d);
    CHECK(secmsg::format_pin(*d) == p256_pin);
    CHECK_FALSE(secmsg::parse_pin("sha1:Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGwg="));
    CHECK_FALSE(secmsg::parse_pin("Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGwg="));
    CHECK_FALSE(secmsg::parse_pin("sha256:Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGw=="));
    CHECK_FALSE(secmsg::parse_pin("sha256:Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGwg"));
    CHECK_FALSE(secmsg::parse_pin("sha256:Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGwg=x"));
    CHECK_FALSE(secmsg::parse_pin("sha256:Ot7MzeLng9hT7P7ZYjYJ3KBRvo_SQtI93IoRChdNGwg="));
    // libsodium's decoder takes some bytes outside the alphabet (found by
    // fuzz-config): only the canonical text is a pin.
    CHECK_FALSE(
        secmsg::parse_pin("sha256:Zv2qG\xf8"
                          "dWY717m38ZOEFJmJKWP7zHiQS5T8au84asOzE="));
    // Non-canonical padding bits (the last character's low bits set).
    CHECK_FALSE(secmsg::parse_pin("sha256:Ot7MzeLng9hT7P7ZYjYJ3KBRvo/SQtI93IoRChdNGwh="));
}
