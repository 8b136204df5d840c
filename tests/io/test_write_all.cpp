// Writing whole buffers: through a pipe, into a full non-blocking socket.
#include "io/fd.hpp"
#include "io/write_all.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

using namespace secmsg;

TEST_CASE("write_all: every byte out, or how far it got and why") {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    Fd r(p[0]), w(p[1]);
    const std::vector<std::uint8_t> small{'a', 'b', 'c'};
    const Written ok = write_all(w.get(), small);
    CHECK(ok.done());
    CHECK(ok.bytes == 3);
    std::vector<std::uint8_t> back(8);
    CHECK(::read(r.get(), back.data(), back.size()) == 3);

    // More than the pipe holds: what fits goes out, then EAGAIN.
    const std::vector<std::uint8_t> big(4u << 20, 'x');
    const Written full = write_all(w.get(), big);
    CHECK(!full.done());
    CHECK((full.error == EAGAIN || full.error == EWOULDBLOCK));
    CHECK(full.bytes > 0);
    CHECK(full.bytes < big.size());

    // The reader gone: EPIPE from send(2) with MSG_NOSIGNAL, no signal.
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    Fd a(sv[0]), b(sv[1]);
    b.reset();
    const Written gone = send_all(a.get(), small, MSG_NOSIGNAL | MSG_DONTWAIT);
    CHECK(gone.error == EPIPE);
    CHECK(gone.bytes == 0);
    CHECK(write_all(-1, small).error == EBADF);
    CHECK(write_all(-1, {}).done());
}
