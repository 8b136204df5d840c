// escape_payload: known answers.  What a server (or a client) writes must
// reach a terminal or a log line as text that cannot steer it.
#include "proto/escape.hpp"

#include <doctest/doctest.h>

#include <string>

using secmsg::escape_payload;

TEST_CASE("printable ASCII and valid UTF-8 are kept as they are") {
    CHECK(escape_payload(std::string_view("recorded")) == "recorded");
    CHECK(
        escape_payload(std::string_view("gr\xc3\xbc\xc3\x9f dich \xe2\x82\xac \xf0\x9f\x98\x80")) ==
        "gr\xc3\xbc\xc3\x9f dich \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST_CASE("C0, DEL and C1 controls, quotes and backslashes are escaped") {
    CHECK(escape_payload(std::string_view("\x1b]0;owned\x07\x1b[2J")) ==
          "\\x1b]0;owned\\x07\\x1b[2J");
    CHECK(escape_payload(std::string_view("a\nb\tc\rd")) == "a\\nb\\tc\\rd");
    CHECK(escape_payload(std::string_view("\x7f")) == "\\x7f");
    CHECK(escape_payload(std::string_view("q\"\\")) == "q\\\"\\\\");
    CHECK(escape_payload(std::string_view("\x00", 1)) == "\\x00");
    // C1 as a raw byte (invalid UTF-8) and encoded as UTF-8 (U+009B, CSI).
    CHECK(escape_payload(std::string_view("\x9b"
                                          "31m")) == "\\x9b31m");
    CHECK(escape_payload(std::string_view("\xc2\x9b"
                                          "31m")) == "\\xc2\\x9b31m");
    // U+2028 LINE SEPARATOR would split a line in some viewers.
    CHECK(escape_payload(std::string_view("\xe2\x80\xa8")) == "\\xe2\\x80\\xa8");
}

TEST_CASE("invalid UTF-8 is escaped byte by byte") {
    CHECK(escape_payload(std::string_view("\xc3")) == "\\xc3");                    // truncated
    CHECK(escape_payload(std::string_view("\xc0\xaf")) == "\\xc0\\xaf");           // overlong
    CHECK(escape_payload(std::string_view("\xed\xa0\x80")) == "\\xed\\xa0\\x80");  // surrogate
    CHECK(escape_payload(std::string_view("\xf4\x90\x80\x80")) ==
          "\\xf4\\x90\\x80\\x80");  // > U+10FFFF
}

TEST_CASE("a limit cuts the rendering and gives the full size") {
    const std::string long_text(5000, 'a');
    const std::string shown = escape_payload(long_text, 100);
    CHECK(shown == std::string(100, 'a') + "... (5000 bytes)");
    CHECK(escape_payload(std::string_view("short"), 100) == "short");
}
