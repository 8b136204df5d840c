// PSK files: loading with every error, and generation.
#include "psk.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace secmsg;
namespace fs = std::filesystem;

namespace {

// A private temporary directory, removed with everything in it.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "secmsg-test-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() { fs::remove_all(path); }
};

std::string write_file(const fs::path& p, const std::string& text, mode_t mode = 0600) {
    std::ofstream(p, std::ios::binary) << text;
    ::chmod(p.c_str(), mode);
    return p.string();
}

const std::string valid = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31

KeyFileError::Kind load_error(const std::string& path, std::string* what = nullptr) {
    try {
        load_psk_file(path);
    } catch (const KeyFileError& e) {
        if (what) *what = e.what();
        return e.kind();
    }
    FAIL("no error for " << path);
    return KeyFileError::Kind::io;
}

}  // namespace

TEST_CASE("a valid PSK file loads, with or without one trailing newline") {
    TempDir d;
    for (const auto& text : {valid, valid + "\n"}) {
        auto key = load_psk_file(write_file(d.path / "psk", text));
        REQUIRE(key.size() == 32);
        for (std::size_t i = 0; i < 32; ++i) CHECK(key.data()[i] == i);
    }
}

TEST_CASE("every PSK file error is named clearly") {
    TempDir d;
    std::string what;

    CHECK(load_error((d.path / "absent").string(), &what) == KeyFileError::Kind::missing);
    CHECK(what.find((d.path / "absent").string()) != std::string::npos);

    const auto loose = write_file(d.path / "loose", valid, 0644);
    CHECK(load_error(loose, &what) == KeyFileError::Kind::permissions);
    CHECK(what.find("0644") != std::string::npos);
    CHECK(what.find("0600") != std::string::npos);
    CHECK(load_error(write_file(d.path / "g", valid, 0640)) == KeyFileError::Kind::permissions);
    CHECK(load_error(write_file(d.path / "o", valid, 0602)) == KeyFileError::Kind::permissions);
    CHECK_NOTHROW(load_psk_file(write_file(d.path / "ro", valid, 0400)));

    CHECK(load_error(d.path.string(), &what) == KeyFileError::Kind::unreadable);  // a directory

    const std::string bad_texts[] = {
        "",
        "\n",
        valid.substr(0, 43),                                   // short
        valid + "A",                                           // long
        valid + "\n\n",                                        // two newlines
        valid + " ",                                           // trailing space
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",         // padding missing
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh*=",        // bad character
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",        // non-canonical last bits
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAAA=",    // 35 bytes
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",             // 30 bytes
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-_8=",        // URL-safe alphabet
    };
    int i = 0;
    for (const auto& t : bad_texts) {
        CAPTURE(t);
        const auto p = write_file(d.path / ("bad" + std::to_string(i++)), t);
        CHECK(load_error(p, &what) == KeyFileError::Kind::format);
        CHECK(what.find(p) != std::string::npos);
    }

    if (::geteuid() == 0) return;  // root reads anything: the next check needs a user
    const auto unreadable = write_file(d.path / "unreadable", valid, 0000);
    CHECK(load_error(unreadable) == KeyFileError::Kind::unreadable);
}

TEST_CASE("generated PSK files: mode 0600, loadable, distinct, never overwritten unless asked") {
    TempDir d;
    const auto a = (d.path / "a").string(), b = (d.path / "b").string();
    generate_psk_file(a);
    generate_psk_file(b);
    struct stat st{};
    REQUIRE(::stat(a.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    auto ka = load_psk_file(a), kb = load_psk_file(b);
    CHECK(std::vector<std::uint8_t>(ka.data(), ka.data() + 32) != std::vector<std::uint8_t>(kb.data(), kb.data() + 32));

    CHECK_THROWS_AS(generate_psk_file(a), KeyFileError);
    auto again = load_psk_file(a);
    CHECK(std::equal(ka.data(), ka.data() + 32, again.data()));  // untouched

    generate_psk_file(a, true);
    auto replaced = load_psk_file(a);
    CHECK_FALSE(std::equal(ka.data(), ka.data() + 32, replaced.data()));

    int leftovers = 0;
    for (const auto& e : fs::directory_iterator(d.path)) leftovers += e.path().filename().string().find(".tmp") != std::string::npos;
    CHECK(leftovers == 0);

    CHECK_THROWS_AS(generate_psk_file((d.path / "no" / "such" / "dir").string()), KeyFileError);
}

TEST_CASE("secret bytes are zeroed on creation and movable") {
    SecretBytes s(32);
    for (std::size_t i = 0; i < 32; ++i) CHECK(s.data()[i] == 0);
    s.data()[0] = 9;
    SecretBytes t = std::move(s);
    CHECK(s.data() == nullptr);
    CHECK(t.data()[0] == 9);
    SecretBytes empty;
    t = std::move(empty);  // releasing and taking an empty one is fine
    CHECK(t.size() == 0);
}
