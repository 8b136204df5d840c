// Operational log (see log.hpp).
#include "log.hpp"

#include "stderr_stream.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace secmsg::daemon::log {

namespace {

bool journal_stream = false;

// JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd connected; it only
// counts if stderr is still that stream.
bool stderr_is_journal_stream() {
    const char* js = std::getenv("JOURNAL_STREAM");
    if (!js) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return false;
    return st.st_dev == dev && st.st_ino == ino;
}

const char* level_word(Level l) {
    switch (l) {
    case Level::err: return "error: ";
    case Level::warning: return "warning: ";
    case Level::notice: return "";
    case Level::info: return "";
    case Level::debug: return "debug: ";
    }
    return "";
}

}  // namespace

void init() { journal_stream = stderr_is_journal_stream(); }

namespace {

std::string format(Level level, std::string_view line) {
    std::string out;
    out.reserve(line.size() + 16);
    if (journal_stream) {
        out += '<';
        out += static_cast<char>('0' + static_cast<int>(level));
        out += '>';
    } else {
        out += "secmsgd: ";
        out += level_word(level);
    }
    out += line;
    out += '\n';
    return out;
}

}  // namespace

void write(Level level, std::string_view line) {
    auto& s = stderr_stream();
    if (auto n = s.take_dropped_lines(); n > 0)
        s.write_line(
            format(Level::warning,
                   std::to_string(n) + " log line(s) dropped: standard error was not read"));
    s.write_line(format(level, line));
}

}  // namespace secmsg::daemon::log
