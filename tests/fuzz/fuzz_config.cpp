// Fuzz target "config": secmsgd's configuration file as CLI11 reads it
// (CLI::ConfigINI, through App::parse_from_stream: the same reader and the
// same conversion of items to options as app.set_config's file), with
// secmsgd's options, types, validators and allow_config_extras(false).
//
// The option set is a copy of daemon/main.cpp's main(): keep the two in
// step (names, types, checks).  The daemon's own range checks after the
// parse (seconds_opt, --max-payload, ...) are plain comparisons and not
// repeated here.  Better: the daemon's option set in a function of its own
// that this target calls (the daemon's owners' file).
#include "fuzz.hpp"

#include "keys/client_identity.hpp"
#include "proto/protocol.hpp"

#include <CLI/CLI.hpp>

#include <sstream>
#include <string>

namespace secmsg::fuzz {
namespace {

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = default_port;
    std::vector<std::string> listen;
    std::string cert, key, psk_file;
    std::string record = "auto";
    std::size_t max_connections = 10000;
    double handshake_timeout = 10, idle_timeout = 300, shutdown_timeout = 5;
    std::size_t max_payload = default_max_payload;
    std::size_t max_output = 1u << 20;
    std::string tls_min_version = "1.3";
    std::string tls_ciphers, tls_groups;
    bool check_config = false;
    std::string init_credentials;
    std::string key_type = "ecdsa";
    std::string client_ca;
    std::vector<std::string> allow_client;
};

void add_options(CLI::App& app, Options& o) {
    app.allow_config_extras(false);
    app.add_option("--host", o.host)->capture_default_str();
    app.add_option("--port", o.port)->capture_default_str()->check(CLI::Range(1, 65535));
    app.add_option("--listen", o.listen);
    app.add_option("--cert", o.cert);
    app.add_option("--key", o.key);
    app.add_option("--psk-file", o.psk_file);
    app.add_option("--record", o.record)
        ->check(CLI::IsMember({"auto", "journal", "stderr", "none"}));
    app.add_option("--max-connections", o.max_connections)->capture_default_str();
    app.add_option("--handshake-timeout", o.handshake_timeout)->capture_default_str();
    app.add_option("--idle-timeout", o.idle_timeout)->capture_default_str();
    app.add_option("--shutdown-timeout", o.shutdown_timeout)->capture_default_str();
    app.add_option("--max-payload", o.max_payload)->capture_default_str();
    app.add_option("--max-output", o.max_output)->capture_default_str();
    app.add_option("--tls-min-version", o.tls_min_version)
        ->capture_default_str()
        ->check(CLI::IsMember({"1.2", "1.3"}));
    app.add_option("--tls-ciphers", o.tls_ciphers);
    app.add_option("--tls-groups", o.tls_groups);
    app.add_option("--client-ca", o.client_ca);
    app.add_option("--allow-client", o.allow_client);
    app.add_flag("--check-config", o.check_config);
    app.add_option("--init-credentials", o.init_credentials);
    app.add_option("--key-type", o.key_type)
        ->capture_default_str()
        ->check(CLI::IsMember({"ecdsa", "ed25519"}));
}

}  // namespace

int config(const std::uint8_t* data, std::size_t size) {
    Options o;
    CLI::App app{"secmsgd (fuzz)"};
    add_options(app, o);
    std::istringstream file(std::string(reinterpret_cast<const char*>(data), size));
    try {
        app.parse_from_stream(file);
    } catch (const CLI::ParseError&) {
        return 0;  // what secmsgd reports as exit 64 or 78
    }
    // Accepted: the values are what the options' checks allow.
    SECMSG_FUZZ_CHECK(o.port >= 1);
    SECMSG_FUZZ_CHECK(o.tls_min_version == "1.2" || o.tls_min_version == "1.3");
    SECMSG_FUZZ_CHECK(o.key_type == "ecdsa" || o.key_type == "ed25519");
    // --allow-client entries as make_server_context parses them: an entry
    // is refused with ClientIdentityError or is what its kind says.
    for (const auto& text : o.allow_client) {
        try {
            const AllowedClient e = parse_allowed_client(text);
            SECMSG_FUZZ_CHECK(e.text == text);
            SECMSG_FUZZ_CHECK((e.kind == AllowedClient::Kind::pin) == text.starts_with(pin_prefix));
            for (char c : text) SECMSG_FUZZ_CHECK(c > ' ' && c < 0x7f);
        } catch (const ClientIdentityError&) {}
    }
    return 0;
}

}  // namespace secmsg::fuzz
