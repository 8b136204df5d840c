// Runs the fuzz target (fuzz_frames.cpp) over a fixed, seeded set of inputs
// derived from valid frames — flipped bits, cut lengths, spliced streams —
// so every build exercises the peer-facing parsers with hostile bytes, and
// over any files named on the command line (a libFuzzer corpus or crash).
#include "payload.hpp"
#include "seal.hpp"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

using namespace secmsg;

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::ifstream f(argv[i], std::ios::binary);
        std::vector<std::uint8_t> d((std::istreambuf_iterator<char>(f)), {});
        LLVMFuzzerTestOneInput(d.data(), d.size());
    }
    const std::vector<std::uint8_t> psk(32, 0x42);
    FrameKeys keys(psk);
    std::mt19937_64 rng(20261126);
    std::vector<std::uint8_t> stream;
    long inputs = 0;
    for (int round = 0; round < 3000; ++round) {
        stream.assign(1, static_cast<std::uint8_t>(rng()));
        const int frames = 1 + static_cast<int>(rng() % 4);
        for (int i = 0; i < frames; ++i) {
            std::vector<std::uint8_t> msg(rng() % 200, static_cast<std::uint8_t>(rng()));
            const auto type = static_cast<FrameType>(1 + rng() % 3);
            if (type == FrameType::ack) {
                std::vector<std::uint8_t> ack;
                build_ack(static_cast<std::uint64_t>(i), sha256(msg), "ok", ack);
                msg = ack;
            }
            seal_frame(keys, type, static_cast<std::uint64_t>(i), msg, stream);
        }
        LLVMFuzzerTestOneInput(stream.data(), stream.size());
        for (int m = 0; m < 8; ++m) {
            auto s = stream;
            switch (rng() % 4) {
            case 0: s[rng() % s.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
            case 1: s.resize(rng() % s.size() + 1); break;
            case 2: s[1 + rng() % 4 % (s.size() - 1)] = static_cast<std::uint8_t>(rng()); break;
            default: s.insert(s.begin() + 1 + static_cast<long>(rng() % (s.size() - 1)), static_cast<std::uint8_t>(rng())); break;
            }
            LLVMFuzzerTestOneInput(s.data(), s.size());
            ++inputs;
        }
    }
    std::printf("fuzz-replay: %ld mutated inputs and %d files, no crash\n", inputs, argc - 1);
    return 0;
}
