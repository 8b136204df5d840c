#include "proto/payload.hpp"

#include "proto/bytes.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <algorithm>
#include <stdexcept>

namespace secmsg {

Digest sha256(std::span<const std::uint8_t> data) {
    Digest d{};
    if (wc_Sha256Hash(data.data(), static_cast<word32>(data.size()), d.data()) != 0)
        throw std::runtime_error("wolfCrypt: SHA-256 failed");
    return d;
}

void build_ack(std::uint64_t acked_seq, const Digest& digest, std::string_view note,
               std::vector<std::uint8_t>& out) {
    append_be(out, acked_seq, 8);
    out.insert(out.end(), digest.begin(), digest.end());
    out.insert(out.end(), note.begin(), note.end());
}

void build_error(std::uint16_t code, std::uint64_t ref_seq, std::string_view reason,
                 std::vector<std::uint8_t>& out) {
    append_be(out, code, 2);
    append_be(out, ref_seq, 8);
    out.insert(out.end(), reason.begin(), reason.end());
}

std::optional<AckPayload> parse_ack(std::span<const std::uint8_t> p) {
    if (p.size() < 8 + 32) return std::nullopt;
    AckPayload a;
    a.acked_seq = load_be64(p.data());
    std::copy_n(p.data() + 8, 32, a.digest.begin());
    a.note = {reinterpret_cast<const char*>(p.data()) + 40, p.size() - 40};
    return a;
}

std::optional<ErrorPayload> parse_error(std::span<const std::uint8_t> p) {
    if (p.size() < 2 + 8) return std::nullopt;
    ErrorPayload e;
    e.code = load_be16(p.data());
    e.ref_seq = load_be64(p.data() + 2);
    e.reason = {reinterpret_cast<const char*>(p.data()) + 10, p.size() - 10};
    return e;
}

bool ack_matches(const AckPayload& ack, std::uint64_t sent_seq, const Digest& sent_digest) {
    return ack.acked_seq == sent_seq && ack.digest == sent_digest;
}

}  // namespace secmsg
