// The reactor through real fds: timers (timerfd), edge-triggered sockets and
// the revisit list, deferred actions, signals (signalfd).
#include "io/reactor.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace secmsg;
using namespace std::chrono_literals;

TEST_CASE("reactor: timers fire in deadline order; cancel and re-arm") {
    Reactor r;
    std::vector<int> order;
    Timer a(r, [&] { order.push_back(1); });
    Timer b(r, [&] { order.push_back(2); });
    Timer c(r, [&] { order.push_back(3); });
    Timer stop(r, [&] { r.stop(); });
    a.arm_in(30ms);
    b.arm_in(10ms);
    c.arm_in(20ms);
    c.cancel();
    b.arm_in(40ms);  // replaces its first deadline
    stop.arm_in(60ms);
    auto t0 = Clock::now();
    r.run();
    CHECK(order == std::vector<int>{1, 2});
    CHECK(Clock::now() - t0 >= 60ms);
    CHECK_FALSE(a.armed());
}

namespace {

// Reads one byte per call on purpose and asks to be revisited: with edge
// triggering, no new edge would come for the bytes left behind.
struct SlowReader : Handler {
    Reactor& r;
    int fd;
    std::string got;
    int calls = 0, revisits = 0;
    SlowReader(Reactor& r, int fd) : r(r), fd(fd) {}
    void on_events(std::uint32_t ev) override {
        ++calls;
        if (ev == 0) ++revisits;
        char ch;
        ssize_t n = ::read(fd, &ch, 1);
        if (n == 1) {
            got += ch;
            r.revisit(this);
        }
        if (got == "hello") r.stop();
    }
};

}  // namespace

TEST_CASE("reactor: edge-triggered input left behind is revisited without a new edge") {
    Reactor r;
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    SlowReader h(r, sv[0]);
    r.add(sv[0], EPOLLIN, &h);
    REQUIRE(::write(sv[1], "hello", 5) == 5);  // one edge for five bytes
    Timer guard(r, [&] { r.stop(); });
    guard.arm_in(2s);
    r.run();
    CHECK(h.got == "hello");
    CHECK(h.revisits >= 4);
    r.remove(sv[0]);
    ::close(sv[0]);
    ::close(sv[1]);
}

TEST_CASE("reactor: deferred actions run after the pass; a queued handler destroyed is forgotten") {
    Reactor r;
    std::vector<std::string> log;
    struct Noisy : Handler {
        std::vector<std::string>& log;
        explicit Noisy(std::vector<std::string>& l) : log(l) {}
        void on_events(std::uint32_t) override { log.push_back("revisited"); }
    };
    auto doomed = std::make_unique<Noisy>(log);
    Timer t(r, [&] {
        r.defer([&] { log.push_back("deferred"); });
        log.push_back("timer");
        r.revisit(doomed.get());
        doomed.reset();  // destroyed while queued: must not be called
    });
    Timer stop(r, [&] { r.stop(); });
    t.arm_in(1ms);
    stop.arm_in(20ms);
    r.run();
    CHECK(log == std::vector<std::string>{"timer", "deferred"});
}

TEST_CASE("reactor: signals arrive through the loop") {
    Reactor r;
    int got = 0;
    SignalWatcher w(r, {SIGUSR1}, [&](int s) {
        got = s;
        r.stop();
    });
    Timer send(r, [] { ::kill(::getpid(), SIGUSR1); });
    Timer guard(r, [&] { r.stop(); });
    send.arm_in(1ms);
    guard.arm_in(2s);
    r.run();
    CHECK(got == SIGUSR1);
}
