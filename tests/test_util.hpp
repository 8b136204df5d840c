// Small helpers shared by the unit tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <string_view>
#include <vector>

namespace secmsg::test {

inline std::vector<std::uint8_t> from_hex(std::string_view h) {
    std::vector<std::uint8_t> out;
    if (h == "-") return out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(
            static_cast<std::uint8_t>(std::stoul(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}

inline std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

// A connected, non-blocking AF_UNIX stream pair, closed at the end.
struct SocketPair {
    int fds[2] = {-1, -1};
    SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0); }
    ~SocketPair() {
        ::close(fds[0]);
        ::close(fds[1]);
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;
};

// A temporary directory (/tmp/PREFIX-XXXXXX) filled by a Python script
// (saved as gen.py in it, run with the directory as its argument: test
// certificates from python3-cryptography), removed at the end.
struct ScriptDir {
    std::filesystem::path dir;
    ScriptDir(const std::string& prefix, const char* python) {
        std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir = tmpl;
        std::ofstream(dir / "gen.py") << python;
        const std::string cmd =
            "/usr/bin/python3 " + (dir / "gen.py").string() + " " + dir.string();
        REQUIRE(std::system(cmd.c_str()) == 0);
    }
    ~ScriptDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    ScriptDir(const ScriptDir&) = delete;
    ScriptDir& operator=(const ScriptDir&) = delete;
    std::string path(const std::string& f) const { return (dir / f).string(); }
};

}  // namespace secmsg::test
