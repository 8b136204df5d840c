// build_info: the tuned wolfSSL must not silently run AES without AES-NI on
// a CPU that has it.  The CPU is asked directly (CPUID, or the kernel's
// hwcaps on aarch64), not through wolfSSL.
#include "build_info.hpp"

#include "secmsg_config.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace {

// True when this CPU has AES instructions.
bool cpu_has_aes() {
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    return (ecx & bit_AES) != 0;
#elif defined(__aarch64__) && defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_AES) != 0;
#else
    return false;
#endif
}

constexpr std::string_view build = SECMSG_WOLFSSL_BUILD;

}  // namespace

TEST_CASE("the tuned wolfSSL runs AES on the CPU's AES instructions when it has them") {
    const bool cpu = cpu_has_aes();
    const bool wolf = secmsg::aes_uses_hardware();
    const std::string seen = secmsg::wolfssl_build_description() +
                             "; CPU has AES instructions: " + (cpu ? "yes" : "no");
    MESSAGE(seen);
#if defined(__x86_64__) || defined(__aarch64__)
    if (build == "tuned" && cpu) CHECK_MESSAGE(wolf, "tuned wolfSSL runs AES in C on a CPU with AES instructions");
#endif
    // Never claims hardware the CPU lacks.
    if (!cpu) CHECK_FALSE(wolf);
    CHECK(secmsg::aes_uses_hardware() == wolf);  // stable across calls
}

TEST_CASE("the build description names the build and the AES path") {
    const std::string d = secmsg::wolfssl_build_description();
    CHECK(d.starts_with("wolfSSL "));
    CHECK(d.find(std::string(build)) != std::string::npos);
    CHECK(d.find("AES: ") != std::string::npos);
    if (secmsg::aes_uses_hardware())
        CHECK(d.find("C tables") == std::string::npos);
    else
        CHECK(d.find("C tables") != std::string::npos);
}
