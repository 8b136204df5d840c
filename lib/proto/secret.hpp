// Owner of secret bytes: locked in memory where the system allows it and
// wiped with sodium_memzero when the owner dies.  Move-only.  And the one
// decoder of the 32-byte values written as base64 (PSKs, pins).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace secmsg {

class SecretBytes {
public:
    SecretBytes() = default;
    explicit SecretBytes(std::size_t n);  // n zero bytes (throws std::bad_alloc)
    ~SecretBytes();
    SecretBytes(SecretBytes&& o) noexcept;
    SecretBytes& operator=(SecretBytes&& o) noexcept;
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;

    std::uint8_t* data() { return p_; }
    const std::uint8_t* data() const { return p_; }
    std::size_t size() const { return n_; }
    std::span<const std::uint8_t> bytes() const { return {p_, n_}; }
    std::span<std::uint8_t> bytes() { return {p_, n_}; }

private:
    void release();
    std::uint8_t* p_ = nullptr;
    std::size_t n_ = 0;
};

// Decodes `text`, the standard base64 (with '=' padding) of exactly
// out.size() bytes, into `out`.  Only the canonical text is accepted:
// libsodium's decoder also takes stray bits in the last character and some
// bytes outside the alphabet (0xf8 decodes like a letter).  On anything
// but ok, `out` holds nothing to rely on.
enum class Base64 { ok, invalid, non_canonical };
Base64 decode_base64_exact(std::string_view text, std::span<std::uint8_t> out);

}  // namespace secmsg
