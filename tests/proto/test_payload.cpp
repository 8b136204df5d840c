// ACK and ERROR payloads.
#include "proto/bytes.hpp"
#include "proto/payload.hpp"
#include "test_util.hpp"

#include <doctest/doctest.h>

using namespace secmsg;

TEST_CASE("SHA-256 known answer") {
    const auto d = sha256(test::bytes_of("abc"));
    CHECK(std::vector<std::uint8_t>(d.begin(), d.end()) ==
          test::from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

TEST_CASE("ACK payload: layout, parse, and the match check") {
    const auto msg = test::bytes_of("hello");
    std::vector<std::uint8_t> p;
    build_ack(0x0102030405060708ull, sha256(msg), "received 5 bytes", p);
    REQUIRE(p.size() == 8 + 32 + 16);
    CHECK(load_be64(p.data()) == 0x0102030405060708ull);
    auto a = parse_ack(p);
    REQUIRE(a);
    CHECK(a->note == "received 5 bytes");
    CHECK(ack_matches(*a, 0x0102030405060708ull, sha256(msg)));
    CHECK_FALSE(ack_matches(*a, 0x0102030405060707ull, sha256(msg)));
    CHECK_FALSE(ack_matches(*a, 0x0102030405060708ull, sha256(test::bytes_of("hellp"))));
    CHECK_FALSE(parse_ack({p.data(), 39}));
    auto empty_note = parse_ack({p.data(), 40});
    REQUIRE(empty_note);
    CHECK(empty_note->note.empty());
}

TEST_CASE("ERROR payload: layout and parse") {
    std::vector<std::uint8_t> p;
    build_error(6, no_seq, "journal unavailable", p);
    CHECK(test::from_hex("0006ffffffffffffffff") ==
          std::vector<std::uint8_t>(p.begin(), p.begin() + 10));
    auto e = parse_error(p);
    REQUIRE(e);
    CHECK(e->code == 6);
    CHECK(e->ref_seq == no_seq);
    CHECK(e->reason == "journal unavailable");
    CHECK_FALSE(parse_error({p.data(), 9}));
}

TEST_CASE("every outcome code has a description") {
    for (int c = 1; c <= 7; ++c) CHECK(describe(static_cast<ProtoError>(c)) != "unknown error");
}
