// The process's standard error as a non-blocking stream of whole lines:
// the operational log and, with --record stderr, the record lines, in one
// queue so that no line is ever cut or interleaved with another.
//
// stderr is often shared with a parent (a pipe, a terminal), so its
// O_NONBLOCK flag is left alone: a pipe, FIFO or terminal is opened again
// through /proc/self/fd/2, which gives a file description of our own that
// may be non-blocking; a socket (systemd's journal stream) is written with
// MSG_DONTWAIT; a regular file never blocks.  Where none of that works
// (no /proc), writes block as they did before.
#pragma once

#include "record_queue.hpp"

namespace secmsg::daemon {

class StderrStream : public RecordQueue {
public:
    explicit StderrStream(const QueueLimits& limits = {});
    ~StderrStream() override;

    std::string_view name() const override { return "stderr"; }

    // Whether writes can say "would block" (false: the blocking fallback).
    bool non_blocking() const { return non_blocking_; }

protected:
    void encode(const MessageInfo& m, std::vector<std::uint8_t>& out) override;
    Push push(Entry& e, int& err) override;
    std::string failure_reason(int err) const override;
    int fd() const override { return fd_; }

private:
    int fd_ = 2;
    Fd own_;  // the re-opened description, when there is one
    bool socket_ = false;
    bool non_blocking_ = false;
};

// The one stream on fd 2, made on first use (by the first log line).
StderrStream& stderr_stream();

}  // namespace secmsg::daemon
