// PSK files: loading with every error, and generation; the credential-file
// checks under PSK, key and certificate loading (lib/files).
#include "keys/files.hpp"
#include "keys/psk.hpp"

#include <doctest/doctest.h>
#include <sodium.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <thread>
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
        auto keys = load_psk_file(write_file(d.path / "psk", text));
        REQUIRE(keys.size() == 1);
        const auto& key = keys[0];
        REQUIRE(key.size() == 32);
        for (std::size_t i = 0; i < 32; ++i) CHECK(key.data()[i] == i);
    }
}

namespace {

// The base64 line of 32 bytes all equal to `fill`.
std::string key_line(std::uint8_t fill) {
    char b64[45];
    const std::vector<std::uint8_t> raw(32, fill);
    sodium_bin2base64(b64, sizeof b64, raw.data(), raw.size(), sodium_base64_VARIANT_ORIGINAL);
    return b64;
}

std::string lines_of(std::initializer_list<std::string> lines, bool last_newline = true) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    if (!last_newline) out.pop_back();
    return out;
}

}  // namespace

TEST_CASE("a PSK file with several keys loads them in file order; the sender's is the first") {
    TempDir d;
    for (bool last_newline : {true, false}) {
        CAPTURE(last_newline);
        const auto p =
            write_file(d.path / "psk", lines_of({key_line(7), valid, key_line(9)}, last_newline));
        const auto keys = load_psk_file(p);
        REQUIRE(keys.size() == 3);
        CHECK(keys[0].data()[0] == 7);
        CHECK(keys[1].data()[31] == 31);
        CHECK(keys[2].data()[0] == 9);
        const auto first = load_sender_psk(p);
        CHECK(std::equal(first.data(), first.data() + 32, keys[0].data()));
    }
    std::string eight;
    for (std::uint8_t i = 0; i < max_psk_keys; ++i) eight += key_line(i) + "\n";
    const auto keys = parse_psk_text(eight, "eight");
    REQUIRE(keys.size() == 8);
    for (std::uint8_t i = 0; i < 8; ++i) CHECK(keys[i].data()[5] == i);
}

TEST_CASE("multi-key PSK files: each error names the file and the line") {
    TempDir d;
    std::string nine;
    for (std::uint8_t i = 0; i < 9; ++i) nine += key_line(i) + "\n";
    struct Case {
        std::string text, expected;
    };
    const Case cases[] = {
        {"", " is empty: expected one key per line"},
        {lines_of({valid, ""}), " line 2 is empty: blank lines are not allowed"},
        {lines_of({valid, "", key_line(1)}), " line 2 is empty: blank lines are not allowed"},
        {lines_of({"# old key", valid}), " line 1: comments are not allowed"},
        {lines_of({valid, key_line(1) + "\r"}), " line 2 ends with a carriage return"},
        {lines_of({valid, key_line(1), key_line(2).substr(0, 43)}),
         " line 3: not a secmsg key: expected the base64 of exactly 32 bytes (44 characters), "
         "found 43"},
        {lines_of({valid, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh*="}),
         " line 2: not a secmsg key: invalid base64"},
        {lines_of({key_line(3), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9="}),
         " line 2: not a secmsg key: "},  // stray bits
        {lines_of({valid, key_line(1), valid}),
         " line 3 holds the same key as line 1: each key may appear once"},
        {nine, " has 9 lines: it may hold at most 8 keys, one per line"},
        {nine + "not even a key", " has 10 lines: it may hold at most 8 keys"},
    };
    int i = 0;
    for (const auto& c : cases) {
        CAPTURE(c.text);
        const auto p = write_file(d.path / ("multi" + std::to_string(i++)), c.text);
        std::string what;
        CHECK(load_error(p, &what) == KeyFileError::Kind::format);
        CHECK_MESSAGE(what.rfind("PSK file " + p + c.expected, 0) == 0, what);
        // The sender reads the same file: every line is checked for it too.
        CHECK_THROWS_AS(load_sender_psk(p), KeyFileError);
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

    CHECK(load_error(d.path.string(), &what) == KeyFileError::Kind::not_regular);  // a directory
    CHECK(what.find("a directory, not a regular file") != std::string::npos);
    CHECK(load_error(write_file(d.path / "long", std::string(5000, 'A')), &what) ==
          KeyFileError::Kind::too_large);

    const std::string bad_texts[] = {
        "",
        "\n",
        valid.substr(0, 43),                                 // short
        valid + "A",                                         // long
        valid + "\n\n",                                      // two newlines
        valid + " ",                                         // trailing space
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",       // padding missing
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh*=",      // bad character
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",      // non-canonical last bits
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAAA=",  // 35 bytes
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",          // 30 bytes
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-_8=",      // URL-safe alphabet
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

namespace {

// Runs load() on another thread and says whether it returned (or threw)
// within a few seconds.  When it did not, a writer opens the FIFO so that
// a blocked open() returns and the thread can be joined.
bool returns_promptly(const std::string& fifo, const std::function<void()>& load) {
    std::promise<void> done;
    auto finished = done.get_future();
    std::thread t([&] {
        try {
            load();
        } catch (...) {}
        done.set_value();
    });
    const bool prompt = finished.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    if (!prompt) ::close(::open(fifo.c_str(), O_WRONLY | O_NONBLOCK));
    t.join();
    return prompt;
}

KeyFileError::Kind read_error(const std::string& path, CredentialKind kind,
                              std::string* what = nullptr) {
    try {
        read_credential_file(path, kind);
    } catch (const KeyFileError& e) {
        if (what) *what = e.what();
        return e.kind();
    }
    FAIL("no error for " << path);
    return KeyFileError::Kind::io;
}

constexpr CredentialKind all_kinds[] = {CredentialKind::psk, CredentialKind::private_key,
                                        CredentialKind::certificate};

// Sets a POSIX access ACL: owner r--, one named user with `perm`, group
// ---, mask `perm`, other ---; false where the file system has no ACLs.
bool set_acl(const std::string& path, std::uint32_t named_uid, std::uint16_t perm) {
    struct [[gnu::packed]] Entry {
        std::uint16_t tag, perm;
        std::uint32_t id;
    };
    struct [[gnu::packed]] {
        std::uint32_t version = 2;
        Entry e[5];
    } acl;
    acl.e[0] = {0x01, 4, 0xffffffff};     // user_obj
    acl.e[1] = {0x02, perm, named_uid};   // user
    acl.e[2] = {0x04, 0, 0xffffffff};     // group_obj
    acl.e[3] = {0x10, perm, 0xffffffff};  // mask
    acl.e[4] = {0x20, 0, 0xffffffff};     // other
    return ::setxattr(path.c_str(), "system.posix_acl_access", &acl, sizeof acl, 0) == 0;
}

}  // namespace

TEST_CASE("credential files: a FIFO is refused at once, never waited on") {
    TempDir d;
    const auto fifo = (d.path / "fifo").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(returns_promptly(fifo, [&] { load_psk_file(fifo); }));
    std::string what;
    for (auto kind : all_kinds) {
        CAPTURE(credential_label(kind));
        CHECK(returns_promptly(fifo, [&] {
            CHECK(read_error(fifo, kind, &what) == KeyFileError::Kind::not_regular);
        }));
        CHECK(what ==
              std::string(credential_label(kind)) + " " + fifo + " is a FIFO, not a regular file");
    }
    // A link to a FIFO is the FIFO.
    const auto link = (d.path / "link").string();
    REQUIRE(::symlink(fifo.c_str(), link.c_str()) == 0);
    CHECK(returns_promptly(fifo, [&] {
        CHECK(read_error(link, CredentialKind::psk, &what) == KeyFileError::Kind::not_regular);
    }));
}

TEST_CASE("credential files: links are followed and their target checked; directories, sizes") {
    TempDir d;
    const auto target = write_file(d.path / "psk", valid);
    const auto link = (d.path / "link").string();
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
    CHECK(load_sender_psk(link).size() == psk_size);  // certbot's live/ files are links
    ::chmod(target.c_str(), 0644);
    CHECK(load_error(link) == KeyFileError::Kind::permissions);
    const auto dangling = (d.path / "dangling").string();
    REQUIRE(::symlink((d.path / "nothing").c_str(), dangling.c_str()) == 0);
    CHECK(read_error(dangling, CredentialKind::certificate) == KeyFileError::Kind::missing);

    std::string what;
    CHECK(read_error(d.path.string(), CredentialKind::private_key, &what) ==
          KeyFileError::Kind::not_regular);
    CHECK(what.find("is a directory") != std::string::npos);
    const auto big = write_file(d.path / "big", std::string((1 << 20) + 1, 'x'), 0644);
    CHECK(read_error(big, CredentialKind::certificate, &what) == KeyFileError::Kind::too_large);
    CHECK(what.find(big) != std::string::npos);
    CHECK(read_credential_file(write_file(d.path / "small", "x", 0644), CredentialKind::certificate,
                               1)
              .bytes.size() == 1);
}

TEST_CASE("credential files: private keys and PSKs are private, certificates may be public") {
    TempDir d;
    std::string what;
    const auto key = write_file(d.path / "tls.key", "key", 0644);
    CHECK(read_error(key, CredentialKind::private_key, &what) == KeyFileError::Kind::permissions);
    CHECK(what == "private key file " + key +
                      " has mode 0644, readable or writable by others; it must be "
                      "0600 or stricter (chmod 600 " +
                      key + ")");
    for (mode_t m : {0640, 0604, 0660, 0620}) {
        CAPTURE(m);
        const auto suffix = std::to_string(m);
        CHECK(read_error(write_file(d.path / ("k" + suffix), "key", m),
                         CredentialKind::private_key) == KeyFileError::Kind::permissions);
        CHECK(load_error(write_file(d.path / ("p" + suffix), valid, m)) ==
              KeyFileError::Kind::permissions);
    }
    CHECK_NOTHROW(
        read_credential_file(write_file(d.path / "k4", "key", 0400), CredentialKind::private_key));

    CHECK_NOTHROW(
        read_credential_file(write_file(d.path / "c", "cert", 0644), CredentialKind::certificate));
    CHECK_NOTHROW(
        read_credential_file(write_file(d.path / "c4", "cert", 0444), CredentialKind::certificate));
    for (mode_t m : {0664, 0646, 0666}) {
        CAPTURE(m);
        const auto c = write_file(d.path / ("c" + std::to_string(m)), "cert", m);
        CHECK(read_error(c, CredentialKind::certificate, &what) == KeyFileError::Kind::permissions);
        CHECK(what.find("chmod go-w " + c) != std::string::npos);
    }
}

TEST_CASE(
    "credential files: an ACL entry for this process's user is fine, for anyone else it is not") {
    TempDir d;
    // What systemd's LoadCredential= makes for a service user: owned by
    // root, 0400, plus user:SERVICE:r--, which stat shows as 0440.
    const auto psk = write_file(d.path / "psk", valid, 0400);
    if (!set_acl(psk, ::geteuid(), 4)) {
        MESSAGE("no POSIX ACLs here (" << std::strerror(errno) << "): skipped");
        return;
    }
    struct stat st {};
    REQUIRE(::stat(psk.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0440);
    CHECK(load_sender_psk(psk).size() == psk_size);

    const auto shared = write_file(d.path / "shared", valid, 0400);
    REQUIRE(set_acl(shared, ::geteuid() + 1, 4));
    std::string what;
    CHECK(load_error(shared, &what) == KeyFileError::Kind::permissions);
    CHECK(what.find("setfacl -b " + shared) != std::string::npos);
}

TEST_CASE("credential files: owned by root or by this process's user only") {
    if (::geteuid() != 0) {
        MESSAGE("not root: cannot give a file to another user; skipped");
        return;
    }
    TempDir d;
    std::string what;
    for (auto kind : all_kinds) {
        CAPTURE(credential_label(kind));
        const auto p = write_file(d.path / std::string(credential_label(kind)), valid, 0600);
        REQUIRE(::chown(p.c_str(), 65534, 65534) == 0);
        CHECK(read_error(p, kind, &what) == KeyFileError::Kind::owner);
        CHECK(what.find("owned by uid 65534") != std::string::npos);
        CHECK(what.find("chown root " + p) != std::string::npos);
    }
    const auto p = write_file(d.path / "psk", valid, 0600);
    REQUIRE(::chown(p.c_str(), 65534, 65534) == 0);
    CHECK(load_error(p) == KeyFileError::Kind::owner);
}

TEST_CASE("credential directories: writable by no one but the owner") {
    TempDir d;
    CHECK_NOTHROW(check_credential_directory(d.path.string()));
    ::chmod(d.path.c_str(), 0755);
    CHECK_NOTHROW(check_credential_directory(d.path.string()));
    for (mode_t m : {01777, 0775, 0757}) {
        CAPTURE(m);
        ::chmod(d.path.c_str(), m);
        try {
            check_credential_directory(d.path.string());
            FAIL("no error");
        } catch (const KeyFileError& e) {
            CHECK(e.kind() == KeyFileError::Kind::permissions);
            CHECK(std::string(e.what()).find("chmod go-w " + d.path.string()) != std::string::npos);
        }
    }
    ::chmod(d.path.c_str(), 0700);
    if (::geteuid() != 0) return;
    REQUIRE(::chown(d.path.c_str(), 65534, 65534) == 0);
    CHECK_THROWS_WITH_AS(check_credential_directory(d.path.string()),
                         doctest::Contains("owned by uid 65534"), KeyFileError);
}

TEST_CASE("generated PSK files: mode 0600, loadable, distinct, never overwritten unless asked") {
    TempDir d;
    const auto a = (d.path / "a").string(), b = (d.path / "b").string();
    generate_psk_file(a);
    generate_psk_file(b);
    struct stat st {};
    REQUIRE(::stat(a.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    auto ka = load_sender_psk(a), kb = load_sender_psk(b);
    CHECK(std::vector<std::uint8_t>(ka.data(), ka.data() + 32) !=
          std::vector<std::uint8_t>(kb.data(), kb.data() + 32));

    CHECK_THROWS_AS(generate_psk_file(a), KeyFileError);
    auto again = load_sender_psk(a);
    CHECK(std::equal(ka.data(), ka.data() + 32, again.data()));  // untouched

    generate_psk_file(a, secmsg::Existing::replace);
    auto replaced = load_sender_psk(a);
    CHECK_FALSE(std::equal(ka.data(), ka.data() + 32, replaced.data()));

    int leftovers = 0;
    for (const auto& e : fs::directory_iterator(d.path))
        leftovers += e.path().filename().string().find(".tmp") != std::string::npos;
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
