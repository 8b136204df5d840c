// Public-key pins: a minimal DER walk to the SubjectPublicKeyInfo (the exact
// bytes the certificate carries, never a re-encoding), SHA-256 from wolfCrypt,
// base64 from libsodium.
#include "keys/pin.hpp"

#include "proto/secret.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace secmsg {
namespace {

// One DER element: its tag, and the whole element (tag, length and content).
struct Tlv {
    std::uint8_t tag = 0;
    std::span<const std::uint8_t> whole;
    std::span<const std::uint8_t> content;
};

// Reads the element at the start of `in`; nullopt when it is truncated or
// uses a length form DER forbids.
std::optional<Tlv> read_tlv(std::span<const std::uint8_t> in) {
    if (in.size() < 2) return std::nullopt;
    const std::uint8_t tag = in[0];
    if ((tag & 0x1f) == 0x1f) return std::nullopt;  // multi-byte tags do not occur here
    std::size_t pos = 1;
    std::size_t len = in[pos++];
    if (len & 0x80) {
        const std::size_t n = len & 0x7f;
        if (n == 0 || n > 4 || in.size() < pos + n) return std::nullopt;
        len = 0;
        for (std::size_t i = 0; i < n; ++i) len = (len << 8) | in[pos++];
        if (len < 0x80) return std::nullopt;  // not minimal
    }
    if (in.size() - pos < len) return std::nullopt;
    return Tlv{tag, in.first(pos + len), in.subspan(pos, len)};
}

constexpr std::uint8_t tag_sequence = 0x30;
constexpr std::uint8_t tag_integer = 0x02;
constexpr std::uint8_t tag_version = 0xa0;  // [0] EXPLICIT

std::vector<std::uint8_t> pem_to_der(std::string_view text) {
    constexpr std::string_view begin = "-----BEGIN CERTIFICATE-----";
    constexpr std::string_view end = "-----END CERTIFICATE-----";
    const auto b = text.find(begin);
    if (b == std::string_view::npos) throw PinError("no CERTIFICATE block in PEM text");
    const auto body_start = b + begin.size();
    const auto e = text.find(end, body_start);
    if (e == std::string_view::npos) throw PinError("PEM CERTIFICATE block has no END line");
    const std::string_view body = text.substr(body_start, e - body_start);
    std::vector<std::uint8_t> der(body.size());
    std::size_t der_len = 0;
    if (sodium_base642bin(der.data(), der.size(), body.data(), body.size(), " \t\r\n", &der_len,
                          nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
        throw PinError("PEM CERTIFICATE block is not valid base64");
    der.resize(der_len);
    return der;
}

}  // namespace

std::span<const std::uint8_t> spki_of_certificate(std::span<const std::uint8_t> cert_der) {
    const auto fail = [] { return PinError("not a DER X.509 certificate"); };
    const auto cert = read_tlv(cert_der);
    if (!cert || cert->tag != tag_sequence) throw fail();
    const auto tbs = read_tlv(cert->content);
    if (!tbs || tbs->tag != tag_sequence) throw fail();
    auto rest = tbs->content;
    const auto next = [&]() {
        auto t = read_tlv(rest);
        if (!t) throw fail();
        rest = rest.subspan(t->whole.size());
        return *t;
    };
    auto t = next();
    if (t.tag == tag_version) t = next();
    if (t.tag != tag_integer) throw fail();  // serialNumber
    // signature, issuer, validity, subject
    for (int i = 0; i < 4; ++i)
        if (next().tag != tag_sequence) throw fail();
    t = next();  // subjectPublicKeyInfo
    if (t.tag != tag_sequence) throw fail();
    return t.whole;
}

PinDigest pin_digest_of_der(std::span<const std::uint8_t> cert_der) {
    return pin_digest_of_spki(spki_of_certificate(cert_der));
}

PinDigest pin_digest_of_spki(std::span<const std::uint8_t> spki) {
    PinDigest d{};
    if (wc_Sha256Hash(spki.data(), static_cast<word32>(spki.size()), d.data()) != 0)
        throw PinError("SHA-256 failed");
    return d;
}

std::string format_pin(const PinDigest& digest) {
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, digest.data(), digest.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    return std::string(pin_prefix) + b64;
}

std::string pin_of_der(std::span<const std::uint8_t> cert_der) {
    return format_pin(pin_digest_of_der(cert_der));
}

std::string pin_of_certificate(std::span<const std::uint8_t> der_or_pem) {
    if (!der_or_pem.empty() && der_or_pem[0] == tag_sequence) return pin_of_der(der_or_pem);
    const std::string_view text(reinterpret_cast<const char*>(der_or_pem.data()),
                                der_or_pem.size());
    return pin_of_der(pem_to_der(text));
}

std::string pin_of_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw PinError(path + ": cannot open: " + std::strerror(errno));
    const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                          std::istreambuf_iterator<char>()};
    if (in.bad()) throw PinError(path + ": read error");
    try {
        return pin_of_certificate(bytes);
    } catch (const PinError& e) {
        throw PinError(path + ": " + e.what());
    }
}

std::optional<PinDigest> parse_pin(std::string_view text) {
    if (!text.starts_with(pin_prefix)) return std::nullopt;
    text.remove_prefix(pin_prefix.size());
    if (text.size() != 44) return std::nullopt;  // base64 of 32 bytes, padded
    PinDigest d{};
    if (decode_base64_exact(text, d) != Base64::ok) return std::nullopt;
    return d;
}

}  // namespace secmsg
