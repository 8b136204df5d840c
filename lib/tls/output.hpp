// Sealed bytes on their way into one TLS session, and the one way of
// writing them, for secmsgd's connections and secmsg's send loop alike.
#pragma once

#include "tls/session.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace secmsg::tls {

// Owns the frames sealed for a session and not yet taken by TLS.  The bytes
// handed to TLS are frozen until it has taken them all (after want_write,
// TLS must be given the same buffer and length again); new frames queue
// behind them; TLS's own held output (a KeyUpdate answer, an alert) leaves
// before anything of ours.
class Output {
public:
    // Where the next sealed frames are appended.
    std::vector<std::uint8_t>& queue() { return queued_; }
    // Bytes of ours not yet taken by TLS.
    std::size_t size() const { return queued_.size() + writing_.size() - written_; }
    bool empty() const { return size() == 0; }
    // Ciphertext not yet on the socket: ours and what `s` holds (its own
    // output, the rest of an unfinished write).  Count it against an output
    // bound.
    std::size_t pending(const Session& s) const { return size() + s.pending_output(); }

    // Writes until TLS has taken everything of ours or must wait.  Returns
    // done when everything was taken; want_write or want_read when TLS waits
    // (call again when it may go on: the frozen bytes are retried); closed
    // when the peer is gone, failed on a TLS error.  `bytes`: how many of
    // ours TLS took in this call, whatever the status.
    IoResult flush(Session& s);

    // Gives back the queue's memory after a burst (above 256 KiB).
    void trim();

private:
    std::vector<std::uint8_t> queued_;   // sealed, not yet handed to TLS
    std::vector<std::uint8_t> writing_;  // handed to TLS, frozen until taken
    std::size_t written_ = 0;            // of writing_, taken by TLS
};

}  // namespace secmsg::tls
