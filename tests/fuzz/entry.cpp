// libFuzzer's entry point for one target, chosen at compile time:
// -DSECMSG_FUZZ_TARGET=frames (see meson.build).
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return secmsg::fuzz::SECMSG_FUZZ_TARGET(data, size);
}
