// What the wolfSSL this binary was linked with can do.  Implemented in
// build_info.cpp (owned by the tuned-wolfSSL work).
#pragma once

#include <string>

namespace secmsg {

// True when wolfCrypt's AES runs on AES-NI (or the ARMv8 crypto extensions)
// in this process, on this CPU.
bool aes_uses_hardware();

// Which code wolfCrypt's SHA-256 (and so HMAC-SHA-256) runs in this process,
// on this CPU: "SHA-NI" (x86-64 SHA extensions), "AVX2", "AVX1",
// "ARMv8 crypto extensions" or "C".  On x86-64 it is decided as wolfCrypt's
// own dispatch in sha256.c decides it: from the build (x86-64 assembly
// compiled in, and a wolfSSL that has the SHA-NI transform, 5.7 on) and from
// wolfCrypt's CPUID flags (cpuid_get_flags()).
const char* sha256_implementation();

// True when SHA-256 runs on the CPU's SHA instructions (SHA-NI, or the ARMv8
// crypto extensions).
bool sha256_uses_hardware();

// One line for logs and --version: wolfSSL version, "tuned" or "system",
// where its source came from, whether AES uses hardware and which code
// SHA-256 runs, e.g. "...; AES: AES-NI; SHA-256: SHA-NI)".
std::string wolfssl_build_description();

}  // namespace secmsg
