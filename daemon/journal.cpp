// journald's native protocol (see journal.hpp).
#include "journal.hpp"

#include "io/write_all.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>

namespace secmsg::daemon {

namespace journal {

void append_binary_field(std::vector<std::uint8_t>& out, std::string_view name,
                         std::span<const std::uint8_t> value) {
    out.insert(out.end(), name.begin(), name.end());
    out.push_back('\n');
    std::uint64_t n = value.size();
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
    out.insert(out.end(), value.begin(), value.end());
    out.push_back('\n');
}

void append_field(std::vector<std::uint8_t>& out, std::string_view name,
                  std::span<const std::uint8_t> value) {
    if (std::find(value.begin(), value.end(), '\n') != value.end()) {
        append_binary_field(out, name, value);
        return;
    }
    out.insert(out.end(), name.begin(), name.end());
    out.push_back('=');
    out.insert(out.end(), value.begin(), value.end());
    out.push_back('\n');
}

void append_field(std::vector<std::uint8_t>& out, std::string_view name, std::string_view value) {
    append_field(out, name,
                 std::span(reinterpret_cast<const std::uint8_t*>(value.data()), value.size()));
}

std::string socket_path(const std::string& ns) {
    if (ns.empty()) return "/run/systemd/journal/socket";
    if (ns.size() > 64 ||
        ns.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789_-.") != std::string::npos ||
        ns[0] == '.')
        throw std::invalid_argument(
            "--journal-namespace: '" + ns +
            "' is not a journal namespace name (letters, digits, '_', '-', '.')");
    return "/run/systemd/journal." + ns + "/socket";
}

}  // namespace journal

JournalRecorder::JournalRecorder(std::string socket_path, const QueueLimits& limits)
    : RecordQueue(limits), path_(std::move(socket_path)) {
    int err = 0;
    if (!connect_now(err))
        throw std::system_error(err, std::generic_category(), "journal socket " + path_);
}

JournalRecorder::~JournalRecorder() { detach(); }

bool JournalRecorder::connect_now(int& err) {
    last_attempt_ = Clock::now();
    sockaddr_un addr{};
    if (path_.size() >= sizeof addr.sun_path) {
        err = ENAMETOOLONG;
        return false;
    }
    Fd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) {
        err = errno;
        return false;
    }
    // A send buffer smaller than journald's queue (net.unix.max_dgram_qlen
    // is 512 under systemd: about 650 KiB of small entries), so that it is
    // this buffer that fills: the kernel then reports room again (EPOLLOUT)
    // once three quarters of it are free, and the loop writes a batch.  With
    // a larger buffer journald's queue fills first, and journald wakes us
    // for every entry it reads, which costs it CPU it would spend on entries
    // (tests/bench_journal.py).  The kernel doubles the value; entries above
    // the resulting 256 KiB go through a memfd.
    int sndbuf = 128 << 10;
    ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        err = errno;
        return false;
    }
    sock_ = std::move(s);
    fd_opened();
    return true;
}

void JournalRecorder::disconnect() {
    if (!sock_) return;
    fd_closing();
    sock_.reset();
}

void JournalRecorder::encode(const MessageInfo& m, std::vector<std::uint8_t>& out) {
    using journal::append_field;
    append_field(out, "MESSAGE", escape_payload(m.payload, 200));
    journal::append_binary_field(out, "SECMSG_PAYLOAD", m.payload);
    append_field(out, "SECMSG_SHA256", hex_digest(*m.sha256));
    append_field(out, "SECMSG_BYTES", std::to_string(m.payload.size()));
    append_field(out, "SECMSG_PEER", m.peer);
    append_field(out, "SECMSG_CONN", std::to_string(m.conn));
    append_field(out, "SECMSG_SEQ", std::to_string(m.seq));
    append_field(out, "SECMSG_ID", m.id);
    if (!m.via.empty()) append_field(out, "SECMSG_VIA", m.via);
    if (!m.key.empty()) append_field(out, "SECMSG_KEY", m.key);
    if (!m.client.empty()) append_field(out, "SECMSG_CLIENT", m.client);
    if (!m.client_pin.empty()) append_field(out, "SECMSG_CLIENT_PIN", m.client_pin);
    append_field(out, "MESSAGE_ID", message_id);
    append_field(out, "PRIORITY", "6");
    append_field(out, "SYSLOG_IDENTIFIER", "secmsgd");
}

RecordQueue::Push JournalRecorder::push(Entry& e, int& err) {
    if (!sock_) {
        // Reconnect, but not more often than reconnect_interval.
        if (Clock::now() - last_attempt_ < reconnect_interval) {
            err = ENOTCONN;
            return Push::failed;
        }
        if (!connect_now(err)) return Push::failed;
    }
    if (e.aux || (datagram_limit_ && e.bytes.size() > datagram_limit_)) return send_memfd(e, err);
    for (;;) {
        ssize_t n =
            ::send(sock_.get(), e.bytes.data(), e.bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) return Push::done;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Push::would_block;
        if (errno == EMSGSIZE || errno == ENOBUFS) {
            datagram_limit_ = e.bytes.size() - 1;
            return send_memfd(e, err);
        }
        err = errno;
        disconnect();  // ECONNREFUSED (journald gone), EPERM, ...: connect again next time
        return Push::failed;
    }
}

// The entry in a sealed memfd, passed with SCM_RIGHTS in an empty datagram.
// The memfd is kept in the entry, so a retry after would-block sends the
// same one.
RecordQueue::Push JournalRecorder::send_memfd(Entry& e, int& err) {
    if (!e.aux) {
        Fd mfd(::memfd_create("secmsgd-journal-entry", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        if (!mfd) {
            err = errno;
            return Push::failed;
        }
        if (const Written w = write_all(mfd.get(), e.bytes); !w.done()) {
            err = w.error;
            return Push::failed;
        }
        if (::fcntl(mfd.get(), F_ADD_SEALS,
                    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
            err = errno;
            return Push::failed;
        }
        e.aux = std::move(mfd);
    }
    union {
        cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control{};
    msghdr mh{};
    mh.msg_control = &control;
    mh.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    const int fd = e.aux.get();
    std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    for (;;) {
        if (::sendmsg(sock_.get(), &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
            e.aux.reset();
            return Push::done;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Push::would_block;
        err = errno;
        disconnect();
        return Push::failed;
    }
}

std::string JournalRecorder::failure_reason(int err) const {
    return "journal (" + path_ + "): " + std::strerror(err);
}

}  // namespace secmsg::daemon
