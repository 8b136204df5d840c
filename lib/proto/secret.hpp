// Owner of secret bytes: locked in memory where the system allows it and
// wiped with sodium_memzero when the owner dies.  Move-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

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

}  // namespace secmsg
