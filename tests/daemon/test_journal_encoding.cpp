// journald's native protocol as secmsgd writes it: the field encodings
// (known answers), the namespace socket paths, and whole entries as a
// datagram socket standing in for journald receives them (a real AF_UNIX
// socket bound in a temporary directory), including the sealed-memfd path
// for an entry too large for one datagram.
#include "datagram_listener.hpp"
#include "journal.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <fcntl.h>
#include <map>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace secmsg;
using namespace secmsg::daemon;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes(std::string_view s) { return {s.begin(), s.end()}; }
std::string text(const Bytes& b) { return {b.begin(), b.end()}; }

// An entry decoded the way the protocol describes it (written here from
// systemd.io/JOURNAL_NATIVE_PROTOCOL, not from journal.cpp): "NAME=value\n",
// or "NAME\n" + 64-bit little-endian length + value + "\n".
std::map<std::string, Bytes> decode(const Bytes& d) {
    std::map<std::string, Bytes> out;
    std::size_t i = 0;
    while (i < d.size()) {
        std::size_t nl = i;
        while (nl < d.size() && d[nl] != '\n' && d[nl] != '=') ++nl;
        REQUIRE(nl < d.size());
        std::string name(d.begin() + i, d.begin() + nl);
        if (d[nl] == '=') {
            std::size_t end = nl + 1;
            while (end < d.size() && d[end] != '\n') ++end;
            REQUIRE(end < d.size());
            out[name] = Bytes(d.begin() + nl + 1, d.begin() + end);
            i = end + 1;
        } else {
            REQUIRE(nl + 9 <= d.size());
            std::uint64_t n = 0;
            for (int k = 7; k >= 0; --k) n = n << 8 | d[nl + 1 + k];
            REQUIRE(nl + 9 + n + 1 <= d.size());
            out[name] = Bytes(d.begin() + nl + 9, d.begin() + nl + 9 + n);
            REQUIRE(d[nl + 9 + n] == '\n');
            i = nl + 9 + n + 1;
        }
    }
    return out;
}

// Where journald would listen, and what it would receive.
struct FakeJournalSocket : test::DatagramListener {
    // One datagram (and the fd passed with it, if any), or nothing within 1 s.
    Bytes receive(Fd* passed = nullptr) {
        pollfd p{sock.get(), POLLIN, 0};
        if (::poll(&p, 1, 1000) != 1) return {};
        Bytes buf(1 << 20);
        union {
            cmsghdr h;
            char space[CMSG_SPACE(sizeof(int))];
        } control{};
        iovec iov{buf.data(), buf.size()};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = &control;
        mh.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(sock.get(), &mh, MSG_CMSG_CLOEXEC);
        if (n < 0) return {};
        buf.resize(static_cast<std::size_t>(n));
        for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && passed) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
                passed->reset(fd);
            }
        return buf;
    }
};

// The client side of a record: answers are not expected here (every entry
// is taken at once), so any callback is a failure.
struct NoCallbacks : RecordClient {
    void record_done(const RecordResult& outcome) override {
        FAIL("record_done: " << outcome.reason);
    }
    void record_room() override { FAIL("record_room"); }
};

}  // namespace

TEST_CASE("journal encoding: a text field is NAME=value and a newline line") {
    Bytes out;
    journal::append_field(out, "SECMSG_SEQ", "42");
    journal::append_field(out, "EMPTY", "");
    CHECK(text(out) == "SECMSG_SEQ=42\nEMPTY=\n");
}

TEST_CASE(
    "journal encoding: a binary field is NAME, newline, 64-bit little-endian length, value, "
    "newline") {
    Bytes value(0x0102, 'x');
    value[0] = 0;
    value[1] = '\n';
    Bytes out;
    journal::append_binary_field(out, "SECMSG_PAYLOAD", value);
    Bytes want = bytes("SECMSG_PAYLOAD\n");
    for (std::uint8_t b : {0x02, 0x01, 0, 0, 0, 0, 0, 0}) want.push_back(b);
    want.insert(want.end(), value.begin(), value.end());
    want.push_back('\n');
    CHECK(out == want);

    Bytes empty;
    journal::append_binary_field(empty, "P", {});
    CHECK(empty == Bytes{'P', '\n', 0, 0, 0, 0, 0, 0, 0, 0, '\n'});
}

TEST_CASE(
    "journal encoding: a value with a newline goes in the binary form, other bytes stay text") {
    Bytes out;
    journal::append_field(out, "MESSAGE", "two\nlines");
    CHECK(text(out) == std::string("MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\n", 26));

    Bytes tab;
    journal::append_field(tab, "MESSAGE", "a\tb=c");  // '=' in a value is fine after the first
    CHECK(text(tab) == "MESSAGE=a\tb=c\n");
}

TEST_CASE("journal: namespace socket paths; a name that cannot be a namespace is refused") {
    CHECK(journal::socket_path("") == "/run/systemd/journal/socket");
    CHECK(journal::socket_path("secmsgd") == "/run/systemd/journal.secmsgd/socket");
    CHECK(journal::socket_path("a.b-c_9") == "/run/systemd/journal.a.b-c_9/socket");
    CHECK_THROWS_AS(journal::socket_path("../x"), std::invalid_argument);
    CHECK_THROWS_AS(journal::socket_path(".hidden"), std::invalid_argument);
    CHECK_THROWS_AS(journal::socket_path("a/b"), std::invalid_argument);
    CHECK_THROWS_AS(journal::socket_path(std::string(65, 'a')), std::invalid_argument);
}

TEST_CASE("journal recorder: an entry carries every field, the payload byte for byte") {
    FakeJournalSocket j;
    JournalRecorder rec(j.path, {});
    NoCallbacks client;
    const Bytes payload = {'h', 'i', '\n', 0, 0xff, '"'};
    const Digest d = sha256(payload);
    MessageInfo m;
    m.peer = "192.0.2.1:4000";
    m.conn = 7;
    m.id = "0123456789abcdef0123456789abcdef-3";
    m.seq = 3;
    m.payload = payload;
    m.sha256 = &d;
    REQUIRE(rec.has_room(client));
    CHECK(rec.record(m, client, Clock::now()).status == RecordResult::Status::recorded);

    auto e = decode(j.receive());
    CHECK(e["SECMSG_PAYLOAD"] == payload);
    CHECK(text(e["MESSAGE"]) == "hi\\n\\x00\\xff\\\"");
    CHECK(text(e["SECMSG_SHA256"]) == hex_digest(d));
    CHECK(text(e["SECMSG_BYTES"]) == "6");
    CHECK(text(e["SECMSG_PEER"]) == "192.0.2.1:4000");
    CHECK(text(e["SECMSG_CONN"]) == "7");
    CHECK(text(e["SECMSG_SEQ"]) == "3");
    CHECK(text(e["SECMSG_ID"]) == "0123456789abcdef0123456789abcdef-3");
    CHECK(text(e["MESSAGE_ID"]) == std::string(message_id));
    CHECK(text(e["PRIORITY"]) == "6");
    CHECK(text(e["SYSLOG_IDENTIFIER"]) == "secmsgd");
    CHECK(e.size() == 11);  // the optional fields are left out when empty

    m.via = "198.51.100.9:443";
    m.key = "k1";
    m.client = "alice";
    m.client_pin = "sha256:AAAA";
    CHECK(rec.record(m, client, Clock::now()).status == RecordResult::Status::recorded);
    e = decode(j.receive());
    CHECK(text(e["SECMSG_VIA"]) == "198.51.100.9:443");
    CHECK(text(e["SECMSG_KEY"]) == "k1");
    CHECK(text(e["SECMSG_CLIENT"]) == "alice");
    CHECK(text(e["SECMSG_CLIENT_PIN"]) == "sha256:AAAA");
    CHECK(e.size() == 15);
    CHECK(rec.stats().recorded == 2);
}

TEST_CASE("journal recorder: an entry too large for a datagram goes in a sealed memfd") {
    FakeJournalSocket j;
    JournalRecorder rec(j.path, {});
    NoCallbacks client;
    // Larger than any datagram the socket's send buffer takes (wmem_max
    // caps it; 16 MiB is the largest message secmsgd accepts).
    Bytes payload(16u << 20);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7);
    const Digest d = sha256(payload);
    MessageInfo m;
    m.peer = "127.0.0.1:1";
    m.id = "id-0";
    m.payload = payload;
    m.sha256 = &d;
    CHECK(rec.record(m, client, Clock::now()).status == RecordResult::Status::recorded);

    Fd mfd;
    const Bytes datagram = j.receive(&mfd);
    CHECK(datagram.empty());  // the entry is in the memfd, nothing else is sent
    REQUIRE(mfd);
    const int seals = ::fcntl(mfd.get(), F_GET_SEALS);
    CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)) ==
          (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL));
    Bytes content;
    std::uint8_t buf[1 << 16];
    ssize_t n;
    while ((n = ::pread(mfd.get(), buf, sizeof buf, static_cast<off_t>(content.size()))) > 0)
        content.insert(content.end(), buf, buf + n);
    auto e = decode(content);
    CHECK(e["SECMSG_PAYLOAD"] == payload);
    CHECK(text(e["SECMSG_BYTES"]) == std::to_string(payload.size()));
    CHECK(text(e["SECMSG_ID"]) == "id-0");
}

TEST_CASE(
    "journal recorder: journald gone is a failure of that entry; it connects again by itself") {
    FakeJournalSocket j;
    JournalRecorder rec(j.path, {});
    NoCallbacks client;
    const Bytes payload = bytes("x");
    const Digest d = sha256(payload);
    MessageInfo m;
    m.id = "id";
    m.payload = payload;
    m.sha256 = &d;

    j.sock.reset();  // journald went away: its socket file stays, nobody listens
    auto r = rec.record(m, client, Clock::now());
    CHECK(r.status == RecordResult::Status::not_recorded);
    CHECK(r.reason.find(j.path) != std::string::npos);
    CHECK(r.reason.find("refused") != std::string::npos);

    ::unlink(j.path.c_str());
    j.bind();  // journald is back
    // Not before reconnect_interval has passed since the last attempt.
    CHECK(rec.record(m, client, Clock::now()).status == RecordResult::Status::not_recorded);
    ::usleep(static_cast<useconds_t>(
        std::chrono::microseconds(JournalRecorder::reconnect_interval).count() + 50000));
    CHECK(rec.record(m, client, Clock::now()).status == RecordResult::Status::recorded);
    CHECK(text(decode(j.receive())["SECMSG_ID"]) == "id");
    CHECK(rec.stats().recorded == 1);
    CHECK(rec.stats().not_recorded == 2);
}

TEST_CASE("journal recorder: a socket nobody listens on at start is an error naming it") {
    CHECK_THROWS_WITH_AS(JournalRecorder("/nonexistent/secmsg-test/socket", {}),
                         doctest::Contains("/nonexistent/secmsg-test/socket"), std::system_error);
}
