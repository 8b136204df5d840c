#include "proto/seal.hpp"

#include "proto/bytes.hpp"
#include "proto/payload.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <sodium.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace secmsg {

namespace {
constexpr std::string_view enc_info = "secmsg/1 aes-256-cbc";
constexpr std::string_view mac_info = "secmsg/1 hmac-sha256";
constexpr std::size_t sha256_block = 64;
constexpr std::string_view fingerprint_label = "secmsg/1 key fingerprint";
constexpr std::size_t fingerprint_size = 8;  // bytes of the digest shown (16 hex digits)

// IVs come from libsodium's randombytes_buf, drawn 256 at a time: one
// getrandom(2) call per frame was most of the daemon's system time.
// (Per thread; a process that forks after sealing must not seal in both.)
void fresh_iv(std::uint8_t* iv) {
    thread_local std::uint8_t pool[256 * iv_size];
    thread_local std::size_t used = sizeof pool;
    if (used == sizeof pool) {
        randombytes_buf(pool, sizeof pool);
        used = 0;
    }
    std::memcpy(iv, pool + used, iv_size);
    sodium_memzero(pool + used, iv_size);  // never handed out twice
    used += iv_size;
}

void check(int rc, const char* what) {
    if (rc != 0)
        throw std::runtime_error(std::string("wolfCrypt: ") + what + " failed (" +
                                 std::to_string(rc) + ")");
}
}  // namespace

// The AES key schedules and the two HMAC hash states keyed once with
// key^ipad and key^opad (RFC 2104), so a frame costs no key setup.
struct FrameKeys::State {
    Aes enc;
    Aes dec;
    wc_Sha256 inner;
    wc_Sha256 outer;

    // HMAC-SHA-256 of data under the precomputed key.
    void mac(std::span<const std::uint8_t> data, std::uint8_t out[32]) {
        wc_Sha256 h;
        check(wc_Sha256Copy(&inner, &h), "sha256 copy");
        check(wc_Sha256Update(&h, data.data(), static_cast<word32>(data.size())), "sha256");
        std::uint8_t inner_digest[32];
        check(wc_Sha256Final(&h, inner_digest), "sha256");
        wc_Sha256Free(&h);
        check(wc_Sha256Copy(&outer, &h), "sha256 copy");
        check(wc_Sha256Update(&h, inner_digest, sizeof inner_digest), "sha256");
        check(wc_Sha256Final(&h, out), "sha256");
        wc_Sha256Free(&h);
    }
};

void hkdf_sha256(std::span<const std::uint8_t> ikm, std::string_view info,
                 std::span<std::uint8_t> out) {
    check(wc_HKDF(WC_SHA256, ikm.data(), static_cast<word32>(ikm.size()), nullptr, 0,
                  reinterpret_cast<const byte*>(info.data()), static_cast<word32>(info.size()),
                  out.data(), static_cast<word32>(out.size())),
          "HKDF");
}

FrameKeys::FrameKeys(std::span<const std::uint8_t> psk) : state_(std::make_unique<State>()) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    sodium_mlock(state_.get(), sizeof(State));
    SecretBytes enc_key(32), mac_key(32);
    hkdf_sha256(psk, enc_info, enc_key.bytes());
    hkdf_sha256(psk, mac_info, mac_key.bytes());

    auto& s = *state_;
    check(wc_AesInit(&s.enc, nullptr, INVALID_DEVID), "AES init");
    check(wc_AesInit(&s.dec, nullptr, INVALID_DEVID), "AES init");
    check(wc_AesSetKey(&s.enc, enc_key.data(), 32, nullptr, AES_ENCRYPTION), "AES key");
    check(wc_AesSetKey(&s.dec, enc_key.data(), 32, nullptr, AES_DECRYPTION), "AES key");

    std::uint8_t pad[sha256_block];
    check(wc_InitSha256(&s.inner), "sha256");
    check(wc_InitSha256(&s.outer), "sha256");
    for (std::size_t i = 0; i < sha256_block; ++i)
        pad[i] = static_cast<std::uint8_t>((i < 32 ? mac_key.data()[i] : 0) ^ 0x36);
    check(wc_Sha256Update(&s.inner, pad, sizeof pad), "sha256");
    for (std::size_t i = 0; i < sha256_block; ++i)
        pad[i] = static_cast<std::uint8_t>((i < 32 ? mac_key.data()[i] : 0) ^ 0x5c);
    check(wc_Sha256Update(&s.outer, pad, sizeof pad), "sha256");
    sodium_memzero(pad, sizeof pad);
}

FrameKeys::~FrameKeys() {
    if (!state_) return;
    wc_AesFree(&state_->enc);
    wc_AesFree(&state_->dec);
    wc_Sha256Free(&state_->inner);
    wc_Sha256Free(&state_->outer);
    sodium_memzero(state_.get(), sizeof(State));
    sodium_munlock(state_.get(), sizeof(State));  // also wipes
}

void seal_frame(const FrameKeys& keys, FrameType type, std::uint64_t seq,
                std::span<const std::uint8_t> plaintext, std::vector<std::uint8_t>& out,
                const std::uint8_t* iv) {
    auto& s = keys.working_state();
    const std::size_t length = length_for_plaintext(plaintext.size());
    const std::size_t padded = length - length_overhead;
    const std::size_t start = out.size();
    out.resize(start + length_field_size + length);
    std::uint8_t* f = out.data() + start;

    store_be(f, length, 4);
    f[version_offset] = protocol_version;
    f[type_offset] = static_cast<std::uint8_t>(type);
    store_be(f + seq_offset, seq, 8);
    if (iv != nullptr)
        std::memcpy(f + iv_offset, iv, iv_size);
    else
        fresh_iv(f + iv_offset);

    std::uint8_t* ct = f + header_size;
    if (!plaintext.empty()) std::memcpy(ct, plaintext.data(), plaintext.size());
    const auto pad = static_cast<std::uint8_t>(padded - plaintext.size());
    std::memset(ct + plaintext.size(), pad, pad);
    check(wc_AesSetIV(&s.enc, f + iv_offset), "AES IV");
    check(wc_AesCbcEncrypt(&s.enc, ct, ct, static_cast<word32>(padded)), "AES-CBC encrypt");
    s.mac({f, header_size + padded}, ct + padded);
}

namespace {

// The length field describes the frame it heads, within the protocol's shape.
bool well_formed(std::span<const std::uint8_t> frame) {
    return frame.size() >= length_field_size + min_length &&
           load_be32(frame.data()) == frame.size() - length_field_size &&
           (frame.size() - length_field_size - length_overhead) % block_size == 0;
}

// The frame's tag is the one `keys` give its body (constant-time compare).
bool tag_matches(const FrameKeys& keys, std::span<const std::uint8_t> frame) {
    const std::size_t body = frame.size() - tag_size;
    std::uint8_t tag[tag_size];
    keys.working_state().mac(frame.first(body), tag);
    return sodium_memcmp(tag, frame.data() + body, tag_size) == 0;
}

// What follows a good tag: version, type, seq, decryption, padding, size.
Opened open_authenticated(const FrameKeys& keys, Role role, std::uint64_t expected_seq,
                          std::size_t max_payload, std::span<const std::uint8_t> frame,
                          std::vector<std::uint8_t>& scratch) {
    Opened r;
    const auto bad = [&r](ProtoError e) {
        r.error = e;
        return r;
    };
    r.type = static_cast<FrameType>(frame[type_offset]);
    r.seq = load_be64(frame.data() + seq_offset);
    const bool type_ok = role == Role::server
                             ? r.type == FrameType::msg
                             : (r.type == FrameType::ack || r.type == FrameType::error);
    if (frame[version_offset] != protocol_version || !type_ok) return bad(ProtoError::version);
    if (r.seq != expected_seq) return bad(ProtoError::sequence);

    auto& s = keys.working_state();
    const std::size_t ct_len = frame.size() - tag_size - header_size;
    scratch.resize(ct_len);
    check(wc_AesSetIV(&s.dec, frame.data() + iv_offset), "AES IV");
    check(wc_AesCbcDecrypt(&s.dec, scratch.data(), frame.data() + header_size,
                           static_cast<word32>(ct_len)),
          "AES-CBC decrypt");
    // The tag was good, so padding errors are not an oracle; still check all of it.
    const std::uint8_t pad = scratch[ct_len - 1];
    if (pad == 0 || pad > block_size) return bad(ProtoError::malformed);
    for (std::size_t i = ct_len - pad; i < ct_len; ++i)
        if (scratch[i] != pad) return bad(ProtoError::malformed);
    const std::size_t n = ct_len - pad;
    if (n > max_payload) return bad(ProtoError::too_large);
    r.plaintext = std::span<const std::uint8_t>(scratch).first(n);
    return r;
}

Opened failed(ProtoError e) {
    Opened r;
    r.error = e;
    return r;
}

}  // namespace

Opened open_frame(const FrameKeys& keys, Role role, std::uint64_t expected_seq,
                  std::size_t max_payload, std::span<const std::uint8_t> frame,
                  std::vector<std::uint8_t>& scratch) {
    if (!well_formed(frame)) return failed(ProtoError::malformed);
    if (!tag_matches(keys, frame)) return failed(ProtoError::auth);
    return open_authenticated(keys, role, expected_seq, max_payload, frame, scratch);
}

std::string key_fingerprint(std::span<const std::uint8_t> psk) {
    SecretBytes input(fingerprint_label.size() + psk.size());  // holds the key: wiped
    std::memcpy(input.data(), fingerprint_label.data(), fingerprint_label.size());
    std::memcpy(input.data() + fingerprint_label.size(), psk.data(), psk.size());
    const Digest digest = sha256(input.bytes());
    char hex[2 * fingerprint_size + 1];
    sodium_bin2hex(hex, sizeof hex, digest.data(), fingerprint_size);
    return hex;
}

KeyRing::KeyRing(std::span<const SecretBytes> psks) {
    if (psks.empty() || psks.size() > max_psk_keys)
        throw std::invalid_argument("a key ring holds 1 to " + std::to_string(max_psk_keys) +
                                    " keys, not " + std::to_string(psks.size()));
    keys_.reserve(psks.size());
    for (const auto& psk : psks)
        keys_.push_back(
            {std::make_shared<const FrameKeys>(psk.bytes()), key_fingerprint(psk.bytes())});
}

std::string KeyRing::fingerprints() const {
    std::string out;
    for (const auto& k : keys_) out += (out.empty() ? "" : ", ") + k.fingerprint;
    return out;
}

std::optional<std::size_t> KeyRing::match(std::span<const std::uint8_t> frame) const {
    // Every key's tag, so the time taken does not tell which key (if any) matched.
    std::optional<std::size_t> found;
    for (std::size_t i = 0; i < keys_.size(); ++i)
        if (tag_matches(*keys_[i].keys, frame) && !found) found = i;
    return found;
}

Channel::Channel(std::shared_ptr<const FrameKeys> keys, Role role, std::size_t max_payload)
    : keys_(std::move(keys)), role_(role), max_payload_(max_payload) {}

Channel::Channel(std::shared_ptr<const KeyRing> ring, Role role, std::size_t max_payload)
    : ring_(std::move(ring)), keys_((*ring_)[0].keys), role_(role), max_payload_(max_payload) {}

std::uint64_t Channel::seal(FrameType type, std::span<const std::uint8_t> plaintext,
                            std::vector<std::uint8_t>& out) {
    seal_frame(*keys_, type, tx_seq_, plaintext, out);
    return tx_seq_++;
}

Opened Channel::open(std::span<const std::uint8_t> frame, std::vector<std::uint8_t>& scratch) {
    auto r = ring_ && fingerprint_.empty()
                 ? open_first(frame, scratch)
                 : open_frame(*keys_, role_, rx_seq_, max_payload_, frame, scratch);
    if (r.error == ProtoError::ok) ++rx_seq_;
    return r;
}

// The first frame under a ring: its tag chooses the key (or none does:
// ERROR 2, as under one key), which serves the rest of the channel.
Opened Channel::open_first(std::span<const std::uint8_t> frame,
                           std::vector<std::uint8_t>& scratch) {
    if (!well_formed(frame)) return failed(ProtoError::malformed);
    const auto i = ring_->match(frame);
    if (!i) return failed(ProtoError::auth);
    keys_ = (*ring_)[*i].keys;
    fingerprint_ = (*ring_)[*i].fingerprint;
    return open_authenticated(*keys_, role_, rx_seq_, max_payload_, frame, scratch);
}

}  // namespace secmsg
