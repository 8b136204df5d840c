#include "proto/secret.hpp"

#include <sodium.h>

#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace secmsg {

SecretBytes::SecretBytes(std::size_t n) {
    if (sodium_init() < 0) throw std::bad_alloc();
    // sodium_malloc: guard pages, mlock where the system allows it.
    p_ = static_cast<std::uint8_t*>(sodium_malloc(n == 0 ? 1 : n));
    if (p_ == nullptr) throw std::bad_alloc();
    n_ = n;
    sodium_memzero(p_, n_);
}

SecretBytes::~SecretBytes() { release(); }

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
    if (this != &o) {
        release();
        p_ = std::exchange(o.p_, nullptr);
        n_ = std::exchange(o.n_, 0);
    }
    return *this;
}

void SecretBytes::release() {
    if (p_ != nullptr) sodium_free(p_);  // wipes before unmapping
    p_ = nullptr;
    n_ = 0;
}

Base64 decode_base64_exact(std::string_view text, std::span<std::uint8_t> out) {
    std::size_t len = 0;
    const char* end = nullptr;
    if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != text.data() + text.size() || len != out.size())
        return Base64::invalid;
    std::vector<char> canon(sodium_base64_ENCODED_LEN(out.size(), sodium_base64_VARIANT_ORIGINAL));
    sodium_bin2base64(canon.data(), canon.size(), out.data(), out.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    const bool same = std::string_view(canon.data()) == text;
    sodium_memzero(canon.data(), canon.size());  // a key's text, for PSKs
    return same ? Base64::ok : Base64::non_canonical;
}

}  // namespace secmsg
