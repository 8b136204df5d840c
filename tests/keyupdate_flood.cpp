// keyupdate-flood: a hostile TLS 1.3 peer for the hostile-load test
// (tests/daemon/test_hostile.py).  For --seconds it connects to --host
// --port, completes a handshake (OpenSSL's libssl, no certificate check)
// and streams KeyUpdate(update_requested) records without ever reading,
// until the server closes the connection or stops reading it (a send
// blocked for a second); then it connects again.  It holds no PSK.
//
// Prints one line at the end: "keyupdate-flood connections N keyupdates K
// most-per-connection M", and exits 0 (77 without libssl.so.3).
#include "openssl_peer.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

int connect_to(const char* host, int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    timeval tv{1, 0};  // a server that stops reading ends a KeyUpdate run, not the program
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    const char* host = "127.0.0.1";
    int port = 0;
    double seconds = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!std::strcmp(argv[i], "--port"))
            port = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--seconds"))
            seconds = std::atof(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: keyupdate-flood --host ADDR --port PORT --seconds S\n");
            return 2;
        }
    }
    if (port <= 0 || seconds <= 0) {
        std::fprintf(stderr, "keyupdate-flood: --port and --seconds are required\n");
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);  // a closed connection is an error code, then the next one
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    long connections = 0, total = 0, most = 0;
    while (Clock::now() < end) {
        int fd = connect_to(host, port);
        if (fd < 0) {
            ::usleep(10000);
            continue;
        }
        {
            secmsg::testing::OpenSslPeer peer;
            std::string error;
            if (!peer.load(fd, error)) {
                ::close(fd);
                if (error.empty()) {
                    std::printf("keyupdate-flood: no libssl.so.3\n");
                    return 77;
                }
                std::fprintf(stderr, "keyupdate-flood: %s\n", error.c_str());
                return 1;
            }
            ++connections;
            if (peer.connect_step() == 1) {
                long sent = 0;
                while (Clock::now() < end && peer.key_update()) ++sent;
                total += sent;
                if (sent > most) most = sent;
            }
        }
        ::close(fd);
    }
    std::printf("keyupdate-flood connections %ld keyupdates %ld most-per-connection %ld\n",
                connections, total, most);
    return 0;
}
