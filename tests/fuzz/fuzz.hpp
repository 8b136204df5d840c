// The fuzz targets and what they share: one fixed PSK, a reader of the
// fuzz input, and a builder of sealed streams from it ("sealed mode"), so a
// target reaches what lies behind the tag (version, type, seq, padding,
// payloads) and not only the tag check.
//
// Each target is a plain function.  entry.cpp turns one of them into a
// libFuzzer binary (clang); fuzz_replay.cpp runs all of them over the
// committed corpora with any compiler.  See meson.build for the list.
#pragma once

#include "proto/seal.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace secmsg::fuzz {

// The targets (one file each).  Each returns 0 and traps on a broken
// invariant; sanitizers report the rest.
int frames(const std::uint8_t* data, std::size_t size);  // fuzz_frames.cpp
int client(const std::uint8_t* data, std::size_t size);  // fuzz_client.cpp
int psk(const std::uint8_t* data, std::size_t size);     // fuzz_psk.cpp
int config(const std::uint8_t* data, std::size_t size);  // fuzz_config.cpp
int proxy(const std::uint8_t* data, std::size_t size);   // fuzz_proxy.cpp

// A breaks-an-invariant stop that every build keeps (not an assert).
#define SECMSG_FUZZ_CHECK(cond)        \
    do {                               \
        if (!(cond)) __builtin_trap(); \
    } while (0)

// The keys every target seals and opens with: a fixed PSK of 32 bytes 0x42.
const std::shared_ptr<const FrameKeys>& keys();
// A receiver's ring of two keys, the fixed PSK second (after 32 bytes 0x17):
// a server under it must see every stream as a server under keys() does.
const std::shared_ptr<const KeyRing>& ring();
// The fixed PSK alone as a receiver's ring.
const std::shared_ptr<const KeyRing>& one_key_ring();
std::span<const std::uint8_t> psk_bytes();

// The fuzz input, consumed from the front; reads past the end give zeros
// and empty spans.
class Input {
public:
    explicit Input(std::span<const std::uint8_t> in) : in_(in) {}
    bool empty() const { return in_.empty(); }
    std::uint8_t byte();
    std::uint64_t u64();
    std::span<const std::uint8_t> take(std::size_t n);
    std::span<const std::uint8_t> rest() { return take(in_.size()); }

private:
    std::span<const std::uint8_t> in_;
};

// Sealed-mode frame builder.  seal() is the library's own seal_frame with a
// fixed IV; forge() encrypts `blocks` as they are (the fuzzer chooses the
// padding bytes: a multiple of 16, cut down to one) under any version,
// type and seq, and tags the result correctly, so open_frame's checks after
// the tag see bytes of the fuzzer's choosing.
void seal(FrameType type, std::uint64_t seq, std::span<const std::uint8_t> plaintext,
          std::vector<std::uint8_t>& out);
void forge(std::uint8_t version, std::uint8_t type, std::uint64_t seq,
           std::span<const std::uint8_t> blocks, std::vector<std::uint8_t>& out);

// One record of a sealed-mode input:
//   ctl byte: bits 0-1 type (0 MSG, 1 ACK, 2 ERROR, 3 the next byte as is),
//             bit 2 seq + 1, bit 3 seq - 1 (both: the next 8 bytes as seq),
//             bit 4 forge() instead of seal() (then bit 5: the next byte
//             is the version), bits 6-7 length scale (x1, x16, x256, x1024),
//   length byte (times the scale), then that many bytes of plaintext.
// A target may read bytes of its own before the record's plaintext
// (client: what kind of reply to build).
struct Record {
    std::uint8_t type = 1;
    std::uint64_t seq = 0;  // the seq written into the frame
    bool proper = true;     // seal() of a known type at the expected seq, version 1
    bool forged = false;
    std::uint8_t version = 1;
    std::size_t length = 0;  // of the plaintext still to be read from the input
};
Record read_record(Input& in, std::uint64_t expected_seq);
// Appends the frame of `r` with plaintext `p` (forge: `p` as blocks).
void emit(const Record& r, std::span<const std::uint8_t> p, std::vector<std::uint8_t>& out);

// Calls `f(chunk)` over `stream` cut into pieces of `chunk` bytes.
template <class F>
void in_chunks(std::span<const std::uint8_t> stream, std::size_t chunk, F&& f) {
    for (std::size_t at = 0; at < stream.size(); at += chunk)
        f(stream.subspan(at, std::min(chunk, stream.size() - at)));
}

}  // namespace secmsg::fuzz
