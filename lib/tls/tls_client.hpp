// Client-side TLS helpers beyond make_client_context (declared in tls.hpp):
// what a failed handshake means, and what a successful one negotiated.
#pragma once

#include "tls/tls.hpp"

#include <string>

namespace secmsg::tls {

// The trust store used when no --ca-file is given.
inline constexpr const char* system_ca_file = "/etc/ssl/certs/ca-certificates.crt";

// After Session::handshake() returned failed: true when the server's
// certificate (CA chain, name, validity) or pin was rejected.
bool rejected_certificate(const Session& s);

// After a failed handshake, read or write: the name of the fatal alert
// ("bad_certificate", "certificate_required", "unknown_ca", ...) with which
// the server refused this client's certificate, or its lack of one; null
// when it did not.  With TLS 1.3 a client learns it only after its side of
// the handshake is done: at its first read or write.
const char* refusal_alert(const Session& s);

// After Session::handshake() returned failed: true when the connection was
// closed or reset under the handshake (not a TLS-level refusal).
bool connection_dropped(const Session& s);

// After a handshake: the key exchange group negotiated ("X25519", ...);
// empty if unknown.
std::string key_exchange_group(const Session& s);

// (peer_pin, the server key's pin, is declared in tls.hpp.)

}  // namespace secmsg::tls
