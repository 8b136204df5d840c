// The recorders' queue (see record_queue.hpp).
#include "record_queue.hpp"

#include <algorithm>
#include <cerrno>
#include <poll.h>
#include <sys/epoll.h>
#include <system_error>
#include <utility>

namespace secmsg::daemon {

RecordQueue::~RecordQueue() { detach(); }

void RecordQueue::attach(Reactor& r) {
    reactor_ = &r;
    deadline_timer_ = std::make_unique<Timer>(r, [this] { expire(); });
    fd_opened();
    arm_deadline_timer();
    if (!queue_.empty()) r.revisit(this);
}

void RecordQueue::detach() {
    if (!reactor_) return;
    fd_closing();
    reactor_->forget(this);
    deadline_timer_.reset();
    reactor_ = nullptr;
}

void RecordQueue::fd_closing() {
    if (registered_) reactor_->remove(fd());
    registered_ = false;
}

void RecordQueue::fd_opened() {
    if (!reactor_ || registered_ || fd() < 0) return;
    try {
        reactor_->add(fd(), EPOLLOUT, this);
        registered_ = true;
    } catch (const std::system_error&) {
        // A regular file or /dev/null: epoll cannot watch it, and writing
        // to it never says "would block".
    }
}

bool RecordQueue::room() const {
    return queued_record_bytes_ < limits_.max_bytes && queued_records_ < limits_.max_entries;
}

bool RecordQueue::has_room(RecordClient& c) {
    if (room()) return true;
    if (std::find(waiters_.begin(), waiters_.end(), &c) == waiters_.end()) waiters_.push_back(&c);
    return false;
}

RecordResult RecordQueue::record(const MessageInfo& m, RecordClient& c, Clock::time_point since) {
    const auto now = Clock::now();
    const auto deadline = std::min(since + limits_.timeout, deadline_cap_);
    if (deadline <= now) {
        ++not_recorded_;
        return {RecordResult::Status::not_recorded,
                std::string(name()) + ": waited too long for room (record timeout)"};
    }
    scratch_.clear();
    encode(m, scratch_);
    Entry e;
    e.bytes.swap(scratch_);
    e.record = true;
    e.deadline = deadline;
    if (queue_.empty()) {
        int err = 0;
        switch (push(e, err)) {
        case Push::done:
            ++recorded_;
            scratch_.swap(e.bytes);  // keep the capacity for the next one
            return RecordResult::recorded();
        case Push::failed:
            ++not_recorded_;
            scratch_.swap(e.bytes);
            return RecordResult::not_recorded_because(failure_reason(err));
        case Push::partial:
        case Push::would_block: set_blocked(true); break;
        }
    }
    e.client = &c;
    queued_record_bytes_ += e.bytes.size();
    ++queued_records_;
    queue_.push_back(std::move(e));
    arm_deadline_timer();
    return {RecordResult::Status::queued, {}};
}

bool RecordQueue::write_line(std::string_view line) {
    Entry e;
    e.bytes.assign(line.begin(), line.end());
    if (queue_.empty()) {
        int err = 0;
        switch (push(e, err)) {
        case Push::done:
        case Push::failed: return true;  // nowhere to say that the log failed
        case Push::partial:
        case Push::would_block: set_blocked(true); break;
        }
    } else if (queued_log_bytes_ + line.size() > limits_.max_log_bytes) {
        ++dropped_log_lines_;
        return false;
    }
    queued_log_bytes_ += e.bytes.size();
    queue_.push_back(std::move(e));
    return true;
}

std::uint64_t RecordQueue::take_dropped_lines() {
    if (queued_log_bytes_ > limits_.max_log_bytes / 2) return 0;  // not yet: no room to say it
    return std::exchange(dropped_log_lines_, 0);
}

void RecordQueue::forget(RecordClient& c) {
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), &c), waiters_.end());
    for (auto& e : queue_)
        if (e.client == &c) e.client = nullptr;  // still written: it was received whole
}

void RecordQueue::cap_deadlines(Clock::time_point when) {
    deadline_cap_ = when;
    for (auto& e : queue_) e.deadline = std::min(e.deadline, when);
    arm_deadline_timer();
}

RecordStats RecordQueue::stats() const {
    RecordStats s;
    s.recorded = recorded_;
    s.not_recorded = not_recorded_;
    s.queued = queued_records_;
    s.waiting = waiters_.size();
    s.paused = paused_ + (blocked_ ? Clock::now() - blocked_since_ : Clock::duration{});
    return s;
}

void RecordQueue::on_events(std::uint32_t) { flush(); }

void RecordQueue::set_blocked(bool blocked) {
    if (blocked == blocked_) return;
    blocked_ = blocked;
    if (blocked)
        blocked_since_ = Clock::now();
    else
        paused_ += Clock::now() - blocked_since_;
}

// Writes from the head until something would block; every entry leaves
// the queue whole (or failed), in order.
void RecordQueue::flush() {
    if (flushing_) return;
    flushing_ = true;
    while (!queue_.empty()) {
        Entry& e = queue_.front();
        int err = 0;
        const Push p = push(e, err);
        if (p == Push::partial || p == Push::would_block) break;
        complete(e, p == Push::done ? RecordResult::recorded()
                                    : RecordResult::not_recorded_because(failure_reason(err)));
    }
    set_blocked(!queue_.empty());
    arm_deadline_timer();
    flushing_ = false;
    wake_waiters();
}

// Takes the head entry off the queue and tells its client.
void RecordQueue::complete(Entry& e, const RecordResult& outcome) {
    RecordClient* client = e.client;
    if (e.record) {
        queued_record_bytes_ -= e.bytes.size();
        --queued_records_;
        if (client)
            ++(outcome.status == RecordResult::Status::recorded ? recorded_ : not_recorded_);
    } else {
        queued_log_bytes_ -= e.bytes.size();
    }
    queue_.pop_front();
    if (client) client->record_done(outcome);
}

// Records past their deadline: answered "not recorded".  One that is
// partly written stays to be finished; the others leave the queue.
void RecordQueue::expire() {
    const auto now = Clock::now();
    const auto late = RecordResult::not_recorded_because(
        std::string(name()) + ": not written within the record timeout (" +
        std::to_string(limits_.timeout.count()) + " ms)");
    std::vector<RecordClient*> answered;
    for (auto it = queue_.begin(); it != queue_.end();) {
        if (!it->record || !it->client || it->deadline > now) {
            ++it;
            continue;
        }
        answered.push_back(it->client);
        it->client = nullptr;
        ++not_recorded_;
        if (it->written > 0) {
            ++it;
            continue;
        }
        queued_record_bytes_ -= it->bytes.size();
        --queued_records_;
        it = queue_.erase(it);
    }
    if (queue_.empty()) set_blocked(false);
    arm_deadline_timer();
    for (auto* c : answered) c->record_done(late);
    wake_waiters();
}

void RecordQueue::arm_deadline_timer() {
    if (!deadline_timer_) return;
    auto next = Clock::time_point::max();
    for (const auto& e : queue_)
        if (e.record && e.client) next = std::min(next, e.deadline);
    if (next == Clock::time_point::max())
        deadline_timer_->cancel();
    else if (!deadline_timer_->armed() || deadline_timer_->deadline() != next)
        deadline_timer_->arm_at(next);
}

// Every waiting connection offers again (through the loop's revisit list:
// the callback only marks it); those that find no room wait again, in order.
void RecordQueue::wake_waiters() {
    if (!room()) return;
    auto waiting = std::move(waiters_);
    waiters_.clear();
    for (auto* c : waiting) c->record_room();
}

void RecordQueue::drain(std::chrono::milliseconds bound) {
    const auto until = Clock::now() + bound;
    for (;;) {
        flush();
        if (queue_.empty() || fd() < 0) return;
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        if (left.count() <= 0) return;
        pollfd p{fd(), POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return;
    }
}

}  // namespace secmsg::daemon
