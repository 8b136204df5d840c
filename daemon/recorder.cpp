// Recorders (see recorder.hpp): the choice of one, the null recorder, and
// the escaping of payloads for people.
#include "recorder.hpp"

#include "journal.hpp"
#include "stderr_stream.hpp"

#include <stdexcept>
#include <system_error>

namespace secmsg::daemon {

namespace {

constexpr char hex[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence (no control characters) at p, or 0.
std::size_t utf8_len(const std::uint8_t* p, std::size_t n) {
    std::uint8_t c = p[0];
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (std::size_t i = 1; i < len; ++i) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp < 0xA0) ||  // surrogates, C1 controls
        cp == 0x2028 || cp == 0x2029)                                     // line separators
        return 0;
    return len;
}

// --record none: nothing is written, every message counts as recorded.
class NullRecorder : public Recorder {
public:
    bool has_room(RecordClient&) override { return true; }
    RecordResult record(const MessageInfo&, RecordClient&, Clock::time_point) override {
        ++recorded_;
        return {RecordResult::Status::recorded, {}};
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
    case RecordMode::automatic:
        try {
            q = std::make_unique<JournalRecorder>(path, limits);
        } catch (const std::system_error&) {
            // not reachable: stderr
        }
        break;
    case RecordMode::journal:
        try {
            q = std::make_unique<JournalRecorder>(path, limits);
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

std::string escape_payload(std::span<const std::uint8_t> p, std::size_t limit) {
    std::string out;
    out.reserve(std::min<std::size_t>(p.size() + 8, limit ? limit + 32 : p.size() + 8));
    std::size_t i = 0;
    while (i < p.size()) {
        if (limit && out.size() >= limit) {
            out += "... (" + std::to_string(p.size()) + " bytes)";
            return out;
        }
        std::uint8_t c = p[i];
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c >= 0x20 && c < 0x7F) {
            out += static_cast<char>(c);
        } else if (std::size_t n = c >= 0x80 ? utf8_len(p.data() + i, p.size() - i) : 0; n > 0) {
            out.append(reinterpret_cast<const char*>(p.data() + i), n);
            i += n;
            continue;
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
        ++i;
    }
    return out;
}

}  // namespace secmsg::daemon
