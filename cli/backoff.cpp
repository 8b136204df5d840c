// Capped exponential backoff with jitter.
#include "backoff.hpp"

#include <sodium.h>

#include <algorithm>

namespace secmsg {

Backoff::Backoff(ms first, ms cap)
    : first_(std::max(first, ms(1))), cap_(std::max(cap, first_)), step_(first_) {}

Backoff::ms Backoff::next(double fraction) {
    fraction = std::clamp(fraction, 0.0, 1.0);
    const auto delay = ms(
        static_cast<long long>(static_cast<double>(step_.count()) * (0.5 + 0.5 * fraction) + 0.5));
    step_ = std::min(step_ * 2, cap_);
    return delay;
}

Backoff::ms Backoff::next() {
    return next(static_cast<double>(randombytes_uniform(1001)) / 1000.0);
}

}  // namespace secmsg
