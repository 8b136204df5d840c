// The queue behind the journal and stderr recorders: entries written in
// order, each whole, by a subclass's push(); never a blocking call.
//
// An entry is a record (a message's journal entry or stderr line, with the
// connection waiting for it) or a log line (no one waits).  When push()
// would block, the entry waits at the head and the queue registers for
// EPOLLOUT; later records queue behind it up to a bound of bytes and
// entries, after which connections wait for room (has_room() false) with
// their input paused.  A record that has waited past its deadline is
// answered "not recorded" and leaves the queue, unless part of it was
// already written: then it is still finished (a line is never cut), but
// its connection has had its answer.
#pragma once

#include "io/fd.hpp"
#include "io/reactor.hpp"
#include "recorder.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace secmsg::daemon {

struct QueueLimits {
    std::size_t max_bytes = 8u << 20;  // queued record bytes before connections wait for room
    std::size_t max_entries = 1024;
    std::size_t max_log_bytes = 256u << 10;  // queued log lines before new ones are dropped
    std::chrono::milliseconds timeout = RecordOptions{}.timeout;  // --record-timeout
};

class RecordQueue : public Recorder, public Handler {
public:
    explicit RecordQueue(const QueueLimits& limits) : limits_(limits) {}
    ~RecordQueue() override;

    // Starts waiting on the reactor: EPOLLOUT of fd() (when it is a kind of
    // file epoll can watch) and the deadline timer.  Before attach() (and
    // after detach()) whatever would block simply stays queued.
    void attach(Reactor& r);
    void detach();

    bool has_room(RecordClient& c) override;
    RecordResult record(const MessageInfo& m, RecordClient& c, Clock::time_point since) override;
    void forget(RecordClient& c) override;
    void cap_deadlines(Clock::time_point when) override;
    RecordStats stats() const override;

    // EPOLLOUT (or a revisit): write what is queued.
    void on_events(std::uint32_t events) override;

    // Queues one log line (whole, newline included) and writes what it can.
    // False when the line was dropped (the log backlog is full); dropped
    // lines are counted and reported in a line of their own once there is
    // room again.
    bool write_line(std::string_view line);

    // How long a record may wait (--record-timeout), for records offered from now on.
    void set_timeout(std::chrono::milliseconds t) { limits_.timeout = t; }

    // Waits up to `bound` (poll(2)) for everything queued to be written:
    // for the last lines at exit, when no loop runs any more.
    void drain(std::chrono::milliseconds bound);

    // Log lines dropped since the last call, once there is room to say so
    // (0 until then).
    std::uint64_t take_dropped_lines();

protected:
    enum class Push { done, partial, would_block, failed };
    struct Entry {
        std::vector<std::uint8_t> bytes;
        std::size_t written = 0;         // bytes already out (partial writes)
        RecordClient* client = nullptr;  // who waits for it; null for log lines or once answered
        bool record = false;
        Clock::time_point deadline{};
        Fd aux;  // e.g. the memfd of a large journal entry
    };

    // Serialises one message into `out` (cleared by the caller).
    virtual void encode(const MessageInfo& m, std::vector<std::uint8_t>& out) = 0;
    // Writes (the rest of) one entry.  done: all of it is out; partial:
    // some more went out (call again once writable); would_block: nothing
    // went out; failed: `err` says why (errno).
    virtual Push push(Entry& e, int& err) = 0;
    // The reason given to the client for a failure with errno `err`.
    virtual std::string failure_reason(int err) const = 0;
    // The descriptor to wait on for EPOLLOUT, or -1.
    virtual int fd() const = 0;
    // Around a change of fd() (reconnecting): fd_closing() before the old
    // descriptor is closed, fd_opened() once the new one is there.
    void fd_closing();
    void fd_opened();

private:
    void flush();
    void complete(Entry& e, const RecordResult& outcome);
    void expire();
    void arm_deadline_timer();
    void wake_waiters();
    bool room() const;
    void set_blocked(bool blocked);

    QueueLimits limits_;
    Reactor* reactor_ = nullptr;
    std::unique_ptr<Timer> deadline_timer_;
    std::deque<Entry> queue_;
    std::size_t queued_record_bytes_ = 0;
    std::size_t queued_records_ = 0;
    std::size_t queued_log_bytes_ = 0;
    std::deque<RecordClient*> waiters_;
    std::vector<std::uint8_t> scratch_;
    std::uint64_t dropped_log_lines_ = 0;
    Clock::time_point deadline_cap_ = Clock::time_point::max();
    bool registered_ = false;
    bool flushing_ = false;
    // Would-block time: since when (while blocked), and the total so far.
    bool blocked_ = false;
    Clock::time_point blocked_since_{};
    Clock::duration paused_{};
    std::uint64_t recorded_ = 0;
    std::uint64_t not_recorded_ = 0;
};

}  // namespace secmsg::daemon
