// Sealing and opening, checked against vectors from python3-cryptography
// (tests/gen_vectors.py -> tests/vectors.txt) and through every rejection path.
#include "proto/bytes.hpp"
#include "proto/payload.hpp"
#include "proto/seal.hpp"
#include "test_util.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

using namespace secmsg;
using secmsg::test::from_hex;

namespace {

struct Vector {
    std::vector<std::uint8_t> psk, enc_key, mac_key;
    struct Frame {
        int type;
        std::uint64_t seq;
        std::vector<std::uint8_t> iv, plaintext, sealed;
    };
    std::vector<Frame> frames;
};

std::vector<Vector> load_vectors() {
    std::ifstream in(SECMSG_VECTORS);
    REQUIRE_MESSAGE(in.good(), "cannot open " SECMSG_VECTORS);
    std::vector<Vector> out;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string key;
        ls >> key;
        if (key == "psk") {
            out.emplace_back();
            std::string h;
            ls >> h;
            out.back().psk = from_hex(h);
        } else if (key == "enc_key" || key == "mac_key") {
            std::string h;
            ls >> h;
            (key == "enc_key" ? out.back().enc_key : out.back().mac_key) = from_hex(h);
        } else if (key == "frame") {
            Vector::Frame f;
            std::string iv, pt, sealed;
            ls >> f.type >> f.seq >> iv >> pt >> sealed;
            f.iv = from_hex(iv);
            f.plaintext = from_hex(pt);
            f.sealed = from_hex(sealed);
            out.back().frames.push_back(std::move(f));
        }
    }
    return out;
}

std::shared_ptr<const FrameKeys> test_keys() {
    std::vector<std::uint8_t> psk(32, 0x42);
    return std::make_shared<const FrameKeys>(psk);
}

}  // namespace

TEST_CASE("HKDF-SHA-256 matches RFC 5869 test case 3 (empty salt and info)") {
    std::vector<std::uint8_t> ikm(22, 0x0b), okm(42);
    hkdf_sha256(ikm, "", okm);
    CHECK(okm == from_hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                          "9d201395faa4b61a96c8"));
}

TEST_CASE("key derivation and sealed frames agree with python3-cryptography") {
    const auto vectors = load_vectors();
    REQUIRE(vectors.size() == 2);
    for (const auto& v : vectors) {
        std::vector<std::uint8_t> enc(32), mac(32);
        hkdf_sha256(v.psk, "secmsg/1 aes-256-cbc", enc);
        hkdf_sha256(v.psk, "secmsg/1 hmac-sha256", mac);
        CHECK(enc == v.enc_key);
        CHECK(mac == v.mac_key);

        FrameKeys keys(v.psk);
        REQUIRE(v.frames.size() >= 9);
        for (const auto& f : v.frames) {
            CAPTURE(f.seq);
            std::vector<std::uint8_t> out{0xAA};  // sealing appends
            seal_frame(keys, static_cast<FrameType>(f.type), f.seq, f.plaintext, out, f.iv.data());
            REQUIRE(out.size() == f.sealed.size() + 1);
            CHECK(out[0] == 0xAA);
            CHECK(std::equal(f.sealed.begin(), f.sealed.end(), out.begin() + 1));

            std::vector<std::uint8_t> scratch;
            const auto role = f.type == 1 ? Role::server : Role::client;
            const auto r = open_frame(keys, role, f.seq, max_max_payload, f.sealed, scratch);
            REQUIRE(r.error == ProtoError::ok);
            CHECK(r.seq == f.seq);
            CHECK(std::equal(r.plaintext.begin(), r.plaintext.end(), f.plaintext.begin(),
                             f.plaintext.end()));
        }
    }
}

TEST_CASE("round trips through a channel pair for the boundary sizes") {
    auto keys = test_keys();
    Channel client(keys, Role::client), server(keys, Role::server);
    std::vector<std::uint8_t> wire, scratch;
    for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 4096u, 65536u}) {
        CAPTURE(n);
        std::vector<std::uint8_t> msg(n);
        for (std::size_t i = 0; i < n; ++i) msg[i] = static_cast<std::uint8_t>(i * 7 + n);
        wire.clear();
        const auto seq = client.seal(FrameType::msg, msg, wire);
        CHECK(wire.size() == 4 + length_for_plaintext(n));
        auto r = server.open(wire, scratch);
        REQUIRE(r.error == ProtoError::ok);
        CHECK(r.seq == seq);
        CHECK(std::equal(r.plaintext.begin(), r.plaintext.end(), msg.begin(), msg.end()));

        std::vector<std::uint8_t> ack;
        build_ack(seq, sha256(msg), "ok", ack);
        wire.clear();
        server.seal(FrameType::ack, ack, wire);
        auto a = client.open(wire, scratch);
        REQUIRE(a.error == ProtoError::ok);
        auto parsed = parse_ack(a.plaintext);
        REQUIRE(parsed);
        CHECK(ack_matches(*parsed, seq, sha256(msg)));
    }
}

TEST_CASE("fresh IVs: sealing the same message twice gives different frames") {
    auto keys = test_keys();
    std::vector<std::uint8_t> a, b;
    const std::vector<std::uint8_t> msg{1, 2, 3};
    seal_frame(*keys, FrameType::msg, 0, msg, a);
    seal_frame(*keys, FrameType::msg, 0, msg, b);
    CHECK(a != b);
}

TEST_CASE("every single-bit flip anywhere in a frame fails authentication") {
    auto keys = test_keys();
    std::vector<std::uint8_t> frame, scratch;
    seal_frame(*keys, FrameType::msg, 0, test::bytes_of("a message of a few blocks, 41 bytes long"),
               frame);
    int auth = 0, malformed = 0;
    for (std::size_t bit = 0; bit < frame.size() * 8; ++bit) {
        auto f = frame;
        f[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        const auto r = open_frame(*keys, Role::server, 0, default_max_payload, f, scratch);
        // A flip in the length field no longer describes the frame it heads:
        // the reader rejects such a frame on its length (covered there);
        // open_frame calls it malformed.  Everything else is the tag's job.
        if (bit < 32)
            malformed += r.error == ProtoError::malformed;
        else
            auth += r.error == ProtoError::auth;
    }
    CHECK(malformed == 32);
    CHECK(auth == static_cast<int>(frame.size() * 8 - 32));
}

TEST_CASE("a frame under another key fails authentication") {
    auto keys = test_keys();
    std::vector<std::uint8_t> other_psk(32, 0x43), frame, scratch;
    FrameKeys other(other_psk);
    seal_frame(other, FrameType::msg, 0, test::bytes_of("hi"), frame);
    CHECK(open_frame(*keys, Role::server, 0, default_max_payload, frame, scratch).error ==
          ProtoError::auth);
}

// Recomputes the tag of a frame with wolfCrypt's own HMAC (not the code under
// test), as only a holder of the key could: for checks that must happen
// after the tag.
static void retag(std::vector<std::uint8_t>& f, const std::vector<std::uint8_t>& psk) {
    std::vector<std::uint8_t> mac_key(32);
    hkdf_sha256(psk, "secmsg/1 hmac-sha256", mac_key);
    store_be(f.data(), f.size() - 4, 4);
    Hmac h;
    REQUIRE(wc_HmacInit(&h, nullptr, INVALID_DEVID) == 0);
    REQUIRE(wc_HmacSetKey(&h, WC_SHA256, mac_key.data(), 32) == 0);
    REQUIRE(wc_HmacUpdate(&h, f.data(), static_cast<word32>(f.size() - 32)) == 0);
    REQUIRE(wc_HmacFinal(&h, f.data() + f.size() - 32) == 0);
    wc_HmacFree(&h);
}

static const std::vector<std::uint8_t> fixed_psk(32, 0x42);

TEST_CASE("version, type for the direction and sequence are checked after the tag") {
    auto keys = test_keys();
    std::vector<std::uint8_t> scratch;
    const auto msg = test::bytes_of("m");

    SUBCASE("a version change without the key fails the tag; with it, the version check") {
        std::vector<std::uint8_t> f;
        seal_frame(*keys, FrameType::msg, 0, msg, f);
        f[4] = 2;
        CHECK(open_frame(*keys, Role::server, 0, default_max_payload, f, scratch).error ==
              ProtoError::auth);
        retag(f, fixed_psk);
        CHECK(open_frame(*keys, Role::server, 0, default_max_payload, f, scratch).error ==
              ProtoError::version);
    }
    SUBCASE("a server receiving an ACK, a client receiving a MSG, an unknown type") {
        std::vector<std::uint8_t> ack, m, unknown;
        seal_frame(*keys, FrameType::ack, 0, msg, ack);
        seal_frame(*keys, FrameType::msg, 0, msg, m);
        seal_frame(*keys, static_cast<FrameType>(9), 0, msg, unknown);
        CHECK(open_frame(*keys, Role::server, 0, default_max_payload, ack, scratch).error ==
              ProtoError::version);
        CHECK(open_frame(*keys, Role::client, 0, default_max_payload, m, scratch).error ==
              ProtoError::version);
        CHECK(open_frame(*keys, Role::client, 0, default_max_payload, unknown, scratch).error ==
              ProtoError::version);
        CHECK(open_frame(*keys, Role::server, 0, default_max_payload, unknown, scratch).error ==
              ProtoError::version);
    }
    SUBCASE("replayed and skipped sequence numbers") {
        Channel server(keys, Role::server);
        std::vector<std::uint8_t> f0, f1, f3;
        seal_frame(*keys, FrameType::msg, 0, msg, f0);
        seal_frame(*keys, FrameType::msg, 1, msg, f1);
        seal_frame(*keys, FrameType::msg, 3, msg, f3);
        CHECK(server.open(f0, scratch).error == ProtoError::ok);
        CHECK(server.open(f0, scratch).error == ProtoError::sequence);  // replay
        CHECK(server.open(f3, scratch).error == ProtoError::sequence);  // skip
        CHECK(server.open(f1, scratch).error == ProtoError::ok);
        CHECK(server.next_rx_seq() == 2);
    }
}

TEST_CASE("bad padding under a valid tag is malformed") {
    FrameKeys keys(fixed_psk);
    std::vector<std::uint8_t> scratch;
    // Sealing 16 bytes gives two blocks: the data, then a full padding block.
    // Dropping the padding block (and re-tagging) leaves the data block as
    // the last one, so its last bytes are read as padding.
    auto one_block = [&](std::vector<std::uint8_t> block) {
        std::vector<std::uint8_t> f;
        seal_frame(keys, FrameType::msg, 0, block, f);
        f.erase(f.begin() + 30 + 16, f.begin() + 30 + 32);
        retag(f, fixed_psk);
        return open_frame(keys, Role::server, 0, default_max_payload, f, scratch).error;
    };
    std::vector<std::uint8_t> block(16, 0);
    CHECK(one_block(block) == ProtoError::malformed);  // pad byte 0
    block[15] = 17;
    CHECK(one_block(block) == ProtoError::malformed);  // pad byte above 16
    block = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5};
    CHECK(one_block(block) == ProtoError::malformed);  // 5 claimed, 4 present
    block = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5};
    CHECK(one_block(block) == ProtoError::ok);  // the control: valid padding
}

TEST_CASE("a plaintext above the receiver's maximum is too large") {
    FrameKeys keys(fixed_psk);
    std::vector<std::uint8_t> big, scratch;
    seal_frame(keys, FrameType::msg, 0, std::vector<std::uint8_t>(100, 1), big);
    CHECK(open_frame(keys, Role::server, 0, 99, big, scratch).error == ProtoError::too_large);
    CHECK(open_frame(keys, Role::server, 0, 100, big, scratch).error == ProtoError::ok);
}

namespace {

// A ring of PSKs whose 32 bytes are all `fills[i]`.
std::shared_ptr<const KeyRing> ring_of(std::initializer_list<std::uint8_t> fills) {
    std::vector<SecretBytes> psks;
    for (auto f : fills) {
        SecretBytes s(32);
        std::fill(s.data(), s.data() + 32, f);
        psks.push_back(std::move(s));
    }
    return std::make_shared<const KeyRing>(psks);
}

std::shared_ptr<const FrameKeys> keys_of(std::uint8_t fill) {
    return std::make_shared<const FrameKeys>(std::vector<std::uint8_t>(32, fill));
}

}  // namespace

TEST_CASE("key fingerprints: 8 bytes of SHA-256 over the label and the PSK, in hex") {
    // python3 -c 'import hashlib; print(hashlib.sha256(b"secmsg/1 key fingerprint"
    //             + bytes([0x42] * 32)).hexdigest()[:16])'
    CHECK(key_fingerprint(std::vector<std::uint8_t>(32, 0x42)) == "713a22e38c5084f9");
    CHECK(key_fingerprint(std::vector<std::uint8_t>(32, 0x43)) == "4eb5c8653a86ad6b");
    std::vector<std::uint8_t> counting(32);
    for (std::size_t i = 0; i < 32; ++i) counting[i] = static_cast<std::uint8_t>(i);
    CHECK(key_fingerprint(counting) == "c8128bab1eab143c");

    const auto ring = ring_of({0x42, 0x43});
    REQUIRE(ring->size() == 2);
    CHECK((*ring)[0].fingerprint == "713a22e38c5084f9");
    CHECK((*ring)[1].fingerprint == "4eb5c8653a86ad6b");
    CHECK(ring->fingerprints() == "713a22e38c5084f9, 4eb5c8653a86ad6b");
}

TEST_CASE("a key ring holds 1 to 8 keys") {
    CHECK_THROWS_AS(KeyRing(std::span<const SecretBytes>{}), std::invalid_argument);
    CHECK(ring_of({1, 2, 3, 4, 5, 6, 7, 8})->size() == max_psk_keys);
    CHECK_THROWS_AS(ring_of({1, 2, 3, 4, 5, 6, 7, 8, 9}), std::invalid_argument);
}

TEST_CASE("a receiver's key ring: the first frame's tag chooses the key for the whole channel") {
    const auto ring = ring_of({0x41, 0x42, 0x43});
    std::vector<std::uint8_t> wire, scratch;
    for (std::uint8_t fill : {0x41, 0x42, 0x43}) {
        CAPTURE(fill);
        Channel client(keys_of(fill), Role::client), server(ring, Role::server);
        CHECK(server.key_fingerprint().empty());  // nothing chosen yet
        for (int i = 0; i < 3; ++i) {
            const auto msg = test::bytes_of("message " + std::to_string(i));
            wire.clear();
            const auto seq = client.seal(FrameType::msg, msg, wire);
            const auto r = server.open(wire, scratch);
            REQUIRE(r.error == ProtoError::ok);
            CHECK(r.seq == seq);
            CHECK(std::equal(r.plaintext.begin(), r.plaintext.end(), msg.begin(), msg.end()));
            CHECK(server.key_fingerprint() == key_fingerprint(std::vector<std::uint8_t>(32, fill)));
            // The answer is sealed under the client's key.
            std::vector<std::uint8_t> ack;
            build_ack(seq, sha256(msg), "ok", ack);
            wire.clear();
            server.seal(FrameType::ack, ack, wire);
            REQUIRE(client.open(wire, scratch).error == ProtoError::ok);
        }
    }
}

TEST_CASE("a key ring: the key chosen by the first frame is the only one after it") {
    const auto ring = ring_of({0x41, 0x42});
    Channel server(ring, Role::server);
    std::vector<std::uint8_t> f0, f1, scratch;
    seal_frame(*keys_of(0x42), FrameType::msg, 0, test::bytes_of("under the second key"), f0);
    REQUIRE(server.open(f0, scratch).error == ProtoError::ok);
    // Seq 1 under the ring's other key: a valid tag for the ring, not for the channel.
    seal_frame(*keys_of(0x41), FrameType::msg, 1, test::bytes_of("under the first key"), f1);
    CHECK(server.open(f1, scratch).error == ProtoError::auth);
    CHECK(server.next_rx_seq() == 1);
    CHECK(server.key_fingerprint() == (*ring)[1].fingerprint);
}

TEST_CASE("a key ring: a first frame under no key of it fails as under one key (ERROR 2)") {
    const auto ring = ring_of({0x41, 0x42});
    Channel server(ring, Role::server);
    std::vector<std::uint8_t> frame, scratch;
    seal_frame(*keys_of(0x43), FrameType::msg, 0, test::bytes_of("under an unknown key"), frame);
    CHECK(server.open(frame, scratch).error == ProtoError::auth);
    CHECK(server.key_fingerprint().empty());
    CHECK(server.next_rx_seq() == 0);
    // The ERROR about it is sealed under the ring's first key.
    std::vector<std::uint8_t> err, wire;
    build_error(static_cast<std::uint16_t>(ProtoError::auth), no_seq, "authentication failed", err);
    server.seal(FrameType::error, err, wire);
    Channel first(keys_of(0x41), Role::client), unknown(keys_of(0x43), Role::client);
    CHECK(unknown.open(wire, scratch).error == ProtoError::auth);
    CHECK(first.open(wire, scratch).error == ProtoError::ok);

    SUBCASE("a malformed first frame is malformed, whatever the keys") {
        Channel s(ring, Role::server);
        frame.resize(frame.size() - 1);
        CHECK(s.open(frame, scratch).error == ProtoError::malformed);
    }
    SUBCASE("after the tag, the first frame's other checks are the usual ones") {
        Channel s(ring, Role::server);
        std::vector<std::uint8_t> late;
        seal_frame(*keys_of(0x42), FrameType::msg, 5, test::bytes_of("seq 5 first"), late);
        CHECK(s.open(late, scratch).error == ProtoError::sequence);
    }
}
