// What the linked wolfSSL can do, asked of wolfCrypt itself rather than
// guessed from the build's macros.
#include "build_info.hpp"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/ssl.h>

#include "secmsg_config.h"

#include <string>

namespace secmsg {

namespace {

bool probe_aes_hardware()
{
#if defined(WOLFSSL_AESNI)
    // wolfCrypt checks CPUID when a key is set and records in the Aes
    // object whether its AES-NI code path will run.
    Aes aes;
    if (wc_AesInit(&aes, nullptr, INVALID_DEVID) != 0) return false;
    static const byte key[32] = {};
    bool hw = wc_AesSetKey(&aes, key, sizeof key, nullptr, AES_ENCRYPTION) == 0 && aes.use_aesni != 0;
    wc_AesFree(&aes);
    return hw;
#elif defined(WOLFSSL_ARMASM) && !defined(WOLFSSL_ARMASM_NO_HW_CRYPTO)
    return true;  // the ARMv8 crypto instructions are compiled in unconditionally
#else
    return false;  // AES in C with lookup tables
#endif
}

}  // namespace

bool aes_uses_hardware()
{
    static const bool hw = probe_aes_hardware();
    return hw;
}

std::string wolfssl_build_description()
{
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
    s += ")";
    return s;
}

}  // namespace secmsg
