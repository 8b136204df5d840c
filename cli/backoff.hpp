// The client's waits between reconnection attempts: capped exponential
// backoff with jitter.  Pure arithmetic; the caller sleeps.
#pragma once

#include <chrono>

namespace secmsg {

class Backoff {
public:
    using ms = std::chrono::milliseconds;

    // Delays start at `first` and double after each attempt up to `cap`.
    explicit Backoff(ms first = ms(250), ms cap = ms(8000));

    // The delay before the next attempt: the current step scaled by
    // 0.5 + 0.5 * `fraction` (fraction in [0, 1], clamped), so that clients
    // cut off together do not all come back at the same instant; then the
    // step doubles (at most `cap`).
    ms next(double fraction);

    // The next delay with a random fraction (libsodium).
    ms next();

    // After progress: the next delay is `first` again.
    void reset() { step_ = first_; }

private:
    ms first_, cap_, step_;
};

}  // namespace secmsg
