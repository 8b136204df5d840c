// Message sources over a real pipe: line splitting across reads, the last
// line without '\n', empty lines, whole binary input.
#include "message_source.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

struct Pipe {
    Pipe() { REQUIRE(::pipe2(fds, O_CLOEXEC) == 0); }
    ~Pipe() {
        if (fds[0] >= 0) ::close(fds[0]);
        closew();
    }
    void put(std::string_view s) {
        REQUIRE(::write(fds[1], s.data(), s.size()) == static_cast<ssize_t>(s.size()));
    }
    void closew() {
        if (fds[1] >= 0) ::close(fds[1]);
        fds[1] = -1;
    }
    int fds[2] = {-1, -1};
};

using Next = secmsg::MessageSource::Next;

std::string text(const std::vector<std::uint8_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("lines split across reads, empty lines kept, last line without newline") {
    Pipe p;
    secmsg::LineSource src(p.fds[0]);
    std::vector<std::uint8_t> msg;
    CHECK(src.next(msg) == Next::wait);
    p.put("hel");
    src.on_readable();
    CHECK(src.next(msg) == Next::wait);
    p.put("lo\n\nwor");
    src.on_readable();
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == "hello");
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == "");
    CHECK(src.next(msg) == Next::wait);
    p.put("ld");
    p.closew();
    src.on_readable();
    src.on_readable();  // end of input
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == "world");
    CHECK(src.next(msg) == Next::end);
    CHECK(src.at_eof());
}

TEST_CASE("whole input is one binary message, sent once") {
    Pipe p;
    secmsg::WholeSource src(p.fds[0]);
    std::vector<std::uint8_t> msg;
    const std::string data("a\0b\nc\r\n", 7);
    p.put(data);
    p.closew();
    CHECK(src.next(msg) == Next::wait);
    src.on_readable();
    src.on_readable();
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == data);
    CHECK(src.next(msg) == Next::end);
}

TEST_CASE("a list of messages, then the end") {
    secmsg::ListSource src({"one", ""});
    std::vector<std::uint8_t> msg;
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == "one");
    REQUIRE(src.next(msg) == Next::message);
    CHECK(msg.empty());
    CHECK(src.next(msg) == Next::end);
}

TEST_CASE("whole input above the limit is refused after limit + 1 bytes, no more read") {
    Pipe p;
    secmsg::WholeSource src(p.fds[0], 10);
    p.put("0123456789");
    src.on_readable();
    std::vector<std::uint8_t> msg;
    CHECK(src.next(msg) == Next::wait);
    p.put("abcdef");
    CHECK_THROWS_AS(src.on_readable(), secmsg::InputTooLarge);
    // Only one byte past the limit was taken from the pipe.
    char rest[16];
    CHECK(::read(p.fds[0], rest, sizeof rest) == 5);
}

TEST_CASE("whole input of exactly the limit is one message; read_to_end waits for the end") {
    Pipe p;
    secmsg::WholeSource src(p.fds[0], 10);
    p.put("0123456789");
    p.closew();
    src.read_to_end();
    std::vector<std::uint8_t> msg;
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == "0123456789");
}

TEST_CASE("a line longer than the limit is refused before it is all buffered") {
    Pipe p;
    secmsg::LineSource src(p.fds[0], 8);
    std::vector<std::uint8_t> msg;
    p.put("12345678\nabc");
    src.on_readable();
    REQUIRE(src.next(msg) == Next::message);
    CHECK(text(msg) == "12345678");  // exactly the limit is fine
    CHECK(src.next(msg) == Next::wait);
    p.put("defghi");  // 9 bytes and no end in sight
    CHECK_THROWS_AS(src.on_readable(), secmsg::InputTooLarge);
}

TEST_CASE("a too long line that ends within one read is refused too") {
    Pipe p;
    secmsg::LineSource src(p.fds[0], 4);
    std::vector<std::uint8_t> msg;
    p.put("123456\n");
    src.on_readable();
    CHECK_THROWS_AS(src.next(msg), secmsg::InputTooLarge);
}
