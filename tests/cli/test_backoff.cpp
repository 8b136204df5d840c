// The waits between reconnection attempts: known answers.
#include "backoff.hpp"

#include <doctest/doctest.h>

#include <vector>

using ms = std::chrono::milliseconds;

TEST_CASE("delays double from the first up to the cap") {
    secmsg::Backoff b(ms(250), ms(8000));
    std::vector<long long> got;
    for (int i = 0; i < 8; ++i) got.push_back(b.next(1.0).count());
    CHECK(got == std::vector<long long>{250, 500, 1000, 2000, 4000, 8000, 8000, 8000});
}

TEST_CASE("jitter scales each delay between half and all of it") {
    secmsg::Backoff low(ms(250), ms(8000)), mid(ms(250), ms(8000));
    CHECK(low.next(0.0) == ms(125));
    CHECK(low.next(-3.0) == ms(250));  // clamped to 0: half of 500
    CHECK(mid.next(0.5) == ms(188));   // 250 * 0.75, rounded
    CHECK(mid.next(7.0) == ms(500));   // clamped to 1
    secmsg::Backoff r(ms(250), ms(8000));
    for (int i = 0; i < 200; ++i) {
        const auto d = r.next();
        CHECK(d >= ms(std::min(125 << std::min(i, 5), 4000)));
        CHECK(d <= ms(8000));
    }
}

TEST_CASE("reset starts again from the first delay") {
    secmsg::Backoff b(ms(100), ms(1000));
    b.next(1.0);
    b.next(1.0);
    CHECK(b.next(1.0) == ms(400));
    b.reset();
    CHECK(b.next(1.0) == ms(100));
}

TEST_CASE("a cap below the first delay is the first delay") {
    secmsg::Backoff b(ms(500), ms(100));
    CHECK(b.next(1.0) == ms(500));
    CHECK(b.next(1.0) == ms(500));
}
