// The edge-triggered event loop (see reactor.hpp).
#include "io/reactor.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <ctime>
#include <memory>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <system_error>
#include <unistd.h>

namespace secmsg {

namespace {

[[noreturn]] void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

Handler::~Handler() {
    if (revisit_owner_) revisit_owner_->forget(this);
}

Timer::Timer(Reactor& r, std::function<void()> cb) : r_(r), cb_(std::move(cb)) {}

Timer::~Timer() { cancel(); }

void Timer::arm_at(Clock::time_point when) {
    cancel();
    it_ = r_.timers_.emplace(when, this);
    armed_ = true;
}

void Timer::cancel() {
    if (!armed_) return;
    r_.timers_.erase(it_);
    armed_ = false;
}

// The timerfd's own handler: runs the expired timers.
class Reactor::TimerHandler : public Handler {
public:
    explicit TimerHandler(Reactor& r) : r_(r) {}
    void on_events(std::uint32_t) override { r_.fire_timers(); }

private:
    Reactor& r_;
};

Reactor::Reactor()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      timerfd_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) {
    if (!epoll_) throw_errno("epoll_create1");
    if (!timerfd_) throw_errno("timerfd_create");
    timer_handler_ = std::make_unique<TimerHandler>(*this);
    add(timerfd_.get(), EPOLLIN, timer_handler_.get());
}

Reactor::~Reactor() {
    for (auto* h : revisit_) h->revisit_owner_ = nullptr;
    for (auto& [when, t] : timers_) t->armed_ = false;
}

void Reactor::add(int fd, std::uint32_t events, Handler* h) {
    epoll_event ev{};
    ev.events = events | EPOLLET;
    ev.data.ptr = h;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl(ADD)");
}

void Reactor::remove(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void Reactor::revisit(Handler* h) {
    if (h->revisit_owner_) return;
    h->revisit_owner_ = this;
    revisit_.push_back(h);
}

void Reactor::forget(Handler* h) {
    if (h->revisit_owner_ != this) return;
    h->revisit_owner_ = nullptr;
    revisit_.erase(std::remove(revisit_.begin(), revisit_.end(), h), revisit_.end());
}

void Reactor::defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

void Reactor::update_timerfd() {
    auto next = timers_.empty() ? Clock::time_point::max() : timers_.begin()->first;
    if (next == timerfd_at_) return;
    timerfd_at_ = next;
    itimerspec its{};
    if (next != Clock::time_point::max()) {
        auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(next.time_since_epoch()).count();
        if (ns <= 0) ns = 1;
        its.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
        its.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
    }
    if (::timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &its, nullptr) != 0)
        throw_errno("timerfd_settime");
}

void Reactor::fire_timers() {
    std::uint64_t expirations = 0;
    while (::read(timerfd_.get(), &expirations, sizeof expirations) > 0) {}
    timerfd_at_ = Clock::time_point::max();  // re-armed before the next wait
    auto now = Clock::now();
    // A callback may arm or cancel any timer, itself included: take one at a time.
    while (!timers_.empty() && timers_.begin()->first <= now) {
        Timer* t = timers_.begin()->second;
        timers_.erase(timers_.begin());
        t->armed_ = false;
        t->cb_();
    }
}

void Reactor::pass() {
    ++passes_;
    update_timerfd();
    int timeout = revisit_.empty() && deferred_.empty() ? -1 : 0;
    epoll_event events[256];
    int n = ::epoll_wait(epoll_.get(), events, 256, timeout);
    if (n < 0) {
        if (errno == EINTR) return;
        throw_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i)
        static_cast<Handler*>(events[i].data.ptr)->on_events(events[i].events);

    // Those who stopped early on purpose.  A handler may re-queue itself for
    // the next pass; it is not called twice in this one.
    if (!revisit_.empty()) {
        std::vector<Handler*> now;
        now.swap(revisit_);
        for (std::size_t i = 0; i < now.size(); ++i) {
            Handler* h = now[i];
            if (!h) continue;
            h->revisit_owner_ = nullptr;
            // A handler called before may have destroyed... nothing: destruction
            // is deferred, so every pointer here is still valid.
            h->on_events(0);
        }
    }
    while (!deferred_.empty()) {
        std::vector<std::function<void()>> run;
        run.swap(deferred_);
        for (auto& fn : run) fn();
    }
}

void Reactor::run() {
    stopped_ = false;
    while (!stopped_) pass();
}

SignalWatcher::SignalWatcher(Reactor& r, std::initializer_list<int> signals,
                             std::function<void(int)> cb)
    : r_(r), fd_(make_signalfd(signals)), cb_(std::move(cb)) {
    r_.add(fd_.get(), EPOLLIN, this);
}

SignalWatcher::~SignalWatcher() { r_.remove(fd_.get()); }

void SignalWatcher::on_events(std::uint32_t) {
    signalfd_siginfo si{};
    while (::read(fd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si))
        cb_(static_cast<int>(si.ssi_signo));
}

Fd make_signalfd(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int s : signals) sigaddset(&set, s);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw_errno("sigprocmask");
    Fd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd) throw_errno("signalfd");
    return fd;
}

}  // namespace secmsg
