// bench-crypto: what the wolfSSL this binary is linked with costs, for the
// figures that matter to secmsgd: heap held by an idle server session, the
// record ciphers, the frame MAC and SHA-256, the handshake's public-key
// operations, and the crypto floor: what the cryptography alone costs per
// message (the project's own open_frame, sha256, seal_frame) and per
// handshake (sum of its operations), before any I/O or TLS record layer.
//
//   bench-crypto                 prints a table for this build
//   bench-crypto --tsv           the same figures, one "key<TAB>value" a line
//   bench-crypto --against BIN   also runs BIN --tsv (the other build's
//                                bench-crypto) and prints both, with ratios
//
// The heap figure counts every byte wolfSSL allocates (wolfSSL_SetAllocators)
// while a server session made by the project's own code (tls::Session on a
// tls::make_server_context context, as secmsgd does) completes a TLS 1.3
// handshake over a socket pair and reads one record; each client session is
// freed right away, so what is left is the idle server sessions' share.
// Only the growth after some warm-up sessions counts: global caches that
// fill during the first handshakes are not a per-session cost.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/kdf.h>
#include <wolfssl/wolfcrypt/memory.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "keys/credentials.hpp"
#include "proto/payload.hpp"
#include "proto/protocol.hpp"
#include "proto/seal.hpp"
#include "tls/build_info.hpp"
#include "tls/session.hpp"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(WOLFSSL_STATIC_MEMORY) || defined(WOLFSSL_DEBUG_MEMORY)
#error "bench-crypto counts heap through the plain wolfSSL_SetAllocators callbacks"
#endif

namespace {

// ---- heap accounting -----------------------------------------------------

// Each block carries its size in a 16-byte header (keeps malloc's alignment).
constexpr std::size_t header = 16;
std::size_t live_bytes = 0;

void* count_malloc(std::size_t n) {
    auto* p = static_cast<unsigned char*>(std::malloc(n + header));
    if (!p) return nullptr;
    std::memcpy(p, &n, sizeof n);
    live_bytes += n;
    return p + header;
}

void count_free(void* q) {
    if (!q) return;
    auto* p = static_cast<unsigned char*>(q) - header;
    std::size_t n;
    std::memcpy(&n, p, sizeof n);
    live_bytes -= n;
    std::free(p);
}

void* count_realloc(void* q, std::size_t n) {
    if (!q) return count_malloc(n);
    auto* p = static_cast<unsigned char*>(q) - header;
    std::size_t old;
    std::memcpy(&old, p, sizeof old);
    auto* r = static_cast<unsigned char*>(std::realloc(p, n + header));
    if (!r) return nullptr;
    std::memcpy(r, &n, sizeof n);
    live_bytes = live_bytes - old + n;
    return r + header;
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "bench-crypto: %s\n", what.c_str());
    std::exit(1);
}

void check(int rc, const char* what) {
    if (rc != 0) die(std::string(what) + " failed (" + std::to_string(rc) + ")");
}

// A client session on one end of a socket pair, plain wolfSSL.
struct Client {
    WOLFSSL* ssl = nullptr;
    ~Client() {
        if (ssl) wolfSSL_free(ssl);
    }
};

// Heap held per idle server session (bytes): the growth while `n` more
// sessions open, after `warm` sessions have filled wolfSSL's global caches
// (Debian's build keeps a fixed-point ECC cache of several MiB, filled
// during the first handshakes), divided by `n`.  `mutual`: the server asks
// for a client certificate (--allow-client with the client's pin) and the
// client presents one; the figure then adds what the session keeps of it
// outside wolfSSL (its PeerCheck, the identity string).
double heap_per_idle_session(int warm, int n, bool mutual = false) {
    namespace fs = std::filesystem;
    char tmpl[] = "/tmp/bench-crypto.XXXXXX";
    if (!mkdtemp(tmpl)) die("cannot make a temporary directory");
    const fs::path dir = tmpl;
    auto creds = secmsg::init_credentials((dir / "creds").string(), secmsg::KeyType::ecdsa_p256);

    secmsg::tls::ServerOptions so;
    so.cert_file = creds.cert_file;
    so.key_file = creds.key_file;
    secmsg::CredentialsReport identity;
    if (mutual) {
        identity = secmsg::init_client_identity((dir / "client").string());
        so.allow_clients = {identity.pin};
    }
    auto server_ctx = secmsg::tls::make_server_context(so);

    WOLFSSL_CTX* cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    if (!cctx) die("cannot make a client context");
    wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, nullptr);
    if (mutual && (wolfSSL_CTX_use_certificate_file(cctx, identity.cert_file.c_str(),
                                                    WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
                   wolfSSL_CTX_use_PrivateKey_file(cctx, identity.key_file.c_str(),
                                                   WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS))
        die("cannot load the client identity");

    const auto total = static_cast<std::size_t>(warm + n);
    std::vector<std::array<int, 2>> fds;
    std::vector<secmsg::tls::Session> servers;
    fds.reserve(total);
    servers.reserve(total);
    std::vector<std::uint8_t> record(200, 0x5a);  // about one small sealed frame
    std::array<std::uint8_t, 4096> buf{};
    std::size_t before = 0;

    for (std::size_t k = 0; k < total; ++k) {
        if (k == static_cast<std::size_t>(warm)) before = live_bytes;
        auto& pair = fds.emplace_back();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair.data()) != 0)
            die("socketpair failed");
        auto& server = servers.emplace_back(server_ctx, pair[0]);
        Client client;
        client.ssl = wolfSSL_new(cctx);
        if (!client.ssl || wolfSSL_set_fd(client.ssl, pair[1]) != WOLFSSL_SUCCESS)
            die("cannot make a client session");
        char alpn[] = "secmsg/1";
        wolfSSL_UseALPN(client.ssl, alpn, sizeof alpn - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);

        bool s_done = false, c_done = false;
        for (int i = 0; i < 1000 && !(s_done && c_done); ++i) {
            if (!c_done) {
                int rc = wolfSSL_connect(client.ssl);
                if (rc == WOLFSSL_SUCCESS)
                    c_done = true;
                else if (int e = wolfSSL_get_error(client.ssl, rc);
                         e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
                    die("client handshake failed: " + std::to_string(e));
            }
            if (!s_done) {
                auto r = server.handshake();
                if (r == secmsg::tls::Io::done)
                    s_done = true;
                else if (r != secmsg::tls::Io::want_read && r != secmsg::tls::Io::want_write)
                    die("server handshake failed: " + server.error_text());
            }
        }
        if (!(s_done && c_done)) die("handshake did not finish");
        if (wolfSSL_write(client.ssl, record.data(), static_cast<int>(record.size())) !=
            static_cast<int>(record.size()))
            die("client write failed");
        std::size_t got = 0;
        for (int i = 0; i < 100 && got < record.size(); ++i) {
            auto r = server.read(buf);
            if (r.status == secmsg::tls::Io::done)
                got += r.bytes;
            else if (r.status != secmsg::tls::Io::want_read)
                die("server read failed");
        }
        if (got != record.size()) die("server did not read the record");
    }  // each client session is freed at the end of its pass
    std::size_t after = live_bytes;
    if (mutual) {
        const auto* check = servers.back().peer_check();
        if (!check || check->identity != identity.pin) die("the client certificate was not judged");
        after += static_cast<std::size_t>(n) *
                 (sizeof(secmsg::tls::PeerCheck) +
                  (check->identity.capacity() > 15 ? check->identity.capacity() + 1 : 0));
    }

    servers.clear();
    for (auto& pair : fds) {
        close(pair[0]);
        close(pair[1]);
    }
    wolfSSL_CTX_free(cctx);
    server_ctx.reset();
    fs::remove_all(dir);
    return (static_cast<double>(after) - static_cast<double>(before)) / n;
}

// ---- timing ----------------------------------------------------------------

// CPU time of this thread, in seconds: the figures are CPU costs, like the
// server CPU per operation that tests/bench_load.py sets against them, and
// stay true on a busy machine (wall time would count other processes' turns).
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Calls op() until it has used at least `seconds` of CPU; returns calls per
// CPU-second.
double rate(const std::function<void()>& op, double seconds = 0.4) {
    op();  // warm up (and first-use setup such as CPU feature checks)
    long calls = 0;
    const double start = cpu_seconds();
    double elapsed = 0;
    do {
        for (int i = 0; i < 16; ++i) op();
        calls += 16;
        elapsed = cpu_seconds() - start;
    } while (elapsed < seconds);
    return calls / elapsed;
}

constexpr std::size_t chunk = 16384;  // one full TLS record

// Microseconds of cryptography secmsgd spends on one message of `size`
// bytes, with the project's own code: open the MSG frame (HMAC-SHA-256
// verify, AES-256-CBC decrypt), SHA-256 of the message for the ACK, build
// and seal the ACK (AES-256-CBC encrypt, HMAC-SHA-256).
double message_floor(std::size_t size) {
    std::array<std::uint8_t, 32> psk{};
    psk.fill(0x17);
    const secmsg::FrameKeys keys(psk);
    const std::vector<std::uint8_t> message(size, 'm');
    std::vector<std::uint8_t> frame, scratch, ack, out;
    secmsg::seal_frame(keys, secmsg::FrameType::msg, 7, message, frame);
    return 1e6 / rate([&] {
               auto o = secmsg::open_frame(keys, secmsg::Role::server, 7, secmsg::max_max_payload,
                                           frame, scratch);
               if (o.error != secmsg::ProtoError::ok) die("open_frame failed");
               const secmsg::Digest d = secmsg::sha256(o.plaintext);
               ack.clear();
               secmsg::build_ack(o.seq, d, "recorded id=0123456789abcdef0123-7", ack);
               out.clear();
               secmsg::seal_frame(keys, secmsg::FrameType::ack, 7, ack, out);
           });
}

// Microseconds each extra key of the server's PSK file adds to opening a
// connection's first frame of `size` bytes: a receiving Channel under a
// ring of 8 keys against one of 1 (the first frame's tag is computed under
// every key; later frames cost what they cost under one key).
double first_frame_extra_key(std::size_t size) {
    const auto ring_of = [](std::size_t n) {
        std::vector<secmsg::SecretBytes> psks;
        for (std::size_t i = 0; i < n; ++i) {
            psks.emplace_back(32);
            std::memset(psks.back().data(), static_cast<int>(0x20 + i), 32);
        }
        return std::make_shared<const secmsg::KeyRing>(psks);
    };
    const auto one = ring_of(1), eight = ring_of(secmsg::max_psk_keys);
    std::vector<std::uint8_t> frame, scratch;
    secmsg::seal_frame(*(*one)[0].keys, secmsg::FrameType::msg, 0,
                       std::vector<std::uint8_t>(size, 'm'), frame);
    const auto first_frame = [&](const std::shared_ptr<const secmsg::KeyRing>& ring) {
        return 1e6 / rate([&] {
                   secmsg::Channel c(ring, secmsg::Role::server, secmsg::max_max_payload);
                   if (c.open(frame, scratch).error != secmsg::ProtoError::ok)
                       die("first frame did not open");
               });
    };
    return (first_frame(eight) - first_frame(one)) / static_cast<double>(secmsg::max_psk_keys - 1);
}

// A TLS 1.3 full handshake's key schedule (RFC 8446 7.1, no PSK) with
// SHA-256, as one side computes it: 3 HKDF-Extract (early, handshake,
// master secret), 19 HKDF-Expand-Label (2 "derived", 2 handshake and 2
// application traffic secrets, exporter and resumption master secrets,
// key and IV for each of 4 traffic secrets, 2 finished keys, 1 ticket
// PSK), 2 Finished HMACs and a 2 KiB transcript hashed.  A lower bound:
// wolfSSL also hashes the transcript at each step.
void tls13_key_schedule() {
    static const byte protocol[] = "tls13 ";
    static const byte label[] = "c hs traffic";
    static std::array<byte, 2048> transcript{};
    byte zeros[WC_SHA256_DIGEST_SIZE] = {}, ikm[32] = {7}, prk[WC_SHA256_DIGEST_SIZE],
         hash[WC_SHA256_DIGEST_SIZE], okm[WC_SHA256_DIGEST_SIZE];
    check(wc_Sha256Hash(transcript.data(), transcript.size(), hash), "wc_Sha256Hash");
    for (int i = 0; i < 3; ++i)
        check(wc_Tls13_HKDF_Extract(prk, zeros, sizeof zeros, i == 1 ? ikm : zeros, 32, WC_SHA256),
              "wc_Tls13_HKDF_Extract");
    for (int i = 0; i < 19; ++i)
        check(wc_Tls13_HKDF_Expand_Label(okm, sizeof okm, prk, sizeof prk, protocol,
                                         sizeof protocol - 1, label, sizeof label - 1, hash,
                                         sizeof hash, WC_SHA256),
              "wc_Tls13_HKDF_Expand_Label");
    Hmac h;
    check(wc_HmacInit(&h, nullptr, INVALID_DEVID), "wc_HmacInit");
    for (int i = 0; i < 2; ++i) {
        check(wc_HmacSetKey(&h, WC_SHA256, okm, sizeof okm), "wc_HmacSetKey");
        check(wc_HmacUpdate(&h, hash, sizeof hash), "wc_HmacUpdate");
        check(wc_HmacFinal(&h, okm), "wc_HmacFinal");
    }
    wc_HmacFree(&h);
}

struct Figures {
    std::vector<std::pair<std::string, double>> rows;
    void add(const std::string& k, double v) { rows.emplace_back(k, v); }
};

Figures measure() {
    Figures f;
    f.add("heap_per_session", heap_per_idle_session(16, 64));
    f.add("heap_per_session_mtls", heap_per_idle_session(16, 64, true));

    WC_RNG rng;
    check(wc_InitRng(&rng), "wc_InitRng");
    std::vector<byte> in(chunk, 0x42), out(chunk + 64);
    byte key[32];
    check(wc_RNG_GenerateBlock(&rng, key, sizeof key), "RNG");
    byte iv[16] = {};

    {
        Aes enc, dec;
        check(wc_AesInit(&enc, nullptr, INVALID_DEVID), "wc_AesInit");
        check(wc_AesInit(&dec, nullptr, INVALID_DEVID), "wc_AesInit");
        check(wc_AesSetKey(&enc, key, 32, iv, AES_ENCRYPTION), "wc_AesSetKey");
        check(wc_AesSetKey(&dec, key, 32, iv, AES_DECRYPTION), "wc_AesSetKey");
        f.add("aes256_cbc_encrypt", rate([&] {
                                        check(wc_AesCbcEncrypt(&enc, out.data(), in.data(), chunk),
                                              "wc_AesCbcEncrypt");
                                    }) * chunk /
                                        1e6);
        f.add("aes256_cbc_decrypt", rate([&] {
                                        check(wc_AesCbcDecrypt(&dec, out.data(), in.data(), chunk),
                                              "wc_AesCbcDecrypt");
                                    }) * chunk /
                                        1e6);
        wc_AesFree(&enc);
        wc_AesFree(&dec);
    }
    {
        Aes gcm;
        check(wc_AesInit(&gcm, nullptr, INVALID_DEVID), "wc_AesInit");
        check(wc_AesGcmSetKey(&gcm, key, 32), "wc_AesGcmSetKey");
        byte nonce[12] = {}, tag[16], aad[13] = {};
        f.add("aes256_gcm",
              rate([&] {
                  check(wc_AesGcmEncrypt(&gcm, out.data(), in.data(), chunk, nonce, sizeof nonce,
                                         tag, sizeof tag, aad, sizeof aad),
                        "wc_AesGcmEncrypt");
              }) * chunk /
                  1e6);
        wc_AesFree(&gcm);
    }
    {
        byte nonce[12] = {}, tag[16], aad[13] = {};
        f.add("chacha20_poly1305",
              rate([&] {
                  check(wc_ChaCha20Poly1305_Encrypt(key, nonce, aad, sizeof aad, in.data(), chunk,
                                                    out.data(), tag),
                        "wc_ChaCha20Poly1305_Encrypt");
              }) * chunk /
                  1e6);
    }
    {
        Hmac h;
        check(wc_HmacInit(&h, nullptr, INVALID_DEVID), "wc_HmacInit");
        byte mac[32];
        f.add("hmac_sha256_64", 1e6 / rate([&] {
                                    check(wc_HmacSetKey(&h, WC_SHA256, key, sizeof key),
                                          "wc_HmacSetKey");
                                    check(wc_HmacUpdate(&h, in.data(), 64), "wc_HmacUpdate");
                                    check(wc_HmacFinal(&h, mac), "wc_HmacFinal");
                                }));
        f.add("hmac_sha256_16k", rate([&] {
                                     check(wc_HmacSetKey(&h, WC_SHA256, key, sizeof key),
                                           "wc_HmacSetKey");
                                     check(wc_HmacUpdate(&h, in.data(), chunk), "wc_HmacUpdate");
                                     check(wc_HmacFinal(&h, mac), "wc_HmacFinal");
                                 }) * chunk /
                                     1e6);
        wc_HmacFree(&h);
        byte digest[WC_SHA256_DIGEST_SIZE];
        f.add("sha256_16k",
              rate([&] { check(wc_Sha256Hash(in.data(), chunk, digest), "wc_Sha256Hash"); }) *
                  chunk / 1e6);
    }
    f.add("msg_floor_64", message_floor(64));
    f.add("msg_floor_16k", message_floor(chunk));
    f.add("first_frame_key_64", first_frame_extra_key(64));
    f.add("first_frame_key_64k", first_frame_extra_key(secmsg::default_max_payload));
    f.add("tls13_key_schedule", 1e6 / rate(tls13_key_schedule));

    constexpr int peers = 32;  // a different peer key each time ("fresh peer")
    {
        curve25519_key mine;
        std::vector<curve25519_key> theirs(peers);
        check(wc_curve25519_init(&mine), "wc_curve25519_init");
        check(wc_curve25519_make_key(&rng, 32, &mine), "wc_curve25519_make_key");
        for (auto& k : theirs) {
            check(wc_curve25519_init(&k), "wc_curve25519_init");
            check(wc_curve25519_make_key(&rng, 32, &k), "wc_curve25519_make_key");
        }
        int i = 0;
        byte secret[32];
        f.add("x25519", rate([&] {
                  word32 len = sizeof secret;
                  check(wc_curve25519_shared_secret(&mine, &theirs[i++ % peers], secret, &len),
                        "wc_curve25519_shared_secret");
              }));
        f.add("x25519_keygen", rate([&] {
                  curve25519_key k;
                  check(wc_curve25519_init(&k), "wc_curve25519_init");
                  check(wc_curve25519_make_key(&rng, 32, &k), "wc_curve25519_make_key");
                  wc_curve25519_free(&k);
              }));
        wc_curve25519_free(&mine);
        for (auto& k : theirs) wc_curve25519_free(&k);
    }
    {
        std::vector<ecc_key> keys(peers + 1);
        for (auto& k : keys) {
            check(wc_ecc_init(&k), "wc_ecc_init");
            check(wc_ecc_make_key_ex(&rng, 32, &k, ECC_SECP256R1), "wc_ecc_make_key_ex");
        }
        ecc_key& mine = keys[peers];
        check(wc_ecc_set_rng(&mine, &rng), "wc_ecc_set_rng");
        int i = 0;
        byte secret[32];
        f.add("p256_ecdh", rate([&] {
                  word32 len = sizeof secret;
                  check(wc_ecc_shared_secret(&mine, &keys[i++ % peers], secret, &len),
                        "wc_ecc_shared_secret");
              }));
        byte hash[32] = {1}, sig[80];
        f.add("ecdsa_p256_sign", rate([&] {
                  word32 len = sizeof sig;
                  check(wc_ecc_sign_hash(hash, sizeof hash, sig, &len, &rng, &mine),
                        "wc_ecc_sign_hash");
              }));
        for (auto& k : keys) wc_ecc_free(&k);
    }
    {
        ed25519_key k;
        check(wc_ed25519_init(&k), "wc_ed25519_init");
        check(wc_ed25519_make_key(&rng, ED25519_KEY_SIZE, &k), "wc_ed25519_make_key");
        byte msg[32] = {2}, sig[ED25519_SIG_SIZE];
        f.add("ed25519_sign", rate([&] {
                  word32 len = sizeof sig;
                  check(wc_ed25519_sign_msg(msg, sizeof msg, sig, &len, &k), "wc_ed25519_sign_msg");
              }));
        wc_ed25519_free(&k);
    }
    wc_FreeRng(&rng);

    // A server's full handshake: its CertificateVerify signature, its X25519
    // key share and the shared secret, and the key schedule.
    std::map<std::string, double> m(f.rows.begin(), f.rows.end());
    const double kx = 1e6 / m["x25519_keygen"] + 1e6 / m["x25519"] + m["tls13_key_schedule"];
    f.add("handshake_floor_ecdsa", 1e6 / m["ecdsa_p256_sign"] + kx);
    f.add("handshake_floor_ed25519", 1e6 / m["ed25519_sign"] + kx);
    return f;
}

struct Row {
    const char* key;  // nullptr: a heading
    const char* label;
    const char* unit;
    double scale;  // printed value = figure / scale
    bool lower_is_better;
};

constexpr Row rows[] = {
    {"heap_per_session", "heap per idle TLS 1.3 server session (handshake + 1 record)", "KiB", 1024,
     true},
    {"heap_per_session_mtls", "the same with a client certificate (--allow-client)", "KiB", 1024,
     true},
    {"aes256_cbc_encrypt", "AES-256-CBC encrypt, 16 KiB", "MB/s", 1, false},
    {"aes256_cbc_decrypt", "AES-256-CBC decrypt, 16 KiB", "MB/s", 1, false},
    {"aes256_gcm", "AES-256-GCM encrypt, 16 KiB", "MB/s", 1, false},
    {"chacha20_poly1305", "ChaCha20-Poly1305 encrypt, 16 KiB", "MB/s", 1, false},
    {"hmac_sha256_64", "HMAC-SHA-256 of 64 B (key, update, final)", "us", 1, true},
    {"hmac_sha256_16k", "HMAC-SHA-256 of 16 KiB (key, update, final)", "MB/s", 1, false},
    {"sha256_16k", "SHA-256 of 16 KiB", "MB/s", 1, false},
    {"x25519", "X25519 shared secret, fresh peer", "k/s", 1000, false},
    {"x25519_keygen", "X25519 key generation", "k/s", 1000, false},
    {"p256_ecdh", "P-256 ECDH shared secret, fresh peer", "k/s", 1000, false},
    {"ecdsa_p256_sign", "ECDSA P-256 sign", "k/s", 1000, false},
    {"ed25519_sign", "Ed25519 sign", "k/s", 1000, false},
    {"tls13_key_schedule", "TLS 1.3 key schedule, SHA-256 (3 extract, 19 expand)", "us", 1, true},
    {nullptr, "crypto floor: the cryptography alone, per operation", "", 1, true},
    {"msg_floor_64", "message of 64 B: open MSG, SHA-256, seal ACK", "us", 1, true},
    {"msg_floor_16k", "message of 16 KiB: open MSG, SHA-256, seal ACK", "us", 1, true},
    {"first_frame_key_64", "each extra PSK key, a connection's first frame of 64 B", "us", 1, true},
    {"first_frame_key_64k", "each extra PSK key, a connection's first frame of 64 KiB", "us", 1,
     true},
    {"handshake_floor_ecdsa", "handshake, ECDSA P-256 key: sign, X25519 x2, key schedule", "us", 1,
     true},
    {"handshake_floor_ed25519", "handshake, Ed25519 key: sign, X25519 x2, key schedule", "us", 1,
     true},
};

std::map<std::string, double> run_other(const std::string& bin, std::string& description) {
    int pipefd[2];
    if (pipe(pipefd) != 0) die("pipe failed");
    pid_t pid = fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(bin.c_str(), bin.c_str(), "--tsv", static_cast<char*>(nullptr));
        std::perror(bin.c_str());
        _exit(127);
    }
    close(pipefd[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(bin + " --tsv failed");
    std::map<std::string, double> m;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        auto tab = line.find('\t');
        if (tab == std::string::npos) continue;
        std::string k = line.substr(0, tab), v = line.substr(tab + 1);
        if (k == "build")
            description = v;
        else
            m[k] = std::strtod(v.c_str(), nullptr);
    }
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    bool tsv = false;
    std::string against;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--tsv")
            tsv = true;
        else if (a == "--against" && i + 1 < argc)
            against = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--tsv | --against OTHER_BENCH_CRYPTO]\n", argv[0]);
            return 2;
        }
    }
    // Before wolfSSL allocates anything, so that every block is counted.
    if (wolfSSL_SetAllocators(count_malloc, count_free, count_realloc) != 0)
        die("wolfSSL_SetAllocators failed");
    secmsg::tls::init();

    const std::string me = secmsg::wolfssl_build_description();
    Figures f;
    try {
        f = measure();
    } catch (const std::exception& e) {
        die(e.what());
    }
    std::map<std::string, double> mine(f.rows.begin(), f.rows.end());

    if (tsv) {
        std::printf("build\t%s\n", me.c_str());
        for (auto& [k, v] : f.rows) std::printf("%s\t%.6g\n", k.c_str(), v);
        return 0;
    }
    if (against.empty()) {
        std::printf("%s\n\n%-62s %12s\n", me.c_str(), "figure", "value");
        for (const Row& r : rows) {
            if (!r.key)
                std::printf("\n%s\n", r.label);
            else
                std::printf("%-62s %7.2f %-4s\n", r.label, mine[r.key] / r.scale, r.unit);
        }
        return 0;
    }
    std::string theirs_desc;
    auto theirs = run_other(against, theirs_desc);
    std::printf("A: %s\nB: %s\n\n%-62s %12s %12s %7s\n", me.c_str(), theirs_desc.c_str(), "figure",
                "A", "B", "A/B");
    for (const Row& r : rows) {
        if (!r.key) {
            std::printf("\n%s\n", r.label);
            continue;
        }
        double a = mine[r.key], b = theirs[r.key];
        std::printf("%-62s %7.2f %-4s %7.2f %-4s %6.2fx%s\n", r.label, a / r.scale, r.unit,
                    b / r.scale, r.unit, b != 0 ? a / b : 0.0,
                    r.lower_is_better ? "  (lower is better)" : "");
    }
    return 0;
}
