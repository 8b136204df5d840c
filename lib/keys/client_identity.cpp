// Client identities: --allow-client entries, a certificate's names
// (wolfCrypt's certificate parser), and the verdict (see client_identity.hpp).
#include "keys/client_identity.hpp"

#include "proto/escape.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <algorithm>
#include <memory>

namespace secmsg {

bool is_dns_name(std::string_view name) {
    if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.')
        return false;
    std::size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || ++label > 63) return false;
    }
    return true;
}

namespace {

bool printable(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

// RFC 3986 scheme: a letter, then letters, digits, '+', '-', '.'; then ':'.
bool has_scheme(std::string_view s) {
    const auto colon = s.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon + 1 == s.size()) return false;
    const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (!alpha(s[0])) return false;
    return std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(colon), [&](char c) {
        return alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    });
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
    const auto lower = [](char c) {
        return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    };
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [&](char x, char y) { return lower(x) == lower(y); });
}

// rfc822Name: the local part exactly, the domain ignoring case.
bool same_email(std::string_view a, std::string_view b) {
    const auto at_a = a.rfind('@');
    const auto at_b = b.rfind('@');
    return at_a == at_b && a.substr(0, at_a) == b.substr(0, at_b) &&
           equal_ignoring_case(a.substr(at_a), b.substr(at_b));
}

bool matches(const AllowedClient& entry, const CertificateNames& names) {
    const auto any = [&](const std::vector<std::string>& list, auto&& same) {
        return std::any_of(list.begin(), list.end(),
                           [&](const std::string& n) { return same(entry.text, n); });
    };
    switch (entry.kind) {
    case AllowedClient::Kind::dns: return any(names.dns, equal_ignoring_case);
    case AllowedClient::Kind::uri:
        return any(names.uri, [](std::string_view a, std::string_view b) { return a == b; });
    case AllowedClient::Kind::email: return any(names.email, same_email);
    case AllowedClient::Kind::pin: return false;
    }
    return false;
}

// "names a, b" of a refused certificate for the log: peer-given bytes,
// escaped and bounded.
std::string describe_names(const CertificateNames& names) {
    std::string out;
    std::size_t shown = 0, total = names.dns.size() + names.uri.size() + names.email.size();
    for (const auto* list : {&names.dns, &names.uri, &names.email})
        for (const auto& n : *list)
            if (shown < 4) out += (shown++ ? ", " : "") + escape_payload(n, 80);
    if (total > shown) out += ", and " + std::to_string(total - shown) + " more";
    return out.empty() ? "no subjectAltName" : "names " + out;
}

}  // namespace

AllowedClient parse_allowed_client(std::string_view text) {
    const std::string shown = escape_payload(text, 80);
    AllowedClient entry;
    entry.text = std::string(text);
    if (text.starts_with(pin_prefix)) {
        const auto pin = parse_pin(text);
        if (!pin)
            throw ClientIdentityError("allowed client " + shown +
                                      ": not a pin (expected sha256: and the base64 of 32 bytes)");
        entry.kind = AllowedClient::Kind::pin;
        entry.pin = *pin;
        return entry;
    }
    if (text.empty() || !printable(text))
        throw ClientIdentityError("allowed client " + shown +
                                  ": a name must be printable ASCII without spaces");
    if (text.find(':') != std::string_view::npos) {
        if (!has_scheme(text))
            throw ClientIdentityError("allowed client " + shown +
                                      ": a name with ':' is a URI and needs a scheme (as in "
                                      "spiffe://example.org/client)");
        entry.kind = AllowedClient::Kind::uri;
    } else if (const auto at = text.find('@'); at != std::string_view::npos) {
        if (at == 0 || !is_dns_name(text.substr(at + 1)))
            throw ClientIdentityError("allowed client " + shown +
                                      ": an email address needs a local part and a domain name");
        entry.kind = AllowedClient::Kind::email;
    } else {
        if (!is_dns_name(text))
            throw ClientIdentityError("allowed client " + shown +
                                      ": not a DNS name (letters, digits, '-' and '.'; no "
                                      "wildcards), nor a pin, URI or email address");
        entry.kind = AllowedClient::Kind::dns;
    }
    return entry;
}

CertificateNames names_of_certificate(std::span<const std::uint8_t> cert_der) {
    auto dc = std::make_unique<DecodedCert>();
    wc_InitDecodedCert(dc.get(), cert_der.data(), static_cast<word32>(cert_der.size()), nullptr);
    struct Free {
        DecodedCert* c;
        ~Free() { wc_FreeDecodedCert(c); }
    } free_later{dc.get()};
    if (wc_ParseCert(dc.get(), CERT_TYPE, NO_VERIFY, nullptr) != 0)
        throw PinError("not a DER X.509 certificate");
    CertificateNames names;
    for (const DNS_entry* list : {dc->altNames, dc->altEmailNames}) {
        for (const DNS_entry* e = list; e; e = e->next) {
            if (!e->name || e->len <= 0) continue;
            std::string name(e->name, static_cast<std::size_t>(e->len));
            if (e->type == ASN_DNS_TYPE)
                names.dns.push_back(std::move(name));
            else if (e->type == ASN_URI_TYPE)
                names.uri.push_back(std::move(name));
            else if (e->type == ASN_RFC822_TYPE)
                names.email.push_back(std::move(name));
        }
    }
    return names;
}

ClientVerdict judge_client(const ClientPolicy& policy, std::span<const std::uint8_t> cert_der,
                           const PinDigest& pin, ChainCheck chain, std::string_view chain_error) {
    ClientVerdict v;
    const std::string pin_text = format_pin(pin);
    if (policy.require_ca && chain != ChainCheck::verified) {
        v.why = "certificate of key " + pin_text + " does not chain to a client CA (" +
                escape_payload(chain_error, 120) + ")";
        return v;
    }
    const CertificateNames names = names_of_certificate(cert_der);
    if (policy.allowed.empty()) {  // any certificate of the CA
        v.accepted = true;
        v.identity = pin_text;
        for (const auto* list : {&names.dns, &names.uri, &names.email}) {
            const auto it = std::find_if(list->begin(), list->end(),
                                         [](const std::string& n) { return printable(n); });
            if (it != list->end()) {
                v.identity = *it;
                break;
            }
        }
        return v;
    }
    // Names are checked only with a CA (make_server_context refuses them
    // without one: a self-signed certificate can claim any name).
    if (policy.require_ca)
        for (const auto& entry : policy.allowed)
            if (entry.kind != AllowedClient::Kind::pin && matches(entry, names)) {
                v.accepted = true;
                v.identity = entry.text;
                return v;
            }
    for (const auto& entry : policy.allowed)
        if (entry.kind == AllowedClient::Kind::pin && entry.pin == pin) {
            v.accepted = true;
            v.identity = entry.text;
            return v;
        }
    v.why = "client key " + pin_text + " (" + describe_names(names) + ") matches no allowed client";
    return v;
}

}  // namespace secmsg
