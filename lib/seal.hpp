// Sealing and opening of secmsg/1 frames: HKDF key derivation, AES-256-CBC
// (wolfCrypt) with PKCS#7 padding, HMAC-SHA-256 encrypt-then-MAC, IVs from
// libsodium.  No I/O.
#pragma once

#include "protocol.hpp"
#include "secret.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace secmsg {

// The two keys derived from a PSK, with the AES key schedules and the keyed
// HMAC states computed once.  Wiped when destroyed.  Shared (read-only) by
// every connection that was opened under it.
class FrameKeys {
public:
    // Derives enc_key and mac_key from a 32-byte PSK (RFC 5869, empty salt).
    explicit FrameKeys(std::span<const std::uint8_t> psk);
    ~FrameKeys();
    FrameKeys(const FrameKeys&) = delete;
    FrameKeys& operator=(const FrameKeys&) = delete;

    struct State;  // wolfCrypt contexts, defined in seal.cpp
    State& state() const { return *state_; }

private:
    std::unique_ptr<State> state_;
};

// HKDF-SHA-256 with an empty salt; exposed for known-answer tests.
void hkdf_sha256(std::span<const std::uint8_t> ikm, std::string_view info,
                 std::span<std::uint8_t> out);

// Appends one sealed frame to `out`.  `iv` is for tests only: by default a
// fresh one comes from randombytes_buf.
void seal_frame(const FrameKeys& keys, FrameType type, std::uint64_t seq,
                std::span<const std::uint8_t> plaintext, std::vector<std::uint8_t>& out,
                const std::uint8_t* iv = nullptr);

struct Opened {
    ProtoError error = ProtoError::ok;
    FrameType type{};
    std::uint64_t seq = 0;
    std::span<const std::uint8_t> plaintext;  // inside the caller's scratch buffer
};

// Opens one whole frame (as given by FrameReader), in the spec's order: tag
// (constant time), version, type for `role`, seq == expected_seq, padding,
// plaintext size.  The plaintext is written into `scratch` (resized, reused).
Opened open_frame(const FrameKeys& keys, Role role, std::uint64_t expected_seq,
                  std::size_t max_payload, std::span<const std::uint8_t> frame,
                  std::vector<std::uint8_t>& scratch);

// One connection's side of the protocol: the keys it was opened under and
// the two sequence counters.
class Channel {
public:
    Channel(std::shared_ptr<const FrameKeys> keys, Role role,
            std::size_t max_payload = default_max_payload);

    // Seals the next outgoing frame into `out` (appended); returns its seq.
    std::uint64_t seal(FrameType type, std::span<const std::uint8_t> plaintext,
                       std::vector<std::uint8_t>& out);

    // Opens the next incoming frame; on success the expected seq advances.
    Opened open(std::span<const std::uint8_t> frame, std::vector<std::uint8_t>& scratch);

    std::uint64_t next_tx_seq() const { return tx_seq_; }
    std::uint64_t next_rx_seq() const { return rx_seq_; }
    const std::shared_ptr<const FrameKeys>& keys() const { return keys_; }

private:
    std::shared_ptr<const FrameKeys> keys_;
    Role role_;
    std::size_t max_payload_;
    std::uint64_t tx_seq_ = 0;
    std::uint64_t rx_seq_ = 0;
};

}  // namespace secmsg
