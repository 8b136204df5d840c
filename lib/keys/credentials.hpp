// First-start credentials for the daemon: a self-signed TLS certificate with
// its private key, and a PSK file, created only where missing.
#pragma once

#include "proto/secret.hpp"

#include <ctime>
#include <string>
#include <vector>

namespace secmsg {

// The kind of key the certificate carries.
enum class KeyType { ecdsa_p256, ed25519 };

// Parses "ecdsa" (also "ecdsa-p256", "p256") or "ed25519"; throws
// std::invalid_argument naming the accepted values otherwise.
KeyType parse_key_type(const std::string& name);

// What init_credentials() found and did.
struct CredentialsReport {
    std::string key_file;              // DIR/tls.key
    std::string cert_file;             // DIR/tls.crt
    std::string psk_file;              // DIR/psk (empty for a client identity)
    std::vector<std::string> created;  // paths created by this call (empty: nothing to do)
    std::time_t renewed_from =
        0;                      // when DIR/tls.crt was renewed: the expiry of the old one; else 0
    std::time_t not_after = 0;  // when DIR/tls.crt (as it is now) expires
    std::string pin;            // "sha256:BASE64" of the certificate's SubjectPublicKeyInfo
                                // (of DIR/tls.crt, whether created now or found)
};

// Creates, only where missing, in `dir` (which is created with mode 0700 if
// missing, and must be owned by root or this process's user and writable by
// no one else, see check_credential_directory): `tls.key` (PEM private key,
// mode 0600, written atomically) with `tls.crt` (PEM self-signed
// certificate of that key, made with wolfCrypt: subjectAltName = the host
// name, localhost, 127.0.0.1, ::1; valid from an hour before `now` for 397
// days), and `psk` (via generate_psk_file).  Never overwrites a key or a
// PSK.  A certificate this function made (self-signed, with its
// organisational unit) that expires less than 30 days after `now` is
// replaced by a new one for the same key, so that its pin stays valid;
// any other certificate is kept as it is.  The key is linked into place
// before the certificate, so an interrupted run leaves at most a key: when
// tls.key exists and tls.crt does not, the certificate is made for the
// existing key (whatever its type); when tls.crt exists without tls.key,
// throws std::runtime_error.  Existing files are read with the checks of
// read_credential_file.  Throws KeyFileError (an unsafe directory, an
// unusable file) and std::runtime_error (one clear line naming the file)
// on any other I/O or crypto failure.  Idempotent: a second call creates
// nothing, same pin.
CredentialsReport init_credentials(const std::string& dir, KeyType type = KeyType::ecdsa_p256,
                                   std::time_t now = std::time(nullptr));

// A client identity for mutual TLS (secmsg --init-identity): in `dir`
// (created and checked as by init_credentials), `client.key` and
// `client.crt`, a self-signed certificate of it (subject CN = the host
// name, extended key usage clientAuth, no subjectAltName, same validity
// and renewal as init_credentials'), made and kept with the same rules:
// created only where missing, never overwritten, idempotent.  No PSK
// (psk_file stays empty).  The pin is the one to give the server's
// --allow-client.  Throws as init_credentials does.
CredentialsReport init_client_identity(const std::string& dir, KeyType type = KeyType::ecdsa_p256,
                                       std::time_t now = std::time(nullptr));

// "sha256:BASE64" of the public half of the PEM private key `pem` (read
// from `path`, named in errors): the pin of any certificate of that key.
// Throws std::runtime_error for a key that is neither ECDSA P-256 nor
// Ed25519.
std::string pin_of_private_key(const std::string& path, const SecretBytes& pem);

// The report as lines for a person: what was created or renewed (or that
// nothing was), until when the certificate is valid, and for a server's
// credentials the pin clients check.  (For a client identity the program
// adds how to use it and how a server admits it: report.pin.)
std::string format_report(const CredentialsReport& report);

}  // namespace secmsg
