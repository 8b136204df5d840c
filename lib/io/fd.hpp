// Owner of one file descriptor.  Move-only; closing an empty one is a no-op.
#pragma once

#include <unistd.h>

#include <utility>

namespace secmsg {

class Fd {
public:
    Fd() = default;
    // Takes ownership of `fd` (-1 for none).
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }

    // Gives up ownership and returns the descriptor.
    int release() { return std::exchange(fd_, -1); }

    // Closes the owned descriptor (if any) and takes `fd` instead.
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

}  // namespace secmsg
