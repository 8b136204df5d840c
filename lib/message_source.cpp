// Message sources of the client: lines, whole input, fixed lists.
#include "message_source.hpp"

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <unistd.h>

namespace secmsg {

namespace {

constexpr std::size_t read_chunk = 64 * 1024;

// One read() of `fd` appended to `buf`; false at end of input.
bool read_some(int fd, std::vector<std::uint8_t>& buf) {
    const std::size_t old = buf.size();
    buf.resize(old + read_chunk);
    for (;;) {
        const ssize_t n = ::read(fd, buf.data() + old, read_chunk);
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
    const auto nl = std::find(begin + static_cast<std::ptrdiff_t>(scan_), buf_.end(),
                              std::uint8_t{'\n'});
    if (nl != buf_.end()) {
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
    if (!eof_) eof_ = !read_some(fd_, buf_);
}

MessageSource::Next ListSource::next(std::vector<std::uint8_t>& msg) {
    if (i_ >= messages_.size()) return Next::end;
    const std::string& m = messages_[i_++];
    msg.assign(m.begin(), m.end());
    return Next::message;
}

}  // namespace secmsg
