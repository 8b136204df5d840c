// What the wolfSSL this binary was linked with can do.  Implemented in
// build_info.cpp (owned by the tuned-wolfSSL work).
#pragma once

#include <string>

namespace secmsg {

// True when wolfCrypt's AES runs on AES-NI (or the ARMv8 crypto extensions)
// in this process, on this CPU.
bool aes_uses_hardware();

// One line for logs and --version: wolfSSL version, "tuned" or "system",
// and whether AES uses hardware.
std::string wolfssl_build_description();

}  // namespace secmsg
