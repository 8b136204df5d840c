// Sealing and opening of secmsg/1 frames: HKDF key derivation, AES-256-CBC
// (wolfCrypt) with PKCS#7 padding, HMAC-SHA-256 encrypt-then-MAC, IVs from
// libsodium.  No I/O.
#pragma once

#include "proto/protocol.hpp"
#include "proto/secret.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace secmsg {

// The two keys derived from a PSK, with the AES key schedules and the keyed
// HMAC states computed once.  Wiped when destroyed.  Shared by every
// connection of one thread that was opened under it: not read-only, since
// sealing and opening set the IV of its AES schedules (each operation sets
// its own first, so none depends on another's), and so not for several
// threads at once.
class FrameKeys {
public:
    // Derives enc_key and mac_key from a 32-byte PSK (RFC 5869, empty salt).
    explicit FrameKeys(std::span<const std::uint8_t> psk);
    ~FrameKeys();
    FrameKeys(const FrameKeys&) = delete;
    FrameKeys& operator=(const FrameKeys&) = delete;

    // The wolfCrypt contexts (seal.cpp), which every seal and open of this
    // thread works in: const, as the key they hold does not change.
    struct State;
    State& working_state() const { return *state_; }

private:
    std::unique_ptr<State> state_;
};

// The public fingerprint of a PSK, as recorded in SECMSG_KEY: the first 8
// bytes, in lowercase hex, of SHA-256("secmsg/1 key fingerprint" || PSK).
// It names a key in logs and records; it tells nothing that helps to find it.
std::string key_fingerprint(std::span<const std::uint8_t> psk);

// The keys a receiver accepts (the lines of one PSK file, in order), each
// derived once with its fingerprint.  Read-only; shared by every connection
// opened under it, and replaced as a whole on reload.
class KeyRing {
public:
    struct Key {
        std::shared_ptr<const FrameKeys> keys;
        std::string fingerprint;
    };

    // Derives each PSK's keys.  Throws std::invalid_argument unless there
    // are 1 to max_psk_keys of them.
    explicit KeyRing(std::span<const SecretBytes> psks);

    std::size_t size() const { return keys_.size(); }
    const Key& operator[](std::size_t i) const { return keys_[i]; }
    // "fp1, fp2": the fingerprints in order, for log lines.
    std::string fingerprints() const;

    // The index of the key whose tag `frame` (a whole, well-formed frame)
    // carries, or nullopt.  The tag is computed under every key, without an
    // early exit, and each compared in constant time.
    std::optional<std::size_t> match(std::span<const std::uint8_t> frame) const;

private:
    std::vector<Key> keys_;
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
    // Under one key (a sender: the first of its PSK file).
    Channel(std::shared_ptr<const FrameKeys> keys, Role role,
            std::size_t max_payload = default_max_payload);
    // Under whichever key of `ring` the tag of the first incoming frame
    // tells (a receiver); that key then serves the whole channel.  Frames
    // sealed before that (an ERROR about the first frame) use the first key.
    Channel(std::shared_ptr<const KeyRing> ring, Role role,
            std::size_t max_payload = default_max_payload);

    // Seals the next outgoing frame into `out` (appended); returns its seq.
    std::uint64_t seal(FrameType type, std::span<const std::uint8_t> plaintext,
                       std::vector<std::uint8_t>& out);

    // Opens the next incoming frame; on success the expected seq advances.
    Opened open(std::span<const std::uint8_t> frame, std::vector<std::uint8_t>& scratch);

    std::uint64_t next_rx_seq() const { return rx_seq_; }
    const std::shared_ptr<const FrameKeys>& keys() const { return keys_; }
    // The fingerprint of the ring's key that the first frame chose; empty
    // before that, and on a channel made under one key.
    std::string_view key_fingerprint() const { return fingerprint_; }

private:
    Opened open_first(std::span<const std::uint8_t> frame, std::vector<std::uint8_t>& scratch);

    std::shared_ptr<const KeyRing> ring_;  // a receiver's keys; null under one key
    std::shared_ptr<const FrameKeys> keys_;
    std::string_view fingerprint_;  // inside *ring_; empty until the first frame chose
    Role role_;
    std::size_t max_payload_;
    std::uint64_t tx_seq_ = 0;
    std::uint64_t rx_seq_ = 0;
};

}  // namespace secmsg
