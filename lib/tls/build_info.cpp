// What the linked wolfSSL can do, asked of wolfCrypt itself rather than
// guessed from the build's macros.
#include "tls/build_info.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/cpuid.h>
#include <wolfssl/ssl.h>

#include "secmsg_config.h"

#include <string>
#include <string_view>

#if defined(WOLFSSL_X86_64_BUILD) && defined(USE_INTEL_SPEEDUP) && \
    !defined(SECMSG_WOLFSSL_DEBIAN_SOURCE)
#include <cpuid.h>
#endif

namespace secmsg {

namespace {

bool probe_aes_hardware() {
#if defined(WOLFSSL_AESNI)
    // wolfCrypt checks CPUID when a key is set and records in the Aes
    // object whether its AES-NI code path will run.
    Aes aes;
    if (wc_AesInit(&aes, nullptr, INVALID_DEVID) != 0) return false;
    static const byte key[32] = {};
    bool hw =
        wc_AesSetKey(&aes, key, sizeof key, nullptr, AES_ENCRYPTION) == 0 && aes.use_aesni != 0;
    wc_AesFree(&aes);
    return hw;
#elif defined(WOLFSSL_ARMASM) && !defined(WOLFSSL_ARMASM_NO_HW_CRYPTO)
    return true;  // the ARMv8 crypto instructions are compiled in unconditionally
#else
    return false;  // AES in C with lookup tables
#endif
}

#if defined(WOLFSSL_X86_64_BUILD) && defined(USE_INTEL_SPEEDUP)
// wolfCrypt's CPU feature flags, as its SHA-256 dispatch reads them.
word32 wolfcrypt_cpu_flags() {
#if defined(SECMSG_WOLFSSL_DEBIAN_SOURCE)
    return cpuid_get_flags();  // not exported by a shared libwolfssl; ours is static
#else
    // A shared wolfSSL with the x86-64 assembly hides cpuid_get_flags():
    // the same CPUID bits wolfCrypt's cpuid.c tests, asked here.
    word32 f = 0;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_AVX)) f |= CPUID_AVX1;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (b & bit_AVX2) f |= CPUID_AVX2;
#ifdef CPUID_SHA
        if (b & bit_SHA) f |= CPUID_SHA;
#endif
    }
    return f;
#endif
}
#endif

const char* probe_sha256() {
#if defined(WOLFSSL_X86_64_BUILD) && defined(USE_INTEL_SPEEDUP)
    // sha256.c compiles its AVX1/AVX2 transforms under exactly these two
    // macros, and picks at the first hash: SHA extensions first (only a
    // wolfSSL whose cpuid.h knows CPUID_SHA has that transform: 5.7 on;
    // 5.5.4 has none), then AVX2, then AVX1, else C.
    const word32 flags = wolfcrypt_cpu_flags();
#ifdef CPUID_SHA
    if (IS_INTEL_SHA(flags)) return "SHA-NI";
#endif
    if (IS_INTEL_AVX2(flags)) return "AVX2";
    if (IS_INTEL_AVX1(flags)) return "AVX1";
    return "C";
#elif defined(WOLFSSL_ARMASM) && !defined(WOLFSSL_ARMASM_NO_HW_CRYPTO)
    return "ARMv8 crypto extensions";  // compiled in unconditionally
#else
    return "C";
#endif
}

}  // namespace

const char* sha256_implementation() {
    static const char* const impl = probe_sha256();
    return impl;
}

bool sha256_uses_hardware() {
    const std::string_view impl = sha256_implementation();
    return impl == "SHA-NI" || impl == "ARMv8 crypto extensions";
}

bool aes_uses_hardware() {
    static const bool hw = probe_aes_hardware();
    return hw;
}

std::string wolfssl_build_description() {
    std::string s = "wolfSSL ";
    s += wolfSSL_lib_version();
    s += " (" SECMSG_WOLFSSL_BUILD;
#ifdef SECMSG_WOLFSSL_DEBIAN_SOURCE
    s += ", from Debian's wolfssl " SECMSG_WOLFSSL_DEBIAN_SOURCE " source";
#endif
    s += "; AES: ";
#if defined(WOLFSSL_AESNI)
    s += aes_uses_hardware() ? "AES-NI" : "C tables, this CPU has no AES-NI";
#elif defined(WOLFSSL_ARMASM) && !defined(WOLFSSL_ARMASM_NO_HW_CRYPTO)
    s += "ARMv8 crypto extensions";
#else
    s += "C tables";
#endif
    s += "; SHA-256: ";
    s += sha256_implementation();
    s += ")";
    return s;
}

}  // namespace secmsg
