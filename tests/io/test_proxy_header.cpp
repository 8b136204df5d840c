// The PROXY protocol v2 header parser (lib/proxy_header) and address blocks
// (lib/cidr): table cases for valid, truncated and broken headers, CIDR
// parsing and matching over IPv4, IPv6 and IPv4-mapped IPv6.
#include "io/cidr.hpp"
#include "io/net.hpp"
#include "io/proxy_header.hpp"
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

using namespace secmsg;
using proxy::Error;
using proxy::Parser;
using Bytes = std::vector<std::uint8_t>;

namespace {

const std::string sig = "0d0a0d0a000d0a515549540a";

// A header: signature, ver/cmd, family/transport, length, then `block` (hex).
Bytes header(const std::string& ver_fam, const std::string& block_hex) {
    const Bytes block = test::from_hex(block_hex);
    char len[5];
    std::snprintf(len, sizeof len, "%04zx", block.size());
    return test::from_hex(sig + ver_fam + len + block_hex);
}

// What HAProxy's send-proxy-v2 wrote for 172.19.0.1:42578 -> 172.19.0.3:80
// (a capture of a real connection).
const std::string haproxy_v4 = sig + "2111000cac130001ac130003a6520050";

// 2001:db8::7 port 4711 -> 2001:db8::1 port 8443.
const std::string v6_block =
    "20010db8000000000000000000000007"
    "20010db8000000000000000000000001"
    "1267"
    "20fb";
// 192.0.2.7:4711 -> 198.51.100.1:8443.
const std::string v4_block =
    "c0000207"
    "c6336401"
    "1267"
    "20fb";

struct Parsed {
    Parser::Status status;
    std::size_t used;
    Parser parser;
};

Parsed parse(const Bytes& in) {
    Parser p;
    auto fed = p.feed(in);
    return {fed.status, fed.used, p};
}

sockaddr_storage socket_address(const char* text) {
    sockaddr_storage ss{};
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        REQUIRE(::inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
        in6->sin6_family = AF_INET6;
    }
    return ss;
}

bool block_contains(const char* block, const char* addr) {
    const auto ss = socket_address(addr);
    return net::Cidr::parse(block).contains(reinterpret_cast<const sockaddr*>(&ss), sizeof ss);
}

}  // namespace

TEST_CASE("proxy header: HAProxy's own IPv4 header, and nothing of what follows it") {
    Bytes in = test::from_hex(haproxy_v4 + "160301");  // a TLS record follows
    auto r = parse(in);
    REQUIRE(r.status == Parser::Status::done);
    CHECK(r.used == 28);
    const auto& h = r.parser.header();
    CHECK(h.command == proxy::Command::proxy);
    CHECK(h.size == 28);
    CHECK(h.tlvs == 0);
    CHECK(proxy::format(h.source) == "172.19.0.1:42578");
    CHECK(proxy::format(h.destination) == "172.19.0.3:80");
    CHECK(r.parser.wanted() == 0);
    // Fed again: nothing more is taken.
    CHECK(r.parser.feed(in).used == 0);
}

TEST_CASE("proxy header: valid headers") {
    struct Case {
        const char* name;
        Bytes bytes;
        proxy::Command command;
        const char* source;  // "" for LOCAL
        const char* destination;
        std::size_t tlvs;
    };
    const std::vector<Case> cases = {
        {"IPv4", header("2111", v4_block), proxy::Command::proxy, "192.0.2.7:4711",
         "198.51.100.1:8443", 0},
        {"IPv6", header("2121", v6_block), proxy::Command::proxy, "[2001:db8::7]:4711",
         "[2001:db8::1]:8443", 0},
        {"IPv4-mapped IPv6 shown as IPv4",
         header("2121",
                "00000000000000000000ffffc0000207"
                "00000000000000000000ffffc6336401"
                "1267"
                "20fb"),
         proxy::Command::proxy, "192.0.2.7:4711", "198.51.100.1:8443", 0},
        {"LOCAL, no addresses", header("2000", ""), proxy::Command::local, "", "", 0},
        {"LOCAL with addresses, skipped", header("2011", v4_block), proxy::Command::local, "", "",
         0},
        {"LOCAL with an undefined family, ignored", header("20ff", "0102"), proxy::Command::local,
         "", "", 0},
        {"IPv4 with ALPN, NOOP (empty) and unique-id TLVs",
         header("2111", v4_block + "010002"
                                   "6832"
                                   "040000"
                                   "050004"
                                   "01020304"),
         proxy::Command::proxy, "192.0.2.7:4711", "198.51.100.1:8443", 3},
        {"IPv6 with a CRC32C TLV (not verified)",
         header("2121", v6_block + "030004"
                                   "deadbeef"),
         proxy::Command::proxy, "[2001:db8::7]:4711", "[2001:db8::1]:8443", 1},
        {"IPv4, the largest length, one TLV filling it",
         header("2111", v4_block +
                            "04"
                            "03f1" +
                            std::string(2 * (1024 - 12 - 3), 'a')),
         proxy::Command::proxy, "192.0.2.7:4711", "198.51.100.1:8443", 1},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        auto r = parse(c.bytes);
        REQUIRE(r.status == Parser::Status::done);
        CHECK(r.used == c.bytes.size());
        const auto& h = r.parser.header();
        CHECK(h.size == c.bytes.size());
        CHECK(h.command == c.command);
        CHECK(h.tlvs == c.tlvs);
        if (c.command == proxy::Command::proxy) {
            CHECK(proxy::format(h.source) == c.source);
            CHECK(proxy::format(h.destination) == c.destination);
        }

        // Truncated at every length: need_more, every byte taken, and
        // wanted() says exactly how much more to read (never past the end).
        for (std::size_t n = 0; n < c.bytes.size(); ++n) {
            CAPTURE(n);
            Parser p;
            auto fed = p.feed(std::span(c.bytes).first(n));
            CHECK(fed.status == Parser::Status::need_more);
            CHECK(fed.used == n);
            const std::size_t expect =
                n < proxy::fixed_size ? proxy::fixed_size - n : c.bytes.size() - n;
            CHECK(p.wanted() == expect);
            CHECK(p.wanted() <= c.bytes.size() - n);
            // The rest completes it.
            auto rest = p.feed(std::span(c.bytes).subspan(n));
            CHECK(rest.status == Parser::Status::done);
            CHECK(rest.used == c.bytes.size() - n);
        }

        // Byte by byte, reading only what wanted() asks, in the largest
        // pieces it allows.
        Parser p;
        std::size_t at = 0, reads = 0;
        while (p.wanted() > 0) {
            const auto piece = std::span(c.bytes).subspan(at, p.wanted());
            CHECK(p.feed(piece).used == piece.size());
            at += piece.size();
            ++reads;
        }
        CHECK(p.status() == Parser::Status::done);
        CHECK(at == c.bytes.size());
        CHECK(reads == (c.bytes.size() == proxy::fixed_size ? 1u : 2u));
    }
}

TEST_CASE("proxy header: broken headers fail at their first wrong byte") {
    struct Case {
        const char* name;
        Bytes bytes;
        Error error;
        std::size_t at;  // bytes taken when it failed
    };
    std::vector<Case> cases = {
        {"TLS ClientHello instead", test::from_hex("160301020001"), Error::bad_signature, 1},
        {"PROXY protocol version 1 text",
         test::bytes_of("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n"), Error::bad_signature, 1},
        {"version 1 nibble", header("1111", v4_block), Error::bad_version, 13},
        {"version 3 nibble", header("3111", v4_block), Error::bad_version, 13},
        {"command 2", header("2211", v4_block), Error::bad_command, 13},
        {"command 15", header("2f11", v4_block), Error::bad_command, 13},
        {"family 4", header("2141", v4_block), Error::bad_family, 14},
        {"transport 3", header("2113", v4_block), Error::bad_family, 14},
        {"unix stream", header("2131", std::string(432, '0')), Error::unsupported_address, 14},
        {"IPv4 datagram", header("2112", v4_block), Error::unsupported_address, 14},
        {"unspecified family", header("2100", ""), Error::unsupported_address, 14},
        {"unspecified transport", header("2110", v4_block), Error::unsupported_address, 14},
        {"length 1025",
         header("2111", v4_block +
                            "04"
                            "03f2" +
                            std::string(2 * 1010, '0')),
         Error::too_long, 16},
        {"length 65535", test::from_hex(sig + "2111ffff"), Error::too_long, 16},
        {"LOCAL, length 65535", test::from_hex(sig + "2000ffff"), Error::too_long, 16},
        {"IPv4, length 11", header("2111", v4_block.substr(0, 22)), Error::short_addresses, 16},
        {"IPv6, length 35", header("2121", v6_block.substr(0, 70)), Error::short_addresses, 16},
        {"IPv6, length 12 (IPv4's)", header("2121", v4_block), Error::short_addresses, 16},
        {"TLV value past the end",
         header("2111", v4_block + "010005"
                                   "68"),
         Error::bad_tlv, 31},
        {"TLV head cut by the end", header("2111", v4_block + "0100"), Error::bad_tlv, 30},
        {"second TLV past the end",
         header("2111", v4_block + "040000"
                                   "010002"),
         Error::bad_tlv, 34},
    };
    // A wrong byte anywhere in the signature.
    for (std::size_t i = 0; i < proxy::signature.size(); ++i) {
        Bytes b = header("2111", v4_block);
        b[i] ^= 0x20;
        cases.push_back({"signature byte", b, Error::bad_signature, i + 1});
    }
    for (const auto& c : cases) {
        CAPTURE(c.name);
        CAPTURE(c.at);
        auto r = parse(c.bytes);
        REQUIRE(r.status == Parser::Status::error);
        CHECK(r.parser.error() == c.error);
        CHECK(r.used == c.at);
        CHECK(r.parser.received() == c.at);
        CHECK(r.parser.wanted() == 0);
        CHECK(r.parser.feed(c.bytes).status == Parser::Status::error);  // and stays failed
        CHECK(std::string(proxy::describe(c.error)).find("PROXY protocol") != std::string::npos);
    }
}

TEST_CASE("proxy header: a peer's first bytes that are a header's") {
    const Bytes h = test::from_hex(haproxy_v4);
    CHECK(proxy::looks_like_header(h));
    CHECK(proxy::looks_like_header(std::span(h).first(5)));
    CHECK_FALSE(proxy::looks_like_header(std::span(h).first(3)));  // too little to tell
    CHECK_FALSE(proxy::looks_like_header(test::from_hex("1603010200")));
    Bytes other = h;
    other[11] = 0;
    CHECK_FALSE(proxy::looks_like_header(other));
}

TEST_CASE("cidr: parsing") {
    struct Case {
        const char* text;
        const char* canonical;
    };
    for (const auto& c : std::vector<Case>{
             {"192.0.2.0/24", "192.0.2.0/24"},
             {"127.0.0.1", "127.0.0.1/32"},
             {"0.0.0.0/0", "0.0.0.0/0"},
             {"2001:db8::/32", "2001:db8::/32"},
             {"::1", "::1/128"},
             {"::/0", "::/0"},
             {"::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120"},
         }) {
        CAPTURE(c.text);
        CHECK(net::Cidr::parse(c.text).text() == c.canonical);
    }
    for (const char* bad :
         {"", "/8", "192.0.2.0/", "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/-1", "192.0.2.0/8x",
          "192.0.2", "host.example/32", "192.0.2.0/24/1", "[::1]/128", "::1%lo/128"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(net::Cidr::parse(bad), net::NetError);
    }
    CHECK_THROWS_WITH(
        net::Cidr::parse("10.0.0.1/8"),
        doctest::Contains("address bits set past the prefix (the block is 10.0.0.0/8)"));
    CHECK_THROWS_WITH(net::Cidr::parse("2001:db8::1/64"),
                      doctest::Contains("the block is 2001:db8::/64"));
    CHECK_THROWS_WITH(net::Cidr::parse("192.0.2.0/40"), doctest::Contains("must be 0 to 32"));
}

TEST_CASE("cidr: matching IPv4, IPv6 and IPv4-mapped IPv6") {
    struct Case {
        const char* block;
        const char* address;
        bool inside;
    };
    for (const auto& c : std::vector<Case>{
             {"127.0.0.1", "127.0.0.1", true},
             {"127.0.0.1", "127.0.0.2", false},
             {"127.0.0.1", "::ffff:127.0.0.1", true},  // a dual-stack socket's view
             {"10.0.0.0/8", "10.255.255.255", true},
             {"10.0.0.0/8", "11.0.0.0", false},
             {"10.0.0.0/8", "::ffff:10.1.2.3", true},
             {"192.0.2.128/25", "192.0.2.127", false},
             {"192.0.2.128/25", "192.0.2.128", true},
             {"192.0.2.0/23", "192.0.3.1", true},
             {"0.0.0.0/0", "203.0.113.9", true},
             {"0.0.0.0/0", "::1", false},  // IPv4 blocks never hold IPv6
             {"::1", "::1", true},
             {"::1", "127.0.0.1", false},
             {"2001:db8::/32", "2001:db8:ffff::1", true},
             {"2001:db8::/32", "2001:db9::1", false},
             {"2001:db8::/33", "2001:db8:8000::1", false},
             {"::ffff:192.0.2.0/120", "192.0.2.55", true},
             {"::/0", "192.0.2.55", true},  // covers ::ffff:0:0/96
         }) {
        CAPTURE(c.block);
        CAPTURE(c.address);
        CHECK(block_contains(c.block, c.address) == c.inside);
    }
    // Not an IP socket: never inside.
    sockaddr_storage unix_addr{};
    unix_addr.ss_family = AF_UNIX;
    CHECK_FALSE(net::Cidr::parse("::/0").contains(reinterpret_cast<const sockaddr*>(&unix_addr),
                                                  sizeof unix_addr));
    const std::vector<net::Cidr> list = {net::Cidr::parse("192.0.2.0/24"), net::Cidr::parse("::1")};
    const auto a = socket_address("::1"), b = socket_address("198.51.100.1");
    CHECK(net::any_contains(list, reinterpret_cast<const sockaddr*>(&a), sizeof a));
    CHECK_FALSE(net::any_contains(list, reinterpret_cast<const sockaddr*>(&b), sizeof b));
}
