// Recording of received messages: to the systemd journal (one entry per
// message, binary-safe), to stderr (one line per message), or nowhere.
#pragma once

#include "payload.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace secmsg::daemon {

// "message received": `journalctl MESSAGE_ID=...` lists every recorded message.
inline constexpr std::string_view message_id = "7d5b1c3c9a0e4f4e8b2a6c1d0f3e5a71";

struct MessageInfo {
    std::string_view peer;   // "address:port"
    std::uint64_t conn = 0;  // connection id
    std::uint64_t seq = 0;   // the MSG's sequence number
    std::span<const std::uint8_t> payload;
    const Digest* sha256 = nullptr;
};

class Recorder {
public:
    virtual ~Recorder() = default;
    // Records one message.  Returns an empty string on success, else the
    // reason it was not recorded (the caller answers ERROR 6).
    virtual std::string record(const MessageInfo& m) = 0;
    virtual std::string_view name() const = 0;
};

enum class RecordMode { automatic, journal, stderr_, none };

// Parses "journal", "stderr", "none" (or "auto"); throws std::invalid_argument.
RecordMode parse_record_mode(const std::string& s);

// True when journald's native socket is there to write to.
bool journal_reachable();

// The recorder for a mode.  automatic: the journal when reachable, else
// stderr.  journal: throws std::runtime_error when the journal is unreachable.
std::unique_ptr<Recorder> make_recorder(RecordMode mode);

// A printable rendering of a payload, one line: valid UTF-8 text as it is;
// control characters (C0, C1, U+2028/9), backslash, quote and invalid bytes
// escaped (\n, \t, \r, \\, \", \xHH per byte).  With
// `limit`, at most that many output bytes, then "..." and the full size.
std::string escape_payload(std::span<const std::uint8_t> p, std::size_t limit = 0);

}  // namespace secmsg::daemon
