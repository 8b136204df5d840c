// ACK and ERROR payloads (the plaintext inside those frames).  No I/O.
#pragma once

#include "proto/protocol.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace secmsg {

using Digest = std::array<std::uint8_t, 32>;

// SHA-256 of `data`.
Digest sha256(std::span<const std::uint8_t> data);

struct AckPayload {
    std::uint64_t acked_seq = 0;
    Digest digest{};
    std::string_view note;  // points into the parsed buffer
};

struct ErrorPayload {
    std::uint16_t code = 0;
    std::uint64_t ref_seq = no_seq;
    std::string_view reason;  // points into the parsed buffer
};

// Appends acked_seq || digest || note to out.
void build_ack(std::uint64_t acked_seq, const Digest& digest, std::string_view note,
               std::vector<std::uint8_t>& out);
// Appends code || ref_seq || reason to out.
void build_error(std::uint16_t code, std::uint64_t ref_seq, std::string_view reason,
                 std::vector<std::uint8_t>& out);

// nullopt when the payload is shorter than its fixed part.
std::optional<AckPayload> parse_ack(std::span<const std::uint8_t> p);
std::optional<ErrorPayload> parse_error(std::span<const std::uint8_t> p);

// Checks an ACK against the MSG it should acknowledge.
bool ack_matches(const AckPayload& ack, std::uint64_t sent_seq, const Digest& sent_digest);

}  // namespace secmsg
