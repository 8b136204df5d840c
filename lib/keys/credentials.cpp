// First-start credentials: a self-signed certificate made with wolfCrypt's
// certificate generation, its private key, and a PSK file.
#include "keys/credentials.hpp"

#include "keys/client_identity.hpp"
#include "keys/files.hpp"
#include "keys/pin.hpp"
#include "keys/psk.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <sodium.h>

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <vector>

#if !defined(WOLFSSL_CERT_GEN) || !defined(WOLFSSL_ALT_NAMES) || !defined(WOLFSSL_KEY_GEN) || \
    !defined(WOLFSSL_CERT_EXT) || !defined(HAVE_ED25519) || !defined(HAVE_ECC)
#error "credentials.cpp needs a wolfSSL with certgen, keygen, certext, alt names, ECC and Ed25519"
#endif

namespace secmsg {
namespace {

// 397 days: the longest validity browsers and TLS audits accept for a
// server certificate.  Renewed at start when less than 30 days remain.
constexpr std::time_t day = 86400;
constexpr std::time_t validity_seconds = 397 * day;
constexpr std::time_t renew_within_seconds = 30 * day;
constexpr std::time_t backdate_seconds = 3600;
constexpr std::size_t der_capacity = 4096;  // a P-256 or Ed25519 certificate is < 1 KiB

// What the self-signed certificates this file makes say, per use.  The
// organisational unit marks them as made here (only those are renewed).
struct Profile {
    const char* key_name;  // in the directory
    const char* cert_name;
    const char* unit;
    const char* ext_key_usage;
    bool server_names;  // subjectAltName: the host name, localhost, 127.0.0.1, ::1
};
constexpr Profile server_profile{"tls.key", "tls.crt", "self-signed first-start certificate",
                                 "serverAuth", true};
constexpr Profile client_profile{"client.key", "client.crt", "self-signed client identity",
                                 "clientAuth", false};
[[noreturn]] void fail(const std::string& what, int wolf_error) {
    throw std::runtime_error(what + ": " + wc_GetErrorString(wolf_error));
}

[[noreturn]] void fail_errno(const std::string& what, const std::string& path) {
    throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

// The size of a buffer as wolfCrypt takes it.
word32 capacity(const SecretBytes& b) { return static_cast<word32>(b.size()); }

class Rng {
public:
    Rng() {
        if (int rc = wc_InitRng(&rng_); rc != 0)
            fail("cannot initialise wolfCrypt's random generator", rc);
    }
    ~Rng() { wc_FreeRng(&rng_); }
    Rng(const Rng&) = delete;
    Rng& operator=(const Rng&) = delete;
    WC_RNG* get() { return &rng_; }

private:
    WC_RNG rng_{};
};

// One private key of either type; freed (and so wiped by wolfCrypt) on destruction.
class PrivateKey {
public:
    explicit PrivateKey(KeyType type) : type_(type) {
        int rc = type == KeyType::ecdsa_p256 ? wc_ecc_init(&ecc_) : wc_ed25519_init(&ed_);
        if (rc != 0) fail("cannot initialise a key", rc);
    }
    ~PrivateKey() {
        if (type_ == KeyType::ecdsa_p256)
            wc_ecc_free(&ecc_);
        else
            wc_ed25519_free(&ed_);
    }
    PrivateKey(const PrivateKey&) = delete;
    PrivateKey& operator=(const PrivateKey&) = delete;

    KeyType type() const { return type_; }
    int wolf_type() const { return type_ == KeyType::ecdsa_p256 ? ECC_TYPE : ED25519_TYPE; }
    int sig_type() const { return type_ == KeyType::ecdsa_p256 ? CTC_SHA256wECDSA : CTC_ED25519; }
    void* get() {
        return type_ == KeyType::ecdsa_p256 ? static_cast<void*>(&ecc_) : static_cast<void*>(&ed_);
    }

    void generate(Rng& rng) {
        int rc = type_ == KeyType::ecdsa_p256
                     ? wc_ecc_make_key_ex(rng.get(), 32, &ecc_, ECC_SECP256R1)
                     : wc_ed25519_make_key(rng.get(), ED25519_KEY_SIZE, &ed_);
        if (rc != 0) fail("cannot generate a key", rc);
    }

    // SHA-256 of the public key's SubjectPublicKeyInfo, as a certificate of it carries it.
    PinDigest pin_digest() {
        byte der[128];
        int n = type_ == KeyType::ecdsa_p256 ? wc_EccPublicKeyToDer(&ecc_, der, sizeof der, 1)
                                             : wc_Ed25519PublicKeyToDer(&ed_, der, sizeof der, 1);
        if (n <= 0) fail("cannot encode the public key", n);
        return pin_digest_of_spki({der, static_cast<std::size_t>(n)});
    }

    // PKCS#8 DER of the private key into `out`; returns its length.
    word32 to_pkcs8(SecretBytes& out) {
        if (type_ == KeyType::ecdsa_p256) {
            word32 len = capacity(out);
            if (int rc = wc_EccKeyToPKCS8(&ecc_, out.data(), &len); rc < 0)
                fail("cannot encode the key", rc);
            return len;
        }
        int rc = wc_Ed25519PrivateKeyToDer(&ed_, out.data(), capacity(out));
        if (rc < 0) fail("cannot encode the key", rc);
        return static_cast<word32>(rc);
    }

private:
    KeyType type_;
    ecc_key ecc_{};
    ed25519_key ed_{};
};

// An existing key file, decoded: PEM "PRIVATE KEY" (PKCS#8) or SEC1 "EC PRIVATE KEY".
std::unique_ptr<PrivateKey> load_key(const std::string& path, const SecretBytes& pem, Rng& rng) {
    SecretBytes der(pem.size());
    int len = wc_KeyPemToDer(pem.data(), static_cast<int>(pem.size()), der.data(),
                             static_cast<int>(der.size()), nullptr);
    if (len <= 0) fail("cannot read the private key in " + path, len);

    auto ecc = std::make_unique<PrivateKey>(KeyType::ecdsa_p256);
    word32 idx = 0;
    if (wc_EccPrivateKeyDecode(der.data(), &idx, static_cast<ecc_key*>(ecc->get()),
                               static_cast<word32>(len)) == 0) {
        auto* k = static_cast<ecc_key*>(ecc->get());
        if (wc_ecc_get_curve_id(k->idx) != ECC_SECP256R1)
            throw std::runtime_error("the key in " + path +
                                     " is an ECDSA key on a curve other than P-256");
        // A SEC1 key may come without its public point: derive it.
        if (k->type == ECC_PRIVATEKEY_ONLY) {
            if (int rc = wc_ecc_make_pub_ex(k, nullptr, rng.get()); rc != 0)
                fail("cannot derive the public key of " + path, rc);
        }
        return ecc;
    }
    auto ed = std::make_unique<PrivateKey>(KeyType::ed25519);
    idx = 0;
    auto* k = static_cast<ed25519_key*>(ed->get());
    if (wc_Ed25519PrivateKeyDecode(der.data(), &idx, k, static_cast<word32>(len)) == 0) {
        if (!k->pubKeySet) {
            byte pub[ED25519_PUB_KEY_SIZE];
            byte priv[ED25519_KEY_SIZE];
            std::memcpy(priv, k->k, sizeof priv);
            int rc = wc_ed25519_make_public(k, pub, sizeof pub);
            if (rc == 0) rc = wc_ed25519_import_private_key(priv, sizeof priv, pub, sizeof pub, k);
            sodium_memzero(priv, sizeof priv);
            if (rc != 0) fail("cannot derive the public key of " + path, rc);
        }
        return ed;
    }
    throw std::runtime_error("the key in " + path +
                             " is neither an ECDSA P-256 nor an Ed25519 private key");
}

// DER length octets.
void put_length(std::string& out, std::size_t n) {
    if (n < 0x80) {
        out.push_back(static_cast<char>(n));
    } else if (n < 0x100) {
        out.push_back(static_cast<char>(0x81));
        out.push_back(static_cast<char>(n));
    } else {
        out.push_back(static_cast<char>(0x82));
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n & 0xff));
    }
}

void put_tlv(std::string& out, unsigned char tag, std::string_view value) {
    out.push_back(static_cast<char>(tag));
    put_length(out, value.size());
    out.append(value);
}

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return {};
    return buf;
}

// GeneralNames (RFC 5280 4.2.1.6): dNSName [2] and iPAddress [7], implicit tags.
std::string subject_alt_names(const std::string& host) {
    std::string names;
    if (is_dns_name(host) && host != "localhost") put_tlv(names, 0x82, host);
    put_tlv(names, 0x82, "localhost");
    const unsigned char v4[4] = {127, 0, 0, 1};
    put_tlv(names, 0x87, std::string_view(reinterpret_cast<const char*>(v4), sizeof v4));
    unsigned char v6[16] = {};
    v6[15] = 1;
    put_tlv(names, 0x87, std::string_view(reinterpret_cast<const char*>(v6), sizeof v6));
    std::string seq;
    put_tlv(seq, 0x30, names);
    return seq;
}

// An X.509 Time (tag and length included): UTCTime until 2049, GeneralizedTime after.
int encode_time(std::time_t t, byte* out) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[32];
    const bool utc = tm.tm_year + 1900 < 2050;
    std::size_t n = std::strftime(text, sizeof text, utc ? "%y%m%d%H%M%SZ" : "%Y%m%d%H%M%SZ", &tm);
    out[0] = utc ? ASN_UTC_TIME : ASN_GENERALIZED_TIME;
    out[1] = static_cast<byte>(n);
    std::memcpy(out + 2, text, n);
    return static_cast<int>(n + 2);
}

std::string make_certificate_pem(PrivateKey& key, Rng& rng, std::time_t now,
                                 const Profile& profile) {
    auto cert = std::make_unique<Cert>();
    if (int rc = wc_InitCert(cert.get()); rc != 0) fail("cannot initialise a certificate", rc);
    cert->sigType = key.sig_type();
    cert->isCA = 0;
    cert->selfSigned = 1;

    const std::string host = host_name();
    const std::string cn = is_dns_name(host) && host.size() < CTC_NAME_SIZE ? host : "localhost";
    std::strncpy(cert->subject.commonName, cn.c_str(), CTC_NAME_SIZE - 1);
    std::strncpy(cert->subject.org, profile.server_names ? "secmsgd" : "secmsg", CTC_NAME_SIZE - 1);
    std::strncpy(cert->subject.unit, profile.unit, CTC_NAME_SIZE - 1);

    if (profile.server_names) {
        const std::string san = subject_alt_names(host);
        std::memcpy(cert->altNames, san.data(), san.size());
        cert->altNamesSz = static_cast<int>(san.size());
    }

    cert->beforeDateSz = encode_time(now - backdate_seconds, cert->beforeDate);
    cert->afterDateSz = encode_time(now - backdate_seconds + validity_seconds, cert->afterDate);

    if (int rc = wc_SetKeyUsage(cert.get(), "digitalSignature"); rc != 0)
        fail("cannot set the key usage", rc);
    if (int rc = wc_SetExtKeyUsage(cert.get(), profile.ext_key_usage); rc != 0)
        fail("cannot set the extended key usage", rc);
    if (int rc = wc_SetSubjectKeyIdFromPublicKey_ex(cert.get(), key.wolf_type(), key.get());
        rc != 0)
        fail("cannot set the subject key id", rc);

    std::vector<byte> der(der_capacity);
    int body = wc_MakeCert_ex(cert.get(), der.data(), static_cast<word32>(der.size()),
                              key.wolf_type(), key.get(), rng.get());
    if (body < 0) fail("cannot make the certificate", body);
    int len =
        wc_SignCert_ex(cert->bodySz, cert->sigType, der.data(), static_cast<word32>(der.size()),
                       key.wolf_type(), key.get(), rng.get());
    if (len < 0) fail("cannot sign the certificate", len);

    std::vector<byte> pem(der_capacity * 2);
    int pem_len = wc_DerToPem(der.data(), static_cast<word32>(len), pem.data(),
                              static_cast<word32>(pem.size()), CERT_TYPE);
    if (pem_len <= 0) fail("cannot encode the certificate", pem_len);
    return std::string(reinterpret_cast<const char*>(pem.data()),
                       static_cast<std::size_t>(pem_len));
}

// The key as PEM "PRIVATE KEY", in memory that is wiped.
SecretBytes key_pem(PrivateKey& key, word32& pem_len) {
    SecretBytes der(der_capacity);
    word32 der_len = key.to_pkcs8(der);
    SecretBytes pem(der_capacity * 2);
    int n = wc_DerToPem(der.data(), der_len, pem.data(), capacity(pem), PKCS8_PRIVATEKEY_TYPE);
    if (n <= 0) fail("cannot encode the key", n);
    pem_len = static_cast<word32>(n);
    return pem;
}

bool exists(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) return true;
    if (errno != ENOENT) fail_errno("cannot inspect", path);
    return false;
}

SecretBytes read_key_file(const std::string& path) {
    return read_credential_file(path, CredentialKind::private_key).bytes;
}

// What renewal needs to know of an existing certificate.
struct CertificateFacts {
    std::time_t not_after = 0;
    bool made_here = false;  // self-signed, with the unit name this file gives its certificates
    std::string pin;
};

CertificateFacts inspect_certificate(const std::string& path, const SecretBytes& pem,
                                     const Profile& profile) {
    std::vector<byte> der(pem.size());
    const int len = wc_CertPemToDer(pem.data(), static_cast<int>(pem.size()), der.data(),
                                    static_cast<int>(der.size()), CERT_TYPE);
    if (len <= 0) fail("cannot read the PEM certificate in " + path, len);
    auto dc = std::make_unique<DecodedCert>();
    wc_InitDecodedCert(dc.get(), der.data(), static_cast<word32>(len), nullptr);
    struct Free {
        DecodedCert* c;
        ~Free() { wc_FreeDecodedCert(c); }
    } free_later{dc.get()};
    if (int rc = wc_ParseCert(dc.get(), CERT_TYPE, NO_VERIFY, nullptr); rc != 0)
        fail("cannot parse the certificate in " + path, rc);

    CertificateFacts facts;
    const byte* date = nullptr;
    byte format = 0;
    int date_len = 0;
    std::tm tm{};
    if (int rc = wc_GetDateInfo(dc->afterDate, dc->afterDateLen, &date, &format, &date_len);
        rc != 0)
        fail("cannot read the expiry date of " + path, rc);
    if (int rc = wc_GetDateAsCalendarTime(date, date_len, format, &tm); rc != 0)
        fail("cannot read the expiry date of " + path, rc);
    facts.not_after = timegm(&tm);
    facts.made_here =
        std::memcmp(dc->subjectHash, dc->issuerHash, sizeof dc->subjectHash) == 0 &&
        dc->subjectOU != nullptr &&
        std::string_view(dc->subjectOU, static_cast<std::size_t>(dc->subjectOULen)) == profile.unit;
    facts.pin = pin_of_der({der.data(), static_cast<std::size_t>(len)});
    return facts;
}

std::string format_date(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &tm);
    return text;
}

// Creates path with `mode` atomically; false when it already exists.
bool write_new_file(const std::string& path, const byte* data, std::size_t len, mode_t mode) {
    return write_file_atomically(path, {data, len}, mode);
}

SecretBytes read_certificate_file(const std::string& path) {
    return read_credential_file(path, CredentialKind::certificate).bytes;
}

// Replaces a certificate that this file made (see CertificateFacts) and
// that expires within renew_within_seconds of `now` by a new one for the
// same key, so the pin stays; notes it in `r`.
void renew_if_due(CredentialsReport& r, std::time_t now, const Profile& profile) {
    const CertificateFacts old =
        inspect_certificate(r.cert_file, read_certificate_file(r.cert_file), profile);
    if (!old.made_here || old.not_after - now >= renew_within_seconds) return;
    Rng rng;
    const auto key = load_key(r.key_file, read_key_file(r.key_file), rng);
    const std::string pem = make_certificate_pem(*key, rng, now, profile);
    const std::span<const std::uint8_t> bytes{reinterpret_cast<const std::uint8_t*>(pem.data()),
                                              pem.size()};
    if (pin_of_certificate(bytes) != old.pin)
        throw std::runtime_error(
            r.cert_file + " expires on " + format_date(old.not_after) +
            " and is due for renewal, but it is not the certificate of " + r.key_file +
            ", and renewing it would change the pin: put back the key it belongs to, "
            "or remove " +
            r.cert_file + " to get a new certificate (and pin) for this key");
    write_file_atomically(r.cert_file, bytes, 0644, Existing::replace);
    r.renewed_from = old.not_after;
}

void ensure_directory(const std::string& dir, std::vector<std::string>& created) {
    if (::mkdir(dir.c_str(), 0700) == 0)
        created.push_back(dir);
    else if (errno != EEXIST)
        fail_errno("cannot create the directory", dir);
    check_credential_directory(dir);
}

}  // namespace

KeyType parse_key_type(const std::string& name) {
    if (name == "ecdsa" || name == "ecdsa-p256" || name == "p256") return KeyType::ecdsa_p256;
    if (name == "ed25519") return KeyType::ed25519;
    throw std::invalid_argument("unknown key type '" + name + "': use ecdsa or ed25519");
}

namespace {

// In `base` (an existing, checked directory), the profile's key and
// certificate where missing, or the certificate renewed (see
// init_credentials); notes what it did in `r`, and the facts of the
// certificate as it is now.
void ensure_key_and_certificate(CredentialsReport& r, const std::string& base,
                                const Profile& profile, KeyType type, std::time_t now) {
    r.key_file = base + "/" + profile.key_name;
    r.cert_file = base + "/" + profile.cert_name;
    const bool have_key = exists(r.key_file);
    const bool have_cert = exists(r.cert_file);
    if (have_cert && !have_key)
        throw std::runtime_error(r.cert_file + " exists without its key " + r.key_file +
                                 ": provide the key or remove the certificate");
    if (!have_cert) {
        Rng rng;
        std::unique_ptr<PrivateKey> key;
        if (have_key) {
            key = load_key(r.key_file, read_key_file(r.key_file), rng);
        } else {
            key = std::make_unique<PrivateKey>(type);
            key->generate(rng);
            word32 len = 0;
            const SecretBytes pem = key_pem(*key, len);
            if (write_new_file(r.key_file, pem.data(), len, 0600)) {
                r.created.push_back(r.key_file);
            } else {
                // Another process created the key meanwhile: certify that one.
                key = load_key(r.key_file, read_key_file(r.key_file), rng);
            }
        }
        const std::string cert = make_certificate_pem(*key, rng, now, profile);
        if (write_new_file(r.cert_file, reinterpret_cast<const byte*>(cert.data()), cert.size(),
                           0644))
            r.created.push_back(r.cert_file);
    } else {
        renew_if_due(r, now, profile);
    }
}

void note_certificate(CredentialsReport& r, const Profile& profile) {
    const CertificateFacts facts =
        inspect_certificate(r.cert_file, read_certificate_file(r.cert_file), profile);
    r.pin = facts.pin;
    r.not_after = facts.not_after;
}

}  // namespace

CredentialsReport init_credentials(const std::string& dir, KeyType type, std::time_t now) {
    CredentialsReport r;
    const std::string base = dir.empty() ? std::string(".") : dir;
    r.psk_file = base + "/psk";
    ensure_directory(base, r.created);
    ensure_key_and_certificate(r, base, server_profile, type, now);

    if (!exists(r.psk_file)) {
        try {
            generate_psk_file(r.psk_file, Existing::keep);
            r.created.push_back(r.psk_file);
        } catch (const KeyFileError& e) {
            if (e.kind() != KeyFileError::Kind::exists) throw;
        }
    }
    note_certificate(r, server_profile);
    return r;
}

CredentialsReport init_client_identity(const std::string& dir, KeyType type, std::time_t now) {
    CredentialsReport r;
    const std::string base = dir.empty() ? std::string(".") : dir;
    ensure_directory(base, r.created);
    ensure_key_and_certificate(r, base, client_profile, type, now);
    note_certificate(r, client_profile);
    return r;
}

std::string pin_of_private_key(const std::string& path, const SecretBytes& pem) {
    Rng rng;
    return format_pin(load_key(path, pem, rng)->pin_digest());
}

std::string format_report(const CredentialsReport& r) {
    std::string out;
    for (const auto& path : r.created) out += "created " + path + "\n";
    if (r.renewed_from != 0)
        out += "renewed " + r.cert_file + " (it was valid until " + format_date(r.renewed_from) +
               "): same key " + r.key_file + ", so the pin is unchanged\n";
    if (r.created.empty() && r.renewed_from == 0)
        out += (r.psk_file.empty() ? "identity" : "credentials") +
               std::string(" already present, nothing created\n");
    out += "certificate: " + r.cert_file + ", valid until " + format_date(r.not_after) + "\n";
    if (!r.psk_file.empty()) out += "pin for clients: " + r.pin + "\n";
    return out;
}

}  // namespace secmsg
