// systemd notifications: READY=1, STATUS= (live counts, at most once a
// second and only when something changed, so an idle daemon stays asleep),
// RELOADING=1, STOPPING=1, and WATCHDOG=1 when WATCHDOG_USEC asks for it.
//
// The sd_notify protocol (one datagram to $NOTIFY_SOCKET) is spoken over a
// non-blocking socket: libsystemd's sd_notify() blocks when the manager's
// queue is full, which would stall the whole loop.  A state change that
// cannot be sent at once is retried on a timer; STATUS and WATCHDOG are
// simply sent again next time.  Without NOTIFY_SOCKET every call is a no-op.
#pragma once

#include "io/fd.hpp"
#include "io/reactor.hpp"

#include <deque>
#include <functional>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>

namespace secmsg::daemon {

class Notifier {
public:
    // `status` renders the STATUS= text when it is due.
    Notifier(Reactor& r, std::function<std::string()> status);

    void ready();
    void reloading();
    void stopping();
    // Something counted changed: send STATUS= within a second.
    void changed();

private:
    bool send_now(const std::string& s);
    void send_state(std::string s);  // retried until it leaves
    Fd sock_;
    sockaddr_un addr_{};
    socklen_t addr_len_ = 0;
    std::function<std::string()> status_;
    std::deque<std::string> pending_;
    Timer retry_timer_;
    Timer status_timer_;
    Timer watchdog_timer_;
    Clock::duration watchdog_interval_{};
};

}  // namespace secmsg::daemon
