// Client-side TLS helpers beyond make_client_context (declared in tls.hpp):
// what a failed handshake means, and what a successful one negotiated.
#pragma once

#include "tls.hpp"

#include <string>

namespace secmsg::tls {

// The trust store used when no --ca-file is given.
inline constexpr const char* system_ca_file = "/etc/ssl/certs/ca-certificates.crt";

// After Session::handshake() returned failed: true when the server's
// certificate (CA chain, name, validity) or pin was rejected.
bool rejected_certificate(const Session& s);

// After Session::handshake() returned failed: true when the connection was
// closed or reset under the handshake (not a TLS-level refusal).
bool connection_dropped(const Session& s);

// After a handshake: the key exchange group negotiated ("X25519", ...);
// empty if unknown.
std::string key_exchange_group(const Session& s);

// After a handshake: "sha256:BASE64" of the server certificate's key, as
// the verify callback saw it during this handshake (in every trust mode);
// empty when no certificate was seen (a resumed session).
std::string peer_pin(const Session& s);

}  // namespace secmsg::tls
