// systemd notifications (see notify.hpp).
#include "notify.hpp"

#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace secmsg::daemon {

Notifier::Notifier(Reactor& r, std::function<std::string()> status)
    : status_(std::move(status)),
      retry_timer_(r,
                   [this] {
                       while (!pending_.empty() && send_now(pending_.front())) pending_.pop_front();
                       if (!pending_.empty()) retry_timer_.arm_in(std::chrono::milliseconds(100));
                   }),
      status_timer_(r, [this] { send_now("STATUS=" + status_()); }),
      watchdog_timer_(r, [this] {
          send_now("WATCHDOG=1");
          watchdog_timer_.arm_in(watchdog_interval_);
      }) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@') || std::strlen(path) >= sizeof addr_.sun_path)
        return;
    addr_.sun_family = AF_UNIX;
    std::memcpy(addr_.sun_path, path, std::strlen(path));
    if (path[0] == '@') addr_.sun_path[0] = '\0';  // abstract namespace
    addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + std::strlen(path) +
                                       (path[0] == '@' ? 0 : 1));
    sock_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    std::uint64_t usec = 0;
    if (sock_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        watchdog_interval_ = std::chrono::microseconds(usec / 2);
        watchdog_timer_.arm_in(watchdog_interval_);
    }
}

// False only when the message should be retried (the queue is full).
bool Notifier::send_now(const std::string& s) {
    if (!sock_) return true;
    ssize_t n = ::sendto(sock_.get(), s.data(), s.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                         reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

void Notifier::send_state(std::string s) {
    if (!sock_) return;
    if (pending_.empty() && send_now(s)) return;
    pending_.push_back(std::move(s));
    if (!retry_timer_.armed()) retry_timer_.arm_in(std::chrono::milliseconds(100));
}

void Notifier::ready() { send_state("READY=1\nSTATUS=" + status_()); }

void Notifier::reloading() { send_state("RELOADING=1"); }

void Notifier::stopping() { send_state("STOPPING=1\nSTATUS=shutting down: " + status_()); }

void Notifier::changed() {
    if (sock_ && !status_timer_.armed()) status_timer_.arm_in(std::chrono::seconds(1));
}

}  // namespace secmsg::daemon
