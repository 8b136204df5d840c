// Which client certificates a server accepts (mutual TLS) and who the
// client is: the --allow-client entries (a public-key pin, or a name that
// must be among the certificate's subjectAltNames), the names a
// certificate carries, and the verdict on one certificate.  No I/O; the
// verify callback in tls/context.cpp feeds it the certificate wolfSSL received.
#pragma once

#include "keys/pin.hpp"
#include "keys/setup_error.hpp"

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace secmsg {

// An --allow-client entry that is neither a pin nor a name; what() is one
// line naming it and saying what is expected.
class ClientIdentityError : public SetupError {
public:
    using SetupError::SetupError;
};

// A host name usable as a dNSName: LDH labels (letters, digits, '-') of at
// most 63 characters, separated by dots, 253 in all.
bool is_dns_name(std::string_view name);

// One --allow-client entry.  Which kind a name is follows from its text:
// "sha256:..." a pin, a ':' (after a scheme) a URI, an '@' an email
// address (rfc822Name), anything else a DNS name.
struct AllowedClient {
    enum class Kind { pin, dns, uri, email };
    Kind kind = Kind::pin;
    std::string text;  // as given: what SECMSG_CLIENT says when it matches
    PinDigest pin{};   // Kind::pin only
};

// Parses one entry; throws ClientIdentityError for a malformed pin, an
// empty or non-printable name, a DNS name that is not one (letters,
// digits, '-' and '.', no wildcard), a URI without a scheme.
AllowedClient parse_allowed_client(std::string_view text);

// The subjectAltName entries of a certificate that can name a client, in
// the certificate's order.
struct CertificateNames {
    std::vector<std::string> dns, uri, email;
};

// The names of a DER certificate (parsed by wolfCrypt, signature not
// checked); throws PinError when it is not a certificate.
CertificateNames names_of_certificate(std::span<const std::uint8_t> cert_der);

// What a server asks of its clients.  Inactive (no CA, no entries): no
// client certificate is requested and records name no client.
struct ClientPolicy {
    bool require_ca = false;             // --client-ca: the chain must verify
    std::vector<AllowedClient> allowed;  // --allow-client; empty: any (with the CA)
    bool active() const { return require_ca || !allowed.empty(); }
};

// The verdict on one client certificate.
struct ClientVerdict {
    bool accepted = false;
    // Accepted: SECMSG_CLIENT, the matched entry (a name before a pin);
    // with a CA and no entries, the certificate's first DNS, URI or email
    // name (vouched for by the CA), else its pin.
    std::string identity;
    std::string why;  // refused: one line for the log, peer-given names escaped
};

// What wolfSSL found of a certificate's chain to a --client-ca CA.
enum class ChainCheck { verified, not_verified };

// Judges the leaf certificate `cert_der` whose key digest is `pin`.
// `chain` is consulted only when the policy requires a CA; when it is
// not_verified, `chain_error` says why.  Names are compared as the
// certificate carries them, without wildcards: DNS names and email
// domains ignoring ASCII case, URIs exactly.
ClientVerdict judge_client(const ClientPolicy& policy, std::span<const std::uint8_t> cert_der,
                           const PinDigest& pin, ChainCheck chain, std::string_view chain_error);

}  // namespace secmsg
