// What the fuzz targets share: the fixed keys, the input reader, and the
// sealed-mode builder (fuzz.hpp).
#include "fuzz.hpp"

#include "proto/bytes.hpp"
#include "proto/protocol.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace secmsg::fuzz {
namespace {

constexpr std::array<std::uint8_t, 32> fixed_psk = [] {
    std::array<std::uint8_t, 32> a{};
    a.fill(0x42);
    return a;
}();
constexpr std::array<std::uint8_t, iv_size> fixed_iv{
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00};

// The raw derived keys, for forge() (the library keeps its own private).
struct RawKeys {
    std::array<std::uint8_t, 32> enc{}, mac{};
    RawKeys() {
        hkdf_sha256(fixed_psk, "secmsg/1 aes-256-cbc", enc);
        hkdf_sha256(fixed_psk, "secmsg/1 hmac-sha256", mac);
    }
};

const RawKeys& raw_keys() {
    static const RawKeys k;
    return k;
}

}  // namespace

std::span<const std::uint8_t> psk_bytes() { return fixed_psk; }

const std::shared_ptr<const FrameKeys>& keys() {
    static const auto k = std::make_shared<const FrameKeys>(fixed_psk);
    return k;
}

const std::shared_ptr<const KeyRing>& ring() {
    static const auto r = [] {
        std::vector<SecretBytes> psks;
        psks.emplace_back(fixed_psk.size());
        std::fill(psks[0].data(), psks[0].data() + fixed_psk.size(), 0x17);
        psks.emplace_back(fixed_psk.size());
        std::copy(fixed_psk.begin(), fixed_psk.end(), psks[1].data());
        return std::make_shared<const KeyRing>(psks);
    }();
    return r;
}

const std::shared_ptr<const KeyRing>& one_key_ring() {
    static const auto r = [] {
        std::vector<SecretBytes> psks;
        psks.emplace_back(fixed_psk.size());
        std::copy(fixed_psk.begin(), fixed_psk.end(), psks[0].data());
        return std::make_shared<const KeyRing>(psks);
    }();
    return r;
}

std::uint8_t Input::byte() {
    if (in_.empty()) return 0;
    const std::uint8_t b = in_[0];
    in_ = in_.subspan(1);
    return b;
}

std::uint64_t Input::u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | byte();
    return v;
}

std::span<const std::uint8_t> Input::take(std::size_t n) {
    n = std::min(n, in_.size());
    auto s = in_.first(n);
    in_ = in_.subspan(n);
    return s;
}

void seal(FrameType type, std::uint64_t seq, std::span<const std::uint8_t> plaintext,
          std::vector<std::uint8_t>& out) {
    seal_frame(*keys(), type, seq, plaintext, out, fixed_iv.data());
}

void forge(std::uint8_t version, std::uint8_t type, std::uint64_t seq,
           std::span<const std::uint8_t> blocks, std::vector<std::uint8_t>& out) {
    const std::size_t n = std::max(block_size, blocks.size() / block_size * block_size);
    const std::size_t start = out.size();
    out.resize(start + header_size + n + tag_size);
    std::uint8_t* f = out.data() + start;
    store_be(f, length_overhead + n, 4);
    f[version_offset] = version;
    f[type_offset] = type;
    store_be(f + seq_offset, seq, 8);
    std::memcpy(f + iv_offset, fixed_iv.data(), iv_size);
    std::uint8_t* ct = f + header_size;
    if (!blocks.empty()) std::memcpy(ct, blocks.data(), std::min(n, blocks.size()));

    const RawKeys& k = raw_keys();
    Aes aes;
    wc_AesInit(&aes, nullptr, INVALID_DEVID);
    wc_AesSetKey(&aes, k.enc.data(), k.enc.size(), fixed_iv.data(), AES_ENCRYPTION);
    wc_AesCbcEncrypt(&aes, ct, ct, static_cast<word32>(n));
    wc_AesFree(&aes);

    Hmac h;
    wc_HmacInit(&h, nullptr, INVALID_DEVID);
    wc_HmacSetKey(&h, WC_SHA256, k.mac.data(), k.mac.size());
    wc_HmacUpdate(&h, f, static_cast<word32>(header_size + n));
    wc_HmacFinal(&h, ct + n);
    wc_HmacFree(&h);
}

Record read_record(Input& in, std::uint64_t expected_seq) {
    Record r;
    const std::uint8_t ctl = in.byte();
    switch (ctl & 3) {
    case 0: r.type = static_cast<std::uint8_t>(FrameType::msg); break;
    case 1: r.type = static_cast<std::uint8_t>(FrameType::ack); break;
    case 2: r.type = static_cast<std::uint8_t>(FrameType::error); break;
    default:
        r.type = in.byte();
        r.proper = r.type >= 1 && r.type <= 3;
        break;
    }
    r.seq = expected_seq;
    switch (ctl >> 2 & 3) {
    case 1: ++r.seq; break;
    case 2: --r.seq; break;
    case 3: r.seq = in.u64(); break;
    default: break;
    }
    if (r.seq != expected_seq) r.proper = false;
    if (ctl & 0x10) {
        r.forged = true;
        r.proper = false;
        if (ctl & 0x20) r.version = in.byte();
    }
    static constexpr std::size_t scale[] = {1, 16, 256, 1024};
    r.length = in.byte() * scale[ctl >> 6];
    return r;
}

void emit(const Record& r, std::span<const std::uint8_t> p, std::vector<std::uint8_t>& out) {
    if (r.forged)
        forge(r.version, r.type, r.seq, p, out);
    else
        seal(static_cast<FrameType>(r.type), r.seq, p, out);
}

}  // namespace secmsg::fuzz
