// The event loop: one thread, one epoll instance, edge-triggered.  Timers
// (one timerfd under an ordered set of deadlines) and signals (signalfd) are
// file descriptors on the same epoll, so an idle loop sleeps in epoll_wait.
//
// A loop pass: wait (without sleeping when some handler asked to be
// revisited), dispatch the ready events, call every handler on the revisit
// list once, then run the deferred actions (closes).  Knows nothing of TLS
// or frames.
#pragma once

#include "io/fd.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <vector>

namespace secmsg {

using Clock = std::chrono::steady_clock;

class Reactor;

// Something the reactor calls back: a socket, a listener, the signal fd.
class Handler {
public:
    Handler() = default;
    virtual ~Handler();
    Handler(const Handler&) = delete;
    Handler& operator=(const Handler&) = delete;

    // Called with epoll's event bits, or with 0 when the handler asked to be
    // revisited (it stopped early on purpose and no new edge will come).
    virtual void on_events(std::uint32_t events) = 0;

private:
    friend class Reactor;
    Reactor* revisit_owner_ = nullptr;  // set while on a revisit list
};

// A one-shot timer on a reactor.  Re-arming replaces the deadline.  The
// callback runs in the loop thread; destroying the timer cancels it.
class Timer {
public:
    Timer(Reactor& r, std::function<void()> cb);
    ~Timer();
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    void arm_at(Clock::time_point when);
    void arm_in(Clock::duration d) { arm_at(Clock::now() + d); }
    void cancel();
    bool armed() const { return armed_; }
    // When it fires; Clock::time_point::max() (never) while unarmed.
    Clock::time_point deadline() const { return armed_ ? it_->first : Clock::time_point::max(); }

private:
    friend class Reactor;
    Reactor& r_;
    std::function<void()> cb_;
    std::multimap<Clock::time_point, Timer*>::iterator it_;
    bool armed_ = false;
};

class Reactor {
public:
    // Creates the epoll instance and the timerfd; throws std::system_error.
    Reactor();
    ~Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    // Registers `fd` for `events` (EPOLLET is added) with its handler, which
    // must outlive the registration.  Throws std::system_error.
    //
    // A registered handler is destroyed only in an action given to defer(),
    // after remove(): never from a callback, its own or another's, since
    // the rest of the pass may still call it (its ready events, the revisit
    // list).  So a handler that closes itself asks its owner, which defers
    // the destruction to the end of the pass.
    void add(int fd, std::uint32_t events, Handler* h);
    // Unregisters (before the fd is closed).  Errors are ignored.
    void remove(int fd);

    // Calls h->on_events(0) in this loop pass (after the ready events), and
    // makes the next wait non-sleeping.  Once per pass, however often asked.
    void revisit(Handler* h);
    // Takes h off the revisit list (its destructor does this too).
    void forget(Handler* h);

    // Runs fn at the end of the current pass (after every handler of this
    // pass ran): where a handler's own close happens.
    void defer(std::function<void()> fn);

    // Loops until stop() is called.  Throws std::system_error if epoll fails.
    void run();
    // Makes run() return after the current pass.
    void stop() { stopped_ = true; }

    // Number of passes so far (for tests and statistics).
    std::uint64_t passes() const { return passes_; }

private:
    friend class Timer;
    class TimerHandler;
    void pass();
    void fire_timers();
    void update_timerfd();

    Fd epoll_;
    Fd timerfd_;
    std::unique_ptr<Handler> timer_handler_;
    std::multimap<Clock::time_point, Timer*> timers_;
    Clock::time_point timerfd_at_ = Clock::time_point::max();
    std::vector<Handler*> revisit_;
    std::vector<std::function<void()>> deferred_;
    bool stopped_ = false;
    std::uint64_t passes_ = 0;
};

// Delivers signals (read from a signalfd) to a callback in the loop thread.
class SignalWatcher : public Handler {
public:
    // Blocks `signals` and registers the signalfd.  Throws std::system_error.
    SignalWatcher(Reactor& r, std::initializer_list<int> signals, std::function<void(int)> cb);
    ~SignalWatcher() override;
    void on_events(std::uint32_t events) override;

private:
    Reactor& r_;
    Fd fd_;
    std::function<void(int)> cb_;
};

// Blocks `signals` for the process and returns a non-blocking signalfd that
// reads them.  Throws std::system_error.
Fd make_signalfd(std::initializer_list<int> signals);

}  // namespace secmsg
