// The daemon's operational log (not the messages): start-up, errors, one
// summary per connection, shutdown.  Lines go to stderr through the
// non-blocking line stream (stderr_stream.hpp): each whole, never cut or
// interleaved with a record line, queued when stderr would block, dropped
// (and counted, then reported) when even the queue is full.  When stderr
// is a journal stream (JOURNAL_STREAM names it, as systemd sets it) each
// line starts with an sd-daemon "<N>" priority prefix, which the journal
// turns into the entry's priority.
#pragma once

#include <string_view>

namespace secmsg::daemon::log {

enum class Level { err = 3, warning = 4, notice = 5, info = 6, debug = 7 };

// Decides the format once (at start-up, after stderr is set up).
void init();

// Writes one line (or queues it); failures to write are ignored (there is
// nowhere to say so).
void write(Level level, std::string_view line);

inline void error(std::string_view s) { write(Level::err, s); }
inline void warning(std::string_view s) { write(Level::warning, s); }
inline void notice(std::string_view s) { write(Level::notice, s); }
inline void info(std::string_view s) { write(Level::info, s); }

}  // namespace secmsg::daemon::log
