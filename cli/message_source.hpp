// Where the client's messages come from: lines of a file descriptor, all of
// it as one message, or a fixed list.  Sources never block the caller: they
// say when they need their fd to become readable.
#pragma once

#include "proto/protocol.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace secmsg {

// A message in the input is larger than the source's limit; what() says so
// in one line.  Nothing of that message was handed out.
class InputTooLarge : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class MessageSource {
public:
    virtual ~MessageSource() = default;

    enum class Next {
        message,  // `msg` holds the next message
        wait,     // nothing until fd() is readable; then call on_readable()
        end,      // no more messages
    };
    virtual Next next(std::vector<std::uint8_t>& msg) = 0;

    // The descriptor to poll for reading after next() returned wait.
    virtual int fd() const { return -1; }
    // Reads what is available from fd() (one read; blocks only as long as
    // a read after poll() can).  Throws std::system_error on a read error.
    virtual void on_readable() {}
};

// Each line of `fd` is one message, without its '\n'; a last line without
// '\n' is a message too.  Does not own `fd`.  A line longer than `limit`
// bytes makes on_readable() throw InputTooLarge as soon as that many bytes
// of it are buffered, so memory stays bounded whatever the input.
class LineSource : public MessageSource {
public:
    explicit LineSource(int fd, std::size_t limit = max_max_payload) : fd_(fd), limit_(limit) {}
    Next next(std::vector<std::uint8_t>& msg) override;
    int fd() const override { return fd_; }
    void on_readable() override;
    // True once end of input was read.
    bool at_eof() const { return eof_; }

private:
    [[noreturn]] void too_long() const;

    int fd_;
    std::size_t limit_;
    std::vector<std::uint8_t> buf_;
    std::size_t start_ = 0;  // first byte not yet handed out
    std::size_t scan_ = 0;   // bytes before this hold no '\n'
    bool eof_ = false;
};

// Everything `fd` holds, up to end of input, as one message (binary-safe).
// Does not own `fd`.  Input longer than `limit` bytes makes on_readable()
// throw InputTooLarge once limit + 1 bytes have been read: no more is read
// or kept.
class WholeSource : public MessageSource {
public:
    explicit WholeSource(int fd, std::size_t limit = max_max_payload) : fd_(fd), limit_(limit) {}
    Next next(std::vector<std::uint8_t>& msg) override;
    int fd() const override { return fd_; }
    void on_readable() override;

    // Reads to the end of input, waiting for it as long as it takes (so that
    // the input is known whole before anything is sent).  Throws
    // InputTooLarge or std::system_error as on_readable() does.
    void read_to_end();

private:
    int fd_;
    std::size_t limit_;
    std::vector<std::uint8_t> buf_;
    bool eof_ = false;
    bool sent_ = false;
};

// A fixed list of messages (secmsg -m).
class ListSource : public MessageSource {
public:
    explicit ListSource(std::vector<std::string> messages) : messages_(std::move(messages)) {}
    Next next(std::vector<std::uint8_t>& msg) override;

private:
    std::vector<std::string> messages_;
    std::size_t i_ = 0;
};

}  // namespace secmsg
