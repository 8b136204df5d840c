// Sealed bytes on their way into one TLS session (see output.hpp).
#include "tls/output.hpp"

#include <span>

namespace secmsg::tls {

namespace {

constexpr std::size_t keep_at_most = 256u << 10;  // buffer capacity kept after a burst

}  // namespace

IoResult Output::flush(Session& s) {
    std::size_t taken = 0;
    if (writing_.empty() && s.output_blocked()) {
        // TLS's own output leaves before anything of ours.
        if (const Io r = s.flush(); r != Io::done) return {r, 0};
    }
    for (;;) {
        if (writing_.empty()) {
            if (queued_.empty()) return {Io::done, taken};
            writing_.swap(queued_);
            written_ = 0;
        }
        const IoResult r = s.write(std::span(writing_).subspan(written_));
        if (r.status != Io::done) return {r.status, taken};
        written_ += r.bytes;
        taken += r.bytes;
        if (written_ >= writing_.size()) {
            writing_.clear();
            written_ = 0;
            if (writing_.capacity() > keep_at_most) writing_.shrink_to_fit();
        }
    }
}

void Output::trim() {
    if (queued_.capacity() > keep_at_most) queued_.shrink_to_fit();
}

}  // namespace secmsg::tls
