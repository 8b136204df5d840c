// Writing a whole buffer to a descriptor (see write_all.hpp).
#include "io/write_all.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace secmsg {

namespace {

// `put` is one write(2) or send(2) of what is left.
template <typename Put>
Written put_all(std::span<const std::uint8_t> data, Put put) {
    Written w;
    while (w.bytes < data.size()) {
        const ssize_t n = put(data.data() + w.bytes, data.size() - w.bytes);
        if (n > 0) {
            w.bytes += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        w.error = n < 0 ? errno : EIO;
        break;
    }
    return w;
}

}  // namespace

Written write_all(int fd, std::span<const std::uint8_t> data) {
    return put_all(data, [fd](const std::uint8_t* p, std::size_t n) { return ::write(fd, p, n); });
}

Written send_all(int fd, std::span<const std::uint8_t> data, int flags) {
    return put_all(data, [fd, flags](const std::uint8_t* p, std::size_t n) {
        return ::send(fd, p, n, flags);
    });
}

}  // namespace secmsg
