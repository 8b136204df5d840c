// A TLS 1.3 peer from OpenSSL's libssl (another implementation), loaded at
// run time so that the build needs no OpenSSL headers: wolfSSL's client asks
// for a KeyUpdate answer only once until it has read one, OpenSSL asks every
// time, as an attacker would.  Used by the TLS unit tests and by
// keyupdate-flood (the hostile-load test's KeyUpdate streamer).
#pragma once

#include <dlfcn.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace secmsg::testing {

struct OpenSslPeer {
    void* lib = nullptr;
    void* ctx = nullptr;
    void* ssl = nullptr;
    const void* (*o_TLS_client_method)();
    void* (*o_SSL_CTX_new)(const void*);
    void (*o_SSL_CTX_free)(void*);
    void* (*o_SSL_new)(void*);
    void (*o_SSL_free)(void*);
    int (*o_SSL_set_fd)(void*, int);
    int (*o_SSL_connect)(void*);
    int (*o_SSL_get_error)(const void*, int);
    int (*o_SSL_key_update)(void*, int);
    int (*o_SSL_do_handshake)(void*);
    int (*o_SSL_read)(void*, void*, int);
    // (Members prefixed: wolfSSL's headers define some of the OpenSSL names
    // as macros.)
    static constexpr int want_read = 2, want_write = 3, key_update_requested = 1;

    template <class F>
    bool sym(F& f, const char* name) {
        f = reinterpret_cast<F>(::dlsym(lib, name));
        return f != nullptr;
    }
    // False when there is no libssl.so.3 to load; `error` says what else
    // went wrong (empty when only the library is missing).
    bool load(int fd, std::string& error) {
        lib = ::dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
        if (!lib) return false;
        if (!(sym(o_TLS_client_method, "TLS_client_method") && sym(o_SSL_CTX_new, "SSL_CTX_new") &&
              sym(o_SSL_CTX_free, "SSL_CTX_free") && sym(o_SSL_new, "SSL_new") &&
              sym(o_SSL_free, "SSL_free") && sym(o_SSL_set_fd, "SSL_set_fd") &&
              sym(o_SSL_connect, "SSL_connect") && sym(o_SSL_get_error, "SSL_get_error") &&
              sym(o_SSL_key_update, "SSL_key_update") &&
              sym(o_SSL_do_handshake, "SSL_do_handshake") && sym(o_SSL_read, "SSL_read"))) {
            error = "libssl.so.3 lacks a function this peer needs";
            return false;
        }
        ctx = o_SSL_CTX_new(o_TLS_client_method());  // verifies nothing by default
        if (ctx) ssl = o_SSL_new(ctx);
        if (!ssl || o_SSL_set_fd(ssl, fd) != 1) {
            error = "cannot create an OpenSSL session";
            return false;
        }
        return true;
    }
    ~OpenSslPeer() {
        if (ssl) o_SSL_free(ssl);
        if (ctx) o_SSL_CTX_free(ctx);
        if (lib) ::dlclose(lib);
    }
    // One step of the handshake: 1 done, 0 wants more, -1 failed.
    int connect_step() {
        int r = o_SSL_connect(ssl);
        if (r == 1) return 1;
        int e = o_SSL_get_error(ssl, r);
        return e == want_read || e == want_write ? 0 : -1;
    }
    // Sends KeyUpdate(update_requested): true when it has left.
    bool key_update() {
        if (o_SSL_key_update(ssl, key_update_requested) != 1) return false;
        return o_SSL_do_handshake(ssl) == 1;
    }
    // Reads what has come (KeyUpdate answers are handled inside), appending
    // application data to `out`, until want-read or want-write (true) or
    // an error or the end of the stream (false).
    bool read_all(std::vector<std::uint8_t>& out) {
        std::array<std::uint8_t, 16384> buf{};
        for (;;) {
            int n = o_SSL_read(ssl, buf.data(), static_cast<int>(buf.size()));
            if (n <= 0) {
                int e = o_SSL_get_error(ssl, n);
                return e == want_read || e == want_write;
            }
            out.insert(out.end(), buf.begin(), buf.begin() + n);
        }
    }
};

}  // namespace secmsg::testing
