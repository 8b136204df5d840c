// Recorders (see recorder.hpp).
#include "recorder.hpp"

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

namespace secmsg::daemon {

namespace {

constexpr char hex[] = "0123456789abcdef";

std::string hex_digest(const Digest& d) {
    std::string s;
    s.reserve(64);
    for (auto b : d) {
        s += hex[b >> 4];
        s += hex[b & 15];
    }
    return s;
}

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

bool write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

class JournalRecorder : public Recorder {
public:
    std::string record(const MessageInfo& m) override {
        std::string message = "MESSAGE=" + escape_payload(m.payload, 200);
        std::string payload_prefix = "SECMSG_PAYLOAD=";
        std::string sha = "SECMSG_SHA256=" + hex_digest(*m.sha256);
        std::string bytes = "SECMSG_BYTES=" + std::to_string(m.payload.size());
        std::string peer = "SECMSG_PEER=" + std::string(m.peer);
        std::string conn = "SECMSG_CONN=" + std::to_string(m.conn);
        std::string seq = "SECMSG_SEQ=" + std::to_string(m.seq);
        std::string id = "MESSAGE_ID=" + std::string(message_id);
        static const char priority[] = "PRIORITY=6";
        // SECMSG_PAYLOAD is built as one field from two pieces: sd_journal_sendv
        // takes each iovec as a whole FIELD=VALUE, so the bytes are appended.
        auto& field = field_;  // reused: no allocation per message once grown
        field.assign(payload_prefix.begin(), payload_prefix.end());
        field.insert(field.end(), m.payload.begin(), m.payload.end());
        iovec iov[] = {
            {message.data(), message.size()}, {field.data(), field.size()},
            {sha.data(), sha.size()},         {bytes.data(), bytes.size()},
            {peer.data(), peer.size()},       {conn.data(), conn.size()},
            {seq.data(), seq.size()},         {id.data(), id.size()},
            {const_cast<char*>(priority), sizeof priority - 1},
        };
        int rc = sd_journal_sendv(iov, static_cast<int>(std::size(iov)));
        if (field.capacity() > (1u << 20)) std::vector<std::uint8_t>().swap(field);
        if (rc < 0) return std::string("journal: ") + std::strerror(-rc);
        return {};
    }
    std::string_view name() const override { return "journal"; }

private:
    std::vector<std::uint8_t> field_;
};

class StderrRecorder : public Recorder {
public:
    std::string record(const MessageInfo& m) override {
        std::string line = "message conn=" + std::to_string(m.conn) + " peer=" + std::string(m.peer) +
                           " seq=" + std::to_string(m.seq) + " bytes=" +
                           std::to_string(m.payload.size()) + " sha256=" + hex_digest(*m.sha256) +
                           " text=\"" + escape_payload(m.payload) + "\"\n";
        if (!write_all(STDERR_FILENO, line.data(), line.size()))
            return std::string("stderr: ") + std::strerror(errno);
        return {};
    }
    std::string_view name() const override { return "stderr"; }
};

class NullRecorder : public Recorder {
public:
    std::string record(const MessageInfo&) override { return {}; }
    std::string_view name() const override { return "none"; }
};

}  // namespace

RecordMode parse_record_mode(const std::string& s) {
    if (s == "journal") return RecordMode::journal;
    if (s == "stderr") return RecordMode::stderr_;
    if (s == "none") return RecordMode::none;
    if (s == "auto") return RecordMode::automatic;
    throw std::invalid_argument("--record must be journal, stderr or none (got '" + s + "')");
}

bool journal_reachable() { return ::access("/run/systemd/journal/socket", W_OK) == 0; }

std::unique_ptr<Recorder> make_recorder(RecordMode mode) {
    switch (mode) {
    case RecordMode::automatic:
        if (journal_reachable()) return std::make_unique<JournalRecorder>();
        return std::make_unique<StderrRecorder>();
    case RecordMode::journal:
        if (!journal_reachable())
            throw std::runtime_error(
                "--record journal: the journal is not reachable (/run/systemd/journal/socket is "
                "missing); use --record stderr");
        return std::make_unique<JournalRecorder>();
    case RecordMode::stderr_: return std::make_unique<StderrRecorder>();
    case RecordMode::none: return std::make_unique<NullRecorder>();
    }
    return std::make_unique<NullRecorder>();
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
