#include "proto/secret.hpp"

#include <sodium.h>

#include <new>
#include <utility>

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

}  // namespace secmsg
