// Message sources of the client: lines, whole input, fixed lists.
#include "message_source.hpp"

#include <algorithm>
#include <cerrno>
#include <poll.h>
#include <system_error>
#include <unistd.h>

namespace secmsg {

namespace {

constexpr std::size_t read_chunk = 64 * 1024;

// One read() of `fd` (at most `most` bytes) appended to `buf`; false at end
// of input.
bool read_some(int fd, std::vector<std::uint8_t>& buf, std::size_t most = read_chunk) {
    const std::size_t old = buf.size();
    most = std::min(most, read_chunk);
    buf.resize(old + most);
    for (;;) {
        const ssize_t n = ::read(fd, buf.data() + old, most);
        if (n >= 0) {
            buf.resize(old + static_cast<std::size_t>(n));
            return n > 0;
        }
        if (errno == EINTR) continue;
        buf.resize(old);
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        throw std::system_error(errno, std::generic_category(), "cannot read the input");
    }
}

}  // namespace

MessageSource::Next LineSource::next(std::vector<std::uint8_t>& msg) {
    const auto begin = buf_.begin();
    const auto nl =
        std::find(begin + static_cast<std::ptrdiff_t>(scan_), buf_.end(), std::uint8_t{'\n'});
    if (nl != buf_.end()) {
        if (static_cast<std::size_t>(nl - begin) - start_ > limit_) too_long();
        msg.assign(begin + static_cast<std::ptrdiff_t>(start_), nl);
        start_ = scan_ = static_cast<std::size_t>(nl - begin) + 1;
        return Next::message;
    }
    scan_ = buf_.size();
    if (!eof_) return Next::wait;
    if (start_ < buf_.size()) {
        msg.assign(begin + static_cast<std::ptrdiff_t>(start_), buf_.end());
        start_ = scan_ = buf_.size();
        return Next::message;
    }
    return Next::end;
}

void LineSource::on_readable() {
    if (eof_) return;
    // Drop what was handed out before growing the buffer.
    if (start_ > 0) {
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(start_));
        scan_ -= start_;
        start_ = 0;
    }
    eof_ = !read_some(fd_, buf_);
    // A line that cannot end within the limit is refused now, not buffered on.
    if (buf_.size() - start_ > limit_ &&
        std::find(buf_.begin() + static_cast<std::ptrdiff_t>(scan_), buf_.end(),
                  std::uint8_t{'\n'}) == buf_.end())
        too_long();
}

void LineSource::too_long() const {
    throw InputTooLarge("a line is longer than " + std::to_string(limit_) +
                        " bytes, the largest message there can be");
}

MessageSource::Next WholeSource::next(std::vector<std::uint8_t>& msg) {
    if (sent_) return Next::end;
    if (!eof_) return Next::wait;
    msg = std::move(buf_);
    buf_.clear();
    sent_ = true;
    return Next::message;
}

void WholeSource::on_readable() {
    if (eof_) return;
    // The first read makes room for the largest acceptable input at once: no
    // copies as it grows, and untouched pages cost no memory.
    if (buf_.capacity() == 0) buf_.reserve(std::min<std::size_t>(limit_ + 1, 1u << 30));
    // Never more than limit + 1 bytes: one too many is enough to refuse.
    eof_ = !read_some(fd_, buf_, limit_ + 1 - buf_.size());
    if (buf_.size() > limit_) {
        std::vector<std::uint8_t>().swap(buf_);
        throw InputTooLarge("the input is larger than " + std::to_string(limit_) +
                            " bytes, the largest message there can be");
    }
}

void WholeSource::read_to_end() {
    while (!eof_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "cannot read the input");
        on_readable();
    }
}

MessageSource::Next ListSource::next(std::vector<std::uint8_t>& msg) {
    if (i_ >= messages_.size()) return Next::end;
    const std::string& m = messages_[i_++];
    msg.assign(m.begin(), m.end());
    return Next::message;
}

}  // namespace secmsg
