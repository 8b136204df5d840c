// Rate-limited lines about unauthenticated connections (see failure_log.hpp).
#include "failure_log.hpp"

#include "io/net.hpp"
#include "log.hpp"

namespace secmsg::daemon {

FailureLog::FailureLog(Reactor& r) : timer_(r, [this] { end_window(); }) {}

void FailureLog::report(std::string_view peer, const std::string& line) {
    if (!timer_.armed()) timer_.arm_in(window);
    const auto addr = net::host_of(peer);
    auto it = window_.find(addr);
    if (it == window_.end()) {
        if (window_.size() >= max_addresses) {
            ++others_.more;
            others_.last = line;
            ++suppressed_;
            return;
        }
        it = window_.emplace(std::string(addr), Count{}).first;
    }
    if (it->second.full < max_per_address && full_lines_ < max_full_lines) {
        ++it->second.full;
        ++full_lines_;
        ++logged_;
        log::info(line);
        return;
    }
    ++it->second.more;
    it->second.last = line;
    ++suppressed_;
}

void FailureLog::end_window() {
    const auto secs = std::to_string(std::chrono::seconds(window).count());
    for (const auto& [addr, c] : window_) {
        if (c.more == 0) continue;
        log::info(std::to_string(c.more) + " more unauthenticated connection(s) from " + addr +
                  " in the last " + secs + " s (last: " + c.last + ")");
    }
    if (others_.more > 0)
        log::info(std::to_string(others_.more) +
                  " unauthenticated connection(s) from further addresses in the last " + secs +
                  " s (last: " + others_.last + ")");
    const bool busy = !window_.empty();
    window_.clear();
    others_ = {};
    full_lines_ = 0;
    if (busy) timer_.arm_in(window);  // the next window starts now
}

}  // namespace secmsg::daemon
