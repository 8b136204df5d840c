// The recorders' queue (record_queue.hpp) through real descriptors that
// fill up: a datagram socket nobody reads standing in for a stopped
// journald (its queue takes net.unix.max_dgram_qlen datagrams, then the
// sender would block), and a pipe of one page on fd 2 for the stderr
// stream.  What is checked: an entry is taken at once while the fd takes
// it, queued once it would block, connections wait for room beyond the
// bounds, a queued record past its deadline is answered "not recorded"
// and leaves the queue (or, partly written, is still finished whole), and
// everything queued goes out in order once the fd drains.
#include "datagram_listener.hpp"
#include "journal.hpp"
#include "stderr_stream.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace secmsg;
using namespace secmsg::daemon;
using namespace std::chrono_literals;
using Status = RecordResult::Status;

namespace {

// A journald that reads only when told.
struct StoppedJournal : test::DatagramListener {
    // The SECMSG_SEQ of every datagram waiting, in order (reads them all).
    std::vector<std::string> read_seqs() {
        std::vector<std::string> seqs;
        std::vector<char> buf(1 << 16);
        ssize_t n;
        while ((n = ::recv(sock.get(), buf.data(), buf.size(), 0)) >= 0) {
            std::string d(buf.data(), static_cast<std::size_t>(n));
            auto at = d.find("\nSECMSG_SEQ=");
            REQUIRE(at != std::string::npos);
            seqs.push_back(d.substr(at + 12, d.find('\n', at + 1) - at - 12));
        }
        return seqs;
    }
};

// A connection as the queue sees it: what it was told, and when.
struct Waiter : RecordClient {
    std::vector<std::string> answers;  // "" for recorded, else the reason
    std::vector<Clock::time_point> at;
    int rooms = 0;
    void record_done(const RecordResult& outcome) override {
        CHECK(outcome.status != RecordResult::Status::queued);
        answers.push_back(outcome.status == RecordResult::Status::recorded ? "" : outcome.reason);
        at.push_back(Clock::now());
    }
    void record_room() override { ++rooms; }
};

// A message and the MessageInfo a connection would offer for it.
struct Message {
    std::uint64_t seq;
    std::vector<std::uint8_t> payload;
    Digest digest;
    std::string id;
    Message(std::uint64_t seq, std::size_t size)
        : seq(seq),
          payload(size, 'a'),
          digest(sha256(payload)),
          id("queue-test-" + std::to_string(seq)) {}
    MessageInfo info() const {
        MessageInfo m;
        m.peer = "127.0.0.1:1";
        m.id = id;
        m.seq = seq;
        m.payload = payload;
        m.sha256 = &digest;
        return m;
    }
};

QueueLimits limits_of(std::chrono::milliseconds timeout, std::size_t max_entries = 1024) {
    QueueLimits l;
    l.timeout = timeout;
    l.max_entries = max_entries;
    return l;
}

// A journal recorder on a loop whose journald has stopped reading: messages
// 0, 1, ... offered until one is queued (the socket would block).
struct BlockedJournal {
    StoppedJournal j;
    Reactor r;
    JournalRecorder q;
    Waiter w;
    std::vector<Message> sent;
    std::uint64_t at_once = 0;  // how many were recorded at once
    explicit BlockedJournal(const QueueLimits& limits) : q(j.path, limits) {
        q.attach(r);
        for (;;) {
            auto res = offer();
            REQUIRE(res.status != Status::not_recorded);
            if (res.status == Status::queued) break;
            ++at_once;
            REQUIRE(at_once < 100000);  // the socket never said would-block
        }
    }
    ~BlockedJournal() { q.detach(); }
    // Offers the next message, waiting since `since`.
    RecordResult offer(Clock::time_point since = Clock::now()) {
        sent.emplace_back(sent.size(), 16);
        return q.record(sent.back().info(), w, since);
    }
};

// Runs the loop for about `d`.
void spin(Reactor& r, Clock::duration d) {
    Timer stop(r, [&] { r.stop(); });
    stop.arm_in(d);
    r.run();
}

// Runs the loop until `done` (checked every 10 ms) or 5 s.
template <class F>
void run_until(Reactor& r, F done) {
    const auto until = Clock::now() + 5s;
    while (!done() && Clock::now() < until) spin(r, 10ms);
}

}  // namespace

TEST_CASE(
    "record queue: taken at once while journald takes it, queued once it would block, "
    "bounded, then written in order when it drains") {
    BlockedJournal b(limits_of(10s, 4));
    auto& [j, r, q, w, sent, at_once] = b;
    CHECK(at_once >= 1);
    CHECK(q.stats().recorded == at_once);
    CHECK(q.stats().queued == 1);
    CHECK(w.answers.empty());  // never from inside record()

    // Three more fit in the queue (max_entries 4), then there is no room.
    for (int i = 0; i < 3; ++i) {
        REQUIRE(q.has_room(w));
        CHECK(b.offer().status == Status::queued);
    }
    CHECK(q.stats().queued == 4);
    Waiter later;
    CHECK_FALSE(q.has_room(later));
    CHECK(q.stats().waiting == 1);

    // journald reads: EPOLLOUT, the queue drains in order, the waiter may offer again.
    auto seqs = j.read_seqs();
    CHECK(seqs.size() == at_once);
    run_until(r, [&] { return w.answers.size() == 4; });
    REQUIRE(w.answers.size() == 4);
    for (const auto& a : w.answers) CHECK(a.empty());
    CHECK(later.rooms == 1);
    seqs = j.read_seqs();
    CHECK(seqs == std::vector<std::string>{std::to_string(at_once), std::to_string(at_once + 1),
                                           std::to_string(at_once + 2),
                                           std::to_string(at_once + 3)});
    const auto s = q.stats();
    CHECK(s.recorded == at_once + 4);
    CHECK(s.not_recorded == 0);
    CHECK(s.queued == 0);
    CHECK(s.waiting == 0);
    CHECK(s.paused > 0ms);
}

TEST_CASE("record queue: a record past its deadline is answered not recorded and never written") {
    const auto t0 = Clock::now();
    BlockedJournal b(limits_of(200ms));
    auto& [j, r, q, w, sent, at_once] = b;
    CHECK(b.offer().status == Status::queued);

    run_until(r, [&] { return w.answers.size() == 2; });
    REQUIRE(w.answers.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(w.answers[i].find("record timeout") != std::string::npos);
        CHECK(w.at[i] - t0 >= 200ms);
    }
    CHECK(q.stats().not_recorded == 2);
    CHECK(q.stats().queued == 0);

    // journald reads again: only what was recorded at once is there.
    CHECK(j.read_seqs().size() == at_once);
    spin(r, 100ms);  // EPOLLOUT: nothing is left to write
    CHECK(j.read_seqs().empty());

    // A message that has already waited its whole timeout for room is not
    // even queued.
    auto late = b.offer(Clock::now() - 300ms);
    CHECK(late.status == Status::not_recorded);
    CHECK(late.reason.find("waited too long") != std::string::npos);
}

TEST_CASE("record queue: cap_deadlines (shutdown) answers queued records by then") {
    BlockedJournal b(limits_of(60s));
    auto& w = b.w;
    const auto t0 = Clock::now();
    b.q.cap_deadlines(t0 + 100ms);
    run_until(b.r, [&] { return !w.answers.empty(); });
    REQUIRE(w.answers.size() == 1);
    CHECK(!w.answers[0].empty());
    CHECK(w.at[0] - t0 >= 100ms);
    CHECK(w.at[0] - t0 < 5s);
}

namespace {

// fd 2 replaced by the write end of a one-page non-blocking-capable pipe
// for the life of the object (the doctest output goes to stdout).
struct PipeOnStderr {
    int saved = -1;
    int rd = -1;
    PipeOnStderr() {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        ::fcntl(p[1], F_SETPIPE_SZ, 4096);
        REQUIRE(::fcntl(p[1], F_GETPIPE_SZ) == 4096);
        saved = ::dup(2);
        REQUIRE(::dup2(p[1], 2) == 2);
        ::close(p[1]);
        rd = p[0];
        ::fcntl(rd, F_SETFL, O_NONBLOCK);
    }
    ~PipeOnStderr() {
        ::dup2(saved, 2);
        ::close(saved);
        ::close(rd);
    }
    std::string read_some(std::size_t max) {
        std::string out(max, '\0');
        ssize_t n = ::read(rd, out.data(), max);
        out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        return out;
    }
    std::string read_all() {
        std::string out, part;
        while (!(part = read_some(1 << 16)).empty()) out += part;
        return out;
    }
};

}  // namespace

TEST_CASE(
    "stderr stream: a line larger than the pipe's room is finished whole, even past its "
    "deadline; a line not begun by then is never written") {
    PipeOnStderr pipe;
    Reactor r;
    QueueLimits limits;
    limits.timeout = 200ms;
    StderrStream s(limits);
    REQUIRE(s.non_blocking());
    s.attach(r);
    Waiter w;
    Message big(0, 6000);  // a line of about 6.2 KB: 4096 bytes fit, the rest waits
    Message next(1, 100);
    CHECK(s.record(big.info(), w, Clock::now()).status == Status::queued);
    CHECK(s.record(next.info(), w, Clock::now()).status == Status::queued);

    run_until(r, [&] { return w.answers.size() == 2; });
    REQUIRE(w.answers.size() == 2);
    CHECK(w.answers[0].find("record timeout") != std::string::npos);
    CHECK(w.answers[1].find("record timeout") != std::string::npos);
    CHECK(s.stats().queued == 1);  // the begun line stays to be finished

    // The reader comes back: the first line is completed, whole; the second
    // never appears; a log line after it is whole too.
    std::string out;
    const auto until = Clock::now() + 5s;
    while (s.stats().queued > 0 && Clock::now() < until) {
        out += pipe.read_all();
        spin(r, 10ms);
    }
    CHECK(s.write_line("log line\n"));
    out += pipe.read_all();
    const auto nl = out.find('\n');
    REQUIRE(nl != std::string::npos);
    const std::string first = out.substr(0, nl);
    CHECK(first.rfind("message conn=0 id=queue-test-0 ", 0) == 0);
    CHECK(first.find(" text=\"" + std::string(6000, 'a') + "\"") != std::string::npos);
    CHECK(out.substr(nl + 1) == "log line\n");
    CHECK(s.stats().recorded == 0);
    CHECK(s.stats().not_recorded == 2);
    s.detach();
}

TEST_CASE(
    "stderr stream: lines queued behind a partial one are written whole and in order, "
    "each answered once its last byte is out") {
    PipeOnStderr pipe;
    Reactor r;
    QueueLimits limits;
    limits.timeout = 10s;
    StderrStream s(limits);
    s.attach(r);
    Waiter w;
    std::vector<Message> msgs;
    // Lines of about 5.1 KB, above PIPE_BUF: the pipe takes part of one.
    for (std::uint64_t i = 0; i < 5; ++i) msgs.emplace_back(i, 5000);
    for (auto& m : msgs) CHECK(s.record(m.info(), w, Clock::now()).status == Status::queued);
    CHECK(s.write_line("interleaved log line\n"));
    std::string out;
    // A slow reader: a little at a time (the pipe has room again once its
    // one page is read).
    const auto until = Clock::now() + 10s;
    while (s.stats().queued > 0 && Clock::now() < until) {
        out += pipe.read_some(700);
        spin(r, 2ms);
    }
    spin(r, 10ms);
    out += pipe.read_all();
    CHECK(w.answers.size() == 5);
    for (const auto& a : w.answers) CHECK(a.empty());
    std::vector<std::string> lines;
    for (std::size_t at = 0, nl; (nl = out.find('\n', at)) != std::string::npos; at = nl + 1)
        lines.push_back(out.substr(at, nl - at));
    REQUIRE(lines.size() == 6);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(lines[i].rfind("message conn=0 id=queue-test-" + std::to_string(i) + " ", 0) == 0);
        CHECK(lines[i].find(" text=\"" + std::string(5000, 'a') + "\"") != std::string::npos);
        CHECK(lines[i].back() == '"');
    }
    CHECK(lines[5] == "interleaved log line");
    CHECK(s.stats().recorded == 5);
    s.detach();
}
