// build_info: the tuned wolfSSL must not silently run AES without AES-NI, nor
// SHA-256 without the SHA extensions, on a CPU that has them.  The CPU is
// asked directly (CPUID, or the kernel's hwcaps on aarch64), not through
// wolfSSL.
#include "tls/build_info.hpp"

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

// True when this CPU has SHA-256 instructions (x86 SHA extensions, ARMv8 SHA2).
bool cpu_has_sha256() {
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return (ebx & bit_SHA) != 0;
#elif defined(__aarch64__) && defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#else
    return false;
#endif
}

constexpr std::string_view build = SECMSG_WOLFSSL_BUILD;

// `what` runs on hardware per wolfSSL (`wolf`, asked twice) and per the CPU:
// never claimed without the CPU's instructions, and in the tuned build always
// used when the CPU has them.
void check_hardware_path(const std::string& what, bool cpu, bool (*wolf)()) {
    const bool used = wolf();
    const std::string seen = secmsg::wolfssl_build_description() + "; CPU has " + what +
                             " instructions: " + (cpu ? "yes" : "no");
    MESSAGE(seen);
#if defined(__x86_64__) || defined(__aarch64__)
    if (build == "tuned" && cpu)
        CHECK_MESSAGE(used, "the tuned wolfSSL runs " << what << " without the " << what
                                                      << " instructions this CPU has");
#endif
    if (!cpu) CHECK_FALSE(used);
    CHECK(wolf() == used);  // stable across calls
}

}  // namespace

TEST_CASE("the tuned wolfSSL runs AES on the CPU's AES instructions when it has them") {
    check_hardware_path("AES", cpu_has_aes(), secmsg::aes_uses_hardware);
}

// Fails with -Dwolfssl_suite=bookworm on a CPU with the SHA extensions: its
// wolfSSL 5.5.4 has no SHA-NI code (AVX2 at best); trixie's 5.7.2 has.
TEST_CASE("the tuned wolfSSL runs SHA-256 on the CPU's SHA instructions when it has them") {
    check_hardware_path("SHA-256", cpu_has_sha256(), secmsg::sha256_uses_hardware);
}

TEST_CASE("the build description names the build, the AES path and the SHA-256 path") {
    const std::string d = secmsg::wolfssl_build_description();
    CHECK(d.starts_with("wolfSSL "));
    CHECK(d.find(std::string(build)) != std::string::npos);
    CHECK(d.find("AES: ") != std::string::npos);
    if (secmsg::aes_uses_hardware())
        CHECK(d.find("C tables") == std::string::npos);
    else
        CHECK(d.find("C tables") != std::string::npos);
    CHECK(d.find(std::string("SHA-256: ") + secmsg::sha256_implementation()) != std::string::npos);
}
