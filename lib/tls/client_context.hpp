// Client-side TLS helpers beyond make_client_context (declared in context.hpp):
// the system trust store, and what a successful handshake negotiated.
// (What a failed one means: Session::fault().)
#pragma once

#include "tls/session.hpp"

#include <string>

namespace secmsg::tls {

// The trust store used when no --ca-file is given.
inline constexpr const char* system_ca_file = "/etc/ssl/certs/ca-certificates.crt";

// After a handshake: the key exchange group negotiated ("X25519", ...);
// empty if unknown.
std::string key_exchange_group(const Session& s);

// (peer_pin, the server key's pin, is declared in session.hpp.)

}  // namespace secmsg::tls
