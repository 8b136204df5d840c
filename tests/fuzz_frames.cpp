// Fuzz target for everything that reads bytes from a peer before trusting
// them: the frame reader (in input-chosen chunkings), frame opening for both
// roles, ACK and ERROR payload parsing, and PSK file text.
//
// With clang: `CXX=clang++ meson setup build-fuzz && ninja -C build-fuzz
// tests/fuzz-frames && build-fuzz/tests/fuzz-frames`.  With any compiler
// the suite runs it over a fixed, seeded set of mutated frames (fuzz-replay).
#include "frame_reader.hpp"
#include "payload.hpp"
#include "psk.hpp"
#include "seal.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

using namespace secmsg;

namespace {

const FrameKeys& fuzz_keys() {
    static const std::vector<std::uint8_t> psk(32, 0x42);
    static const FrameKeys keys(psk);
    return keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // First byte: chunk size for the reader, and the maximum payload.
    const std::size_t chunk = 1 + data[0] % 64;
    const std::size_t max_payload = (data[0] & 0x80) ? 100 : default_max_payload;
    const std::span<const std::uint8_t> in(data + 1, size - 1);

    FrameReader reader(max_payload);
    std::vector<std::uint8_t> scratch;
    std::uint64_t seq = 0;
    for (std::size_t at = 0; at < in.size(); at += chunk) {
        reader.feed(in.subspan(at, std::min(chunk, in.size() - at)));
        for (;;) {
            auto n = reader.next();
            if (n.kind != FrameReader::Next::Kind::frame) break;
            for (Role role : {Role::server, Role::client}) {
                auto r = open_frame(fuzz_keys(), role, seq, max_payload, n.frame, scratch);
                if (r.error == ProtoError::ok) {
                    if (r.plaintext.size() > max_payload) __builtin_trap();
                    (void)parse_ack(r.plaintext);
                    (void)parse_error(r.plaintext);
                }
            }
            ++seq;
        }
    }
    (void)parse_ack(in);
    (void)parse_error(in);
    try {
        (void)parse_psk_text({reinterpret_cast<const char*>(in.data()), in.size()}, "fuzz");
    } catch (const KeyFileError&) {
    }
    return 0;
}
