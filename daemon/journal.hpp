// Recording to the systemd journal over journald's native protocol
// (systemd.io/JOURNAL_NATIVE_PROTOCOL), on the daemon's own non-blocking
// AF_UNIX datagram socket, connected to journald's socket and watched by
// the loop.  libsystemd's sd_journal_sendv() is not used: it blocks when
// journald's queue is full, and it reports success when the socket is gone.
//
// One entry is one datagram of fields.  An entry too large for a datagram
// goes in a sealed memfd passed with SCM_RIGHTS, as the protocol says.
// Would-block waits in the queue (record_queue.hpp); any other error is a
// failure of that entry, and the socket is connected again (at most every
// reconnect_interval) for the next one.
#pragma once

#include "record_queue.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace secmsg::daemon {

namespace journal {

// Appends one field: "NAME=value\n" when the value has no newline, else
// the binary-safe form "NAME\n", the value's length as 64-bit little
// endian, the value, "\n".
void append_field(std::vector<std::uint8_t>& out, std::string_view name,
                  std::span<const std::uint8_t> value);
void append_field(std::vector<std::uint8_t>& out, std::string_view name, std::string_view value);
// Always the binary-safe form (for payloads of any bytes).
void append_binary_field(std::vector<std::uint8_t>& out, std::string_view name,
                         std::span<const std::uint8_t> value);

// The native socket of a journal namespace; "" is the default journal.
// Throws std::invalid_argument for a name that cannot be a namespace.
std::string socket_path(const std::string& ns);

}  // namespace journal

class JournalRecorder : public RecordQueue {
public:
    // Connects to `socket_path`.  Throws std::system_error (with the path)
    // when journald's socket does not accept the connection.
    JournalRecorder(std::string socket_path, const QueueLimits& limits);
    ~JournalRecorder() override;

    std::string_view name() const override { return "journal"; }
    const std::string& socket_path() const { return path_; }

    static constexpr auto reconnect_interval = std::chrono::milliseconds(200);

protected:
    void encode(const MessageInfo& m, std::vector<std::uint8_t>& out) override;
    Push push(Entry& e, int& err) override;
    std::string failure_reason(int err) const override;
    int fd() const override { return sock_ ? sock_.get() : -1; }

private:
    bool connect_now(int& err);
    void disconnect();
    Push send_memfd(Entry& e, int& err);

    std::string path_;
    Fd sock_;
    Clock::time_point last_attempt_{};
    std::size_t datagram_limit_ = 0;  // entries above it go through a memfd (learned from EMSGSIZE)
};

}  // namespace secmsg::daemon
