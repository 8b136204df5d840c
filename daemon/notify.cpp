// systemd notifications (see notify.hpp).
#include "notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace secmsg::daemon {

Notifier::Notifier(Reactor& r, std::function<std::string()> status)
    : enabled_(std::getenv("NOTIFY_SOCKET") != nullptr),
      status_(std::move(status)),
      status_timer_(r, [this] { send("STATUS=" + status_()); }),
      watchdog_timer_(r, [this] {
          send("WATCHDOG=1");
          watchdog_timer_.arm_in(watchdog_interval_);
      }) {
    std::uint64_t usec = 0;
    if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        watchdog_interval_ = std::chrono::microseconds(usec / 2);
        watchdog_timer_.arm_in(watchdog_interval_);
    }
}

void Notifier::send(const std::string& s) {
    if (enabled_) sd_notify(0, s.c_str());
}

void Notifier::ready() { send("READY=1\nSTATUS=" + status_()); }

void Notifier::reloading() { send("RELOADING=1"); }

void Notifier::stopping() { send("STOPPING=1\nSTATUS=shutting down: " + status_()); }

void Notifier::changed() {
    if (enabled_ && !status_timer_.armed()) status_timer_.arm_in(std::chrono::seconds(1));
}

}  // namespace secmsg::daemon
