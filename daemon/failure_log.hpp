// Log lines about connections that never authenticated (no frame with a
// valid tag): handshake failures, junk, timeouts.  Anyone can open those,
// so they must not be able to fill the log: per window (10 s), the first
// max_per_address connections from each address are logged in full, at
// most max_full_lines in all; the rest are counted, and when the window
// ends one line per address says how many more there were and the last
// reason:
//
//   42 more unauthenticated connections from 192.0.2.7 in the last 10 s
//   (last: reason tls-failed: TLS handshake failed: ...)
//
// Addresses beyond max_addresses in one window share one line.
// Authenticated connections keep their own summary line (connection.cpp).
#pragma once

#include "io/reactor.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace secmsg::daemon {

class FailureLog {
public:
    static constexpr auto window = std::chrono::seconds(10);
    static constexpr std::size_t max_per_address = 5;  // full lines per address per window
    static constexpr std::size_t max_full_lines = 50;  // per window, all addresses together
    static constexpr std::size_t max_addresses = 256;  // counted one by one per window

    explicit FailureLog(Reactor& r);

    // One unauthenticated connection ended; `line` is its full summary.
    // `peer` is "ADDRESS:PORT" or "[V6ADDRESS]:PORT".
    void report(std::string_view peer, const std::string& line);

    // Lines written in full and connections only counted, since start.
    std::uint64_t logged() const { return logged_; }
    std::uint64_t suppressed() const { return suppressed_; }

private:
    struct Count {
        std::size_t full = 0;    // logged in full
        std::uint64_t more = 0;  // not logged in full
        std::string last;        // the last of those
    };
    void end_window();

    Timer timer_;
    std::map<std::string, Count, std::less<>> window_;
    Count others_;  // addresses past max_addresses
    std::size_t full_lines_ = 0;
    std::uint64_t logged_ = 0;
    std::uint64_t suppressed_ = 0;
};

}  // namespace secmsg::daemon
