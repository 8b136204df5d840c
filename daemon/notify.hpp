// systemd notifications: READY=1, STATUS= (live counts, at most once a
// second and only when something changed, so an idle daemon stays asleep),
// RELOADING=1, STOPPING=1, and WATCHDOG=1 when WATCHDOG_USEC asks for it.
// Without NOTIFY_SOCKET every call is a no-op.
#pragma once

#include "reactor.hpp"

#include <functional>
#include <string>

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
    void send(const std::string& s);
    bool enabled_;
    std::function<std::string()> status_;
    Timer status_timer_;
    Timer watchdog_timer_;
    Clock::duration watchdog_interval_{};
};

}  // namespace secmsg::daemon
