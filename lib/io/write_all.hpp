// Writing a whole buffer to a descriptor: write(2), or send(2) for a
// socket, again until every byte is out, through EINTR.  The one loop for
// files, memfds, pipes and stderr's stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace secmsg {

// How far a write_all or send_all got: every byte out (error 0), or the
// bytes that went out before the call failed and its errno: EAGAIN or
// EWOULDBLOCK when a non-blocking descriptor is full, EIO when a call
// took nothing.
struct Written {
    std::size_t bytes = 0;
    int error = 0;
    bool done() const { return error == 0; }
};

// Writes `data` to `fd` with write(2) until all of it is out.
Written write_all(int fd, std::span<const std::uint8_t> data);

// The same with send(2) and its `flags` (MSG_NOSIGNAL, MSG_DONTWAIT), for a socket.
Written send_all(int fd, std::span<const std::uint8_t> data, int flags);

}  // namespace secmsg
