// Fuzz target "proxy": the PROXY protocol v2 header parser (lib/proxy_header).
// First byte: the size of the pieces the rest is fed in (1 to 64); the
// rest: the bytes a balancer sends.  Checks that feeding in pieces and
// feeding at once agree, that no byte past the header is ever taken, and
// that wanted() never asks for more than the header holds.
#include "fuzz.hpp"

#include "io/proxy_header.hpp"

#include <algorithm>

namespace secmsg::fuzz {

int proxy(const std::uint8_t* data, std::size_t size) {
    Input in({data, size});
    const std::size_t piece = 1 + in.byte() % 64;
    const auto stream = in.rest();

    proxy::Parser whole;
    const auto all = whole.feed(stream);
    SECMSG_FUZZ_CHECK(all.used <= stream.size() && all.used <= proxy::max_header_size);
    SECMSG_FUZZ_CHECK(all.status != proxy::Parser::Status::need_more || all.used == stream.size());
    SECMSG_FUZZ_CHECK(whole.received() == all.used);

    proxy::Parser pieces;
    std::size_t used = 0;
    std::size_t asked = 0;  // the most received() + wanted() ever said the header needs
    in_chunks(stream, piece, [&](std::span<const std::uint8_t> chunk) {
        asked = std::max(asked, pieces.received() + pieces.wanted());
        if (pieces.received() >= proxy::fixed_size && pieces.wanted() > 0)
            SECMSG_FUZZ_CHECK(pieces.received() + pieces.wanted() <= proxy::max_header_size);
        const auto fed = pieces.feed(chunk);
        SECMSG_FUZZ_CHECK(fed.used <= chunk.size());
        SECMSG_FUZZ_CHECK(fed.status != proxy::Parser::Status::need_more ||
                          fed.used == chunk.size());
        used += fed.used;
    });
    SECMSG_FUZZ_CHECK(used == all.used && pieces.status() == whole.status());
    SECMSG_FUZZ_CHECK(pieces.error() == whole.error());

    switch (whole.status()) {
    case proxy::Parser::Status::done: {
        const auto& a = whole.header();
        const auto& b = pieces.header();
        SECMSG_FUZZ_CHECK(a.size == all.used && a.size >= proxy::fixed_size);
        SECMSG_FUZZ_CHECK(asked <= a.size);  // never asked for a byte past the header
        SECMSG_FUZZ_CHECK(a.command == b.command && a.tlvs == b.tlvs && a.size == b.size);
        SECMSG_FUZZ_CHECK(proxy::looks_like_header(stream));
        if (a.command == proxy::Command::proxy) {
            const auto src = proxy::format(a.source);
            SECMSG_FUZZ_CHECK(src == proxy::format(b.source) && src != "unknown");
            SECMSG_FUZZ_CHECK(proxy::format(a.destination) == proxy::format(b.destination));
        }
        SECMSG_FUZZ_CHECK(whole.wanted() == 0);
        break;
    }
    case proxy::Parser::Status::error:
        SECMSG_FUZZ_CHECK(whole.error() != proxy::Error::none && whole.wanted() == 0);
        SECMSG_FUZZ_CHECK(proxy::describe(whole.error())[0] != '\0');
        break;
    case proxy::Parser::Status::need_more:
        SECMSG_FUZZ_CHECK(whole.wanted() > 0 &&
                          whole.received() + whole.wanted() <= proxy::max_header_size);
        break;
    }
    return 0;
}

}  // namespace secmsg::fuzz
