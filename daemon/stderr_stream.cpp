// stderr as a non-blocking line stream (see stderr_stream.hpp).
#include "stderr_stream.hpp"

#include "io/write_all.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace secmsg::daemon {

StderrStream::StderrStream(const QueueLimits& limits) : RecordQueue(limits) {
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return;
    if (S_ISSOCK(st.st_mode)) {
        socket_ = true;
        non_blocking_ = true;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        own_.reset(
            ::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_APPEND));
        if (own_) {
            fd_ = own_.get();
            non_blocking_ = true;
        } else {
            // No /proc: fd 2 as it is (it may already be non-blocking).
            int fl = ::fcntl(STDERR_FILENO, F_GETFL);
            non_blocking_ = fl >= 0 && (fl & O_NONBLOCK);
        }
    }
}

StderrStream::~StderrStream() { detach(); }

void StderrStream::encode(const MessageInfo& m, std::vector<std::uint8_t>& out) {
    std::string line = "message conn=" + std::to_string(m.conn) + " id=" + std::string(m.id) +
                       " peer=" + std::string(m.peer);
    // Optional fields, each only when known (their values hold no spaces).
    if (!m.via.empty()) line += " via=" + std::string(m.via);
    if (!m.client.empty()) line += " client=" + escape_payload(m.client);
    if (!m.key.empty()) line += " key=" + std::string(m.key);
    line += " seq=" + std::to_string(m.seq) + " bytes=" + std::to_string(m.payload.size()) +
            " sha256=" + hex_digest(*m.sha256) + " text=\"" + escape_payload(m.payload) + "\"\n";
    out.assign(line.begin(), line.end());
}

RecordQueue::Push StderrStream::push(Entry& e, int& err) {
    const auto rest = std::span<const std::uint8_t>(e.bytes).subspan(e.written);
    const Written w =
        socket_ ? send_all(fd_, rest, MSG_DONTWAIT | MSG_NOSIGNAL) : write_all(fd_, rest);
    e.written += w.bytes;
    if (w.done()) return Push::done;
    if (w.error == EAGAIN || w.error == EWOULDBLOCK)
        return w.bytes > 0 ? Push::partial : Push::would_block;
    err = w.error;
    return Push::failed;
}

std::string StderrStream::failure_reason(int err) const {
    return std::string("stderr: ") + std::strerror(err);
}

StderrStream& stderr_stream() {
    static StderrStream s;
    return s;
}

}  // namespace secmsg::daemon
