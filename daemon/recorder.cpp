// Recorders (see recorder.hpp): the choice of one and the null recorder.
#include "recorder.hpp"

#include "journal.hpp"
#include "stderr_stream.hpp"

#include <stdexcept>
#include <system_error>

namespace secmsg::daemon {

namespace {

constexpr char hex[] = "0123456789abcdef";

// --record none: nothing is written, every message counts as recorded.
class NullRecorder : public Recorder {
public:
    bool has_room(RecordClient&) override { return true; }
    RecordResult record(const MessageInfo&, RecordClient&, Clock::time_point) override {
        ++recorded_;
        return RecordResult::recorded();
    }
    void forget(RecordClient&) override {}
    void cap_deadlines(Clock::time_point) override {}
    RecordStats stats() const override {
        RecordStats s;
        s.recorded = recorded_;
        return s;
    }
    std::string_view name() const override { return "none"; }

private:
    std::uint64_t recorded_ = 0;
};

// --record stderr: the process-wide stream on fd 2 (which the log shares),
// used without being owned.
class StreamRecorder : public Recorder {
public:
    explicit StreamRecorder(StderrStream& s) : s_(s) {}
    bool has_room(RecordClient& c) override { return s_.has_room(c); }
    RecordResult record(const MessageInfo& m, RecordClient& c, Clock::time_point since) override {
        return s_.record(m, c, since);
    }
    void forget(RecordClient& c) override { s_.forget(c); }
    void cap_deadlines(Clock::time_point when) override { s_.cap_deadlines(when); }
    RecordStats stats() const override { return s_.stats(); }
    std::string_view name() const override { return s_.name(); }

private:
    StderrStream& s_;
};

}  // namespace

RecordMode parse_record_mode(const std::string& s) {
    if (s == "journal") return RecordMode::journal;
    if (s == "stderr") return RecordMode::stderr_;
    if (s == "none") return RecordMode::none;
    if (s == "auto") return RecordMode::automatic;
    throw std::invalid_argument("--record must be journal, stderr or none (got '" + s + "')");
}

std::string hex_digest(const Digest& d) {
    std::string s;
    s.reserve(64);
    for (auto b : d) {
        s += hex[b >> 4];
        s += hex[b & 15];
    }
    return s;
}

std::string journal_socket_path(const std::string& ns) { return journal::socket_path(ns); }

std::unique_ptr<Recorder> make_recorder(Reactor& r, const RecordOptions& o) {
    QueueLimits limits;
    limits.timeout = o.timeout;
    const auto path = journal::socket_path(o.journal_namespace);
    std::unique_ptr<RecordQueue> q;
    switch (o.mode) {
    case RecordMode::none: return std::make_unique<NullRecorder>();
    case RecordMode::stderr_: break;
    case RecordMode::automatic: try { q = std::make_unique<JournalRecorder>(path, limits);
        } catch (const std::system_error&) {
            // not reachable: stderr
        }
        break;
    case RecordMode::journal: try { q = std::make_unique<JournalRecorder>(path, limits);
        } catch (const std::system_error& e) {
            throw std::runtime_error("--record journal: the journal is not reachable (" +
                                     std::string(e.what()) + "); use --record stderr");
        }
        break;
    }
    if (!q) {
        // The stream on fd 2 belongs to the log too; the recorder only uses it.
        auto& s = stderr_stream();
        s.set_timeout(o.timeout);
        return std::make_unique<StreamRecorder>(s);
    }
    q->attach(r);
    return q;
}

}  // namespace secmsg::daemon
