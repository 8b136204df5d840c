// A stand-in for journald's socket in the daemon's unit tests: a real
// AF_UNIX datagram socket bound in a fresh directory under /tmp, which
// reads only when a test tells it to (until then its queue fills up, as a
// stopped journald's does).
#pragma once

#include "io/fd.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace secmsg::test {

struct DatagramListener {
    std::string dir, path;
    Fd sock;
    DatagramListener() {
        char tmpl[] = "/tmp/secmsg-journal-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        path = dir + "/socket";
        bind();
    }
    ~DatagramListener() {
        sock.reset();
        ::unlink(path.c_str());
        ::rmdir(dir.c_str());
    }
    DatagramListener(const DatagramListener&) = delete;
    DatagramListener& operator=(const DatagramListener&) = delete;

    // Binds a new socket at `path` (after the old one was closed and unlinked).
    void bind() {
        sock.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        REQUIRE(sock);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.c_str(), path.size());
        REQUIRE(::bind(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
};

}  // namespace secmsg::test
