// Public-key pins: "sha256:" followed by the standard base64 (with padding) of
// the SHA-256 digest of a certificate's SubjectPublicKeyInfo, as used by
// `secmsg --pin`.  The pin names the key, not the certificate, so it survives
// re-issuing a certificate for the same key.  No I/O except pin_of_file.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace secmsg {

inline constexpr std::string_view pin_prefix = "sha256:";

// A certificate that cannot be read or parsed; what() is one line naming it.
class PinError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

using PinDigest = std::array<std::uint8_t, 32>;

// The DER bytes of the SubjectPublicKeyInfo inside a DER X.509 certificate
// (a view into `cert_der`).  Throws PinError when the DER is not a certificate.
std::span<const std::uint8_t> spki_of_certificate(std::span<const std::uint8_t> cert_der);

// SHA-256 of DER SubjectPublicKeyInfo bytes (a key's pin).  Throws PinError.
PinDigest pin_digest_of_spki(std::span<const std::uint8_t> spki_der);

// SHA-256 of the certificate's SubjectPublicKeyInfo.  Throws PinError.
PinDigest pin_digest_of_der(std::span<const std::uint8_t> cert_der);

// "sha256:BASE64" for a DER certificate.  Throws PinError.
std::string pin_of_der(std::span<const std::uint8_t> cert_der);

// "sha256:BASE64" for a certificate given as DER or PEM (the first
// CERTIFICATE block is used).  Throws PinError.
std::string pin_of_certificate(std::span<const std::uint8_t> der_or_pem);

// "sha256:BASE64" of the certificate in the file at `path` (DER or PEM).
// Throws PinError naming the file when it cannot be read or parsed.
std::string pin_of_file(const std::string& path);

// Decodes "sha256:BASE64" (exactly 32 bytes once decoded); nullopt when the
// text is not such a pin.
std::optional<PinDigest> parse_pin(std::string_view text);

// Formats a digest as "sha256:BASE64".
std::string format_pin(const PinDigest& digest);

}  // namespace secmsg
