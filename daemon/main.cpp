// secmsgd: options (command line and configuration file), credentials,
// listeners, and the wiring of the server to the loop, signals and systemd.
#include "io/cidr.hpp"
#include "io/net.hpp"
#include "io/reactor.hpp"
#include "keys/credentials.hpp"
#include "keys/psk.hpp"
#include "log.hpp"
#include "notify.hpp"
#include "recorder.hpp"
#include "secmsg_config.h"
#include "server.hpp"
#include "stderr_stream.hpp"
#include "tls/build_info.hpp"
#include "tls/session.hpp"

#include <CLI/CLI.hpp>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <unistd.h>

using namespace secmsg;
using namespace secmsg::daemon;

namespace {

// Exit statuses (sysexits.h): usage, configuration, and anything at run time.
constexpr int exit_usage = 64;
constexpr int exit_config = 78;
constexpr int exit_runtime = 1;

// A duration in seconds, as the options take it.
double seconds(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

// The command line and the configuration file.  Every default that a
// library struct also has (Limits, RecordOptions) is taken from that struct.
struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = default_port;
    std::vector<std::string> listen;
    bool reuse_port = false;
    std::vector<std::string> proxy_protocol_from;
    std::string cert, key, psk_file;
    std::string record = "auto";
    double record_timeout = seconds(RecordOptions{}.timeout);
    std::string journal_namespace;
    std::size_t max_connections = 10000;
    double shutdown_timeout = 5;
    // --max-payload, --max-output and --max-partial-input; the timeouts
    // below are set into it once checked.
    Limits limits;
    double handshake_timeout = seconds(limits.handshake_timeout);
    double idle_timeout = seconds(limits.idle_timeout);
    double frame_timeout = seconds(limits.frame_timeout);
    std::string tls_min_version = "1.3";
    std::string tls_ciphers, tls_groups;
    bool check_config = false;
    std::string init_credentials;
    std::string key_type = "ecdsa";
    std::string client_ca;  // mutual TLS (reloaded on SIGHUP)
    std::vector<std::string> allow_client;
    int argc = 0;  // the command line, read again on SIGHUP for the above
    char** argv = nullptr;
};

// A configuration problem: one line for the user, exit_config.
struct ConfigError : SetupError {
    using SetupError::SetupError;
};

std::chrono::milliseconds seconds_opt(double s, const char* name) {
    if (!(s > 0) || s > 86400.0 * 365)
        throw ConfigError(std::string(name) + " must be a positive number of seconds");
    return std::chrono::milliseconds(static_cast<long long>(s * 1000));
}

// Each of --cert/--key/--psk-file, when not given, is looked for file by
// file: $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=), then
// $STATE_DIRECTORY/NAME (made there on the first start by the unit's
// --init-credentials).  The first that exists wins.
void resolve_credential_paths(Options& o) {
    std::vector<std::string> dirs;
    for (const char* var : {"CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"}) {
        const char* v = std::getenv(var);
        if (!v) continue;
        std::string list = v;  // systemd passes several directories ':'-separated
        for (std::size_t start = 0; start <= list.size();) {
            auto end = list.find(':', start);
            if (end == std::string::npos) end = list.size();
            if (end > start) dirs.push_back(list.substr(start, end - start));
            start = end + 1;
        }
    }
    auto fill = [&](std::string& path, const char* name, const char* opt) {
        if (!path.empty()) return;
        for (const auto& d : dirs) {
            std::string candidate = d + "/" + name;
            if (::access(candidate.c_str(), F_OK) == 0) {
                path = candidate;
                return;
            }
        }
        throw ConfigError(std::string("no ") + opt + " given, and no " + name +
                          " in $CREDENTIALS_DIRECTORY or $STATE_DIRECTORY; create credentials "
                          "with secmsgd --init-credentials DIR");
    };
    fill(o.cert, "tls.crt", "--cert");
    fill(o.key, "tls.key", "--key");
    fill(o.psk_file, "psk", "--psk-file");
}

tls::ServerOptions tls_options(const Options& o) {
    tls::ServerOptions t;
    t.cert_file = o.cert;
    t.key_file = o.key;
    if (o.tls_min_version == "1.3")
        t.min_version = tls::Version::tls13;
    else if (o.tls_min_version == "1.2")
        t.min_version = tls::Version::tls12;
    else
        throw ConfigError("--tls-min-version must be 1.2 or 1.3 (got '" + o.tls_min_version + "')");
    t.ciphers = o.tls_ciphers;
    t.groups = o.tls_groups;
    t.client_ca_file = o.client_ca;
    t.allow_clients = o.allow_client;
    return t;
}

const std::string default_config = std::string(SECMSG_SYSCONFDIR) + "/secmsgd/secmsgd.conf";

// The mutual TLS options, on the command line's app and on reload's.
void add_client_options(CLI::App& app, Options& o) {
    app.add_option(
        "--client-ca", o.client_ca,
        "PEM CA certificates: every client must present a certificate that chains to one");
    app.add_option("--allow-client", o.allow_client,
                   "accept only these clients (repeatable): sha256:PIN of the client's key, or a "
                   "DNS name, URI or email address of its certificate (names need --client-ca)");
}

// On SIGHUP: --client-ca and --allow-client as the command line and the
// configuration file give them now (the command line still wins); the
// other options keep their start-up values.  Throws ConfigError.
void reread_client_options(Options& o) {
    Options fresh;
    CLI::App app;
    app.set_config("--config", default_config);
    app.allow_extras();  // every other option, already applied at start-up
    app.allow_config_extras(CLI::config_extras_mode::ignore);
    add_client_options(app, fresh);
    try {
        app.parse(o.argc, o.argv);
    } catch (const CLI::Error& e) {
        throw ConfigError(std::string("configuration file: ") + e.what());
    }
    o.client_ca = fresh.client_ca;
    o.allow_client = fresh.allow_client;
}

// Loads certificate, key and PSK; throws tls::TlsError or KeyFileError.
Credentials load_credentials(const Options& o) {
    Credentials c;
    c.tls = tls::make_server_context(tls_options(o));
    const auto psks = load_psk_file(o.psk_file);
    c.keys = std::make_shared<const KeyRing>(psks);
    return c;
}

// "(2 keys: FP1, FP2)": the fingerprints (SECMSG_KEY) new connections may use.
std::string key_list(const KeyRing& keys) {
    return "(" + std::to_string(keys.size()) + (keys.size() == 1 ? " key: " : " keys: ") +
           keys.fingerprints() + ")";
}

// The --proxy-protocol-from blocks; a bad one is a configuration error.
std::vector<net::Cidr> proxy_sources(const Options& o) {
    std::vector<net::Cidr> blocks;
    try {
        for (const auto& text : o.proxy_protocol_from) blocks.push_back(net::Cidr::parse(text));
    } catch (const net::NetError& e) {
        throw ConfigError(std::string("--proxy-protocol-from: ") + e.what());
    }
    return blocks;
}

// "; PROXY protocol v2 header required from 10.0.0.0/8, ::1/128" for the
// start-up line, empty without --proxy-protocol-from.
std::string describe_proxy_sources(const std::vector<net::Cidr>& blocks) {
    std::string text;
    for (const auto& b : blocks) text += (text.empty() ? "" : ", ") + b.text();
    return text.empty() ? text : "; PROXY protocol v2 header required from " + text;
}

// ", clients: ..." for the start-up and reload lines; empty without mutual TLS.
std::string client_summary(const Options& o) {
    if (o.client_ca.empty() && o.allow_client.empty()) return {};
    std::string s = ", client certificates required";
    if (!o.client_ca.empty()) s += " (CA " + o.client_ca + ")";
    if (!o.allow_client.empty())
        s += ", " + std::to_string(o.allow_client.size()) + " allowed (--allow-client)";
    return s;
}

std::vector<net::Endpoint> endpoints(const Options& o) {
    std::vector<net::Endpoint> eps;
    for (const auto& l : o.listen) eps.push_back(net::parse_endpoint(l, o.port));
    if (eps.empty()) eps.push_back({o.host, o.port});
    return eps;
}

// Sockets passed by systemd (socket activation), made non-blocking.
std::vector<Fd> activated_sockets() {
    std::vector<Fd> fds;
    int n = sd_listen_fds(1);
    if (n < 0) throw std::runtime_error(std::string("sd_listen_fds: ") + std::strerror(-n));
    for (int i = 0; i < n; ++i) {
        int fd = SD_LISTEN_FDS_START + i;
        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
            throw std::runtime_error("socket activation: fd " + std::to_string(fd) +
                                     " is not a listening stream socket");
        int fl = ::fcntl(fd, F_GETFL);
        ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        fds.emplace_back(fd);
    }
    return fds;
}

// "N recorded, N not recorded, N queued, writer paused N.NNN s".
std::string record_figures(const RecordStats& r) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.paused).count();
    char paused[32];
    std::snprintf(paused, sizeof paused, "%lld.%03lld s", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000));
    return std::to_string(r.recorded) + " messages recorded, " + std::to_string(r.not_recorded) +
           " not recorded, " + std::to_string(r.queued) + " queued, " + std::to_string(r.waiting) +
           " waiting for room, recording paused " + paused;
}

std::string status_text(const Server& server) {
    return std::to_string(server.connections()) + " connections, " +
           record_figures(server.record_stats());
}

// An error for people: what failed, and for a TLS setting, the secmsgd
// option that sets it (and how to fix it).
std::string explain(const std::exception& e) {
    const auto* tls_error = dynamic_cast<const tls::TlsError*>(&e);
    const std::string what = e.what();
    if (!tls_error) return what;
    switch (tls_error->about()) {
    case tls::Setting::certificate: return what + " (--cert)";
    case tls::Setting::private_key: return what + " (--key)";
    case tls::Setting::client_ca: return what + " (--client-ca)";
    case tls::Setting::allowed_client:
        return what + " (--allow-client; secmsg --init-identity prints a client's pin)";
    case tls::Setting::tls_version: return what + " (--tls-min-version 1.2)";
    case tls::Setting::none:
    case tls::Setting::certificate_pair:
    case tls::Setting::pin:
    case tls::Setting::ca_file:
    case tls::Setting::trust_store: break;
    }
    return what;
}

// Listens on the sockets systemd passed (socket activation), or else on
// each endpoint; returns where, for the start line.
std::string add_listeners(Server& server, const Options& o, const std::vector<net::Endpoint>& eps) {
    std::string where;
    auto activated = activated_sockets();
    if (!activated.empty()) {
        for (auto& fd : activated) {
            where += (where.empty() ? "" : ", ") + net::local_address(fd.get());
            server.add_listener(std::move(fd));
        }
        return where + " (socket activation)";
    }
    for (const auto& ep : eps) {
        Fd fd = net::listen_tcp(ep, {.reuse_port = o.reuse_port});
        where += (where.empty() ? "" : ", ") + net::local_address(fd.get());
        server.add_listener(std::move(fd));
    }
    return where;
}

// SIGHUP: the credentials and client options read again, for new
// connections; on any error the previous ones stay.
void reload(Server& server, Notifier& notifier, Options& o) {
    notifier.reloading();
    try {
        Options next = o;
        reread_client_options(next);
        auto fresh = load_credentials(next);
        const auto keys = key_list(*fresh.keys);
        server.set_credentials(std::move(fresh));
        o = std::move(next);
        log::notice("reloaded certificate " + o.cert + ", key " + o.key + " and PSK " + o.psk_file +
                    " " + keys + client_summary(o) + " for new connections");
    } catch (const std::exception& e) {
        log::error("reload failed, keeping the previous credentials: " + explain(e));
    }
    notifier.ready();
}

// SIGTERM, SIGINT: no new connections; the open ones finish within `bound`,
// then the loop stops.
void shut_down(Server& server, Notifier& notifier, Reactor& reactor, int sig,
               std::chrono::milliseconds bound) {
    log::notice(std::string("shutting down on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ": " +
                std::to_string(server.connections()) + " connections to finish within " +
                std::to_string(bound.count()) + " ms");
    notifier.stopping();
    server.begin_shutdown(bound, [&reactor] { reactor.stop(); });
}

int run(Options& o) {
    Limits limits = o.limits;
    limits.handshake_timeout = seconds_opt(o.handshake_timeout, "--handshake-timeout");
    limits.idle_timeout = seconds_opt(o.idle_timeout, "--idle-timeout");
    limits.frame_timeout = seconds_opt(o.frame_timeout, "--frame-timeout");
    auto shutdown_bound = seconds_opt(o.shutdown_timeout, "--shutdown-timeout");
    if (limits.max_payload > max_max_payload)
        throw ConfigError("--max-payload must be at most " + std::to_string(max_max_payload));
    if (o.max_connections == 0) throw ConfigError("--max-connections must be at least 1");
    if (limits.max_output < 65536) throw ConfigError("--max-output must be at least 65536");
    // Room for two of the largest frames at least, or one could never arrive.
    const std::size_t largest_frame = length_field_size + max_length_for(limits.max_payload);
    if (limits.max_partial_input < 2 * largest_frame)
        throw ConfigError("--max-partial-input must be at least twice the largest frame (" +
                          std::to_string(2 * largest_frame) + " bytes with --max-payload " +
                          std::to_string(limits.max_payload) + ")");
    resolve_credential_paths(o);
    RecordOptions record;
    record.mode = parse_record_mode(o.record);
    record.timeout = seconds_opt(o.record_timeout, "--record-timeout");
    record.journal_namespace = o.journal_namespace;
    auto eps = endpoints(o);
    auto proxy_from = proxy_sources(o);

    Credentials creds = load_credentials(o);
    ::signal(SIGPIPE, SIG_IGN);
    Reactor reactor;
    // The log's stream on fd 2 waits on this loop while it runs.
    struct StreamOnLoop {
        explicit StreamOnLoop(Reactor& r) { stderr_stream().attach(r); }
        ~StreamOnLoop() { stderr_stream().detach(); }
    } stream_on_loop(reactor);
    auto recorder = make_recorder(reactor, record);
    if (o.check_config) {
        std::cout << "configuration OK: certificate " << o.cert << ", key " << o.key << ", PSK "
                  << o.psk_file << " " << key_list(*creds.keys) << ", recording to "
                  << recorder->name() << describe_proxy_sources(proxy_from) << client_summary(o)
                  << "\n";
        return 0;
    }

    Server server(reactor, *recorder, limits, o.max_connections, creds);
    const std::string proxy_note = describe_proxy_sources(proxy_from);
    server.set_proxy_sources(std::move(proxy_from));

    const std::string where = add_listeners(server, o, eps);

    Notifier notifier(reactor, [&server] { return status_text(server); });
    server.on_change = [&notifier] { notifier.changed(); };

    SignalWatcher signals(reactor, {SIGTERM, SIGINT, SIGHUP}, [&](int sig) {
        if (server.shutting_down()) return;
        if (sig == SIGHUP)
            reload(server, notifier, o);
        else
            shut_down(server, notifier, reactor, sig, shutdown_bound);
    });

    log::notice(std::string("secmsgd ") + SECMSG_VERSION + " listening on " + where + "; TLS " +
                (o.tls_min_version == "1.2" ? "1.2 and 1.3" : "1.3 only") + ", suites " +
                (o.tls_ciphers.empty() ? tls::default_ciphers() : o.tls_ciphers) + ", groups " +
                (o.tls_groups.empty() ? tls::default_groups() : o.tls_groups) + proxy_note +
                "; recording to " + std::string(recorder->name()) + client_summary(o) + "; PSK " +
                key_list(*creds.keys) + "; " + wolfssl_build_description());
    notifier.ready();
    reactor.run();
    log::notice("stopped: " + std::to_string(server.accepted()) + " connections served, " +
                record_figures(server.record_stats()));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    log::init();
    // Whatever the log still queues goes out before the process ends (for
    // at most a second: nobody may be reading).
    struct DrainAtExit {
        ~DrainAtExit() { stderr_stream().drain(std::chrono::seconds(1)); }
    } drain_at_exit;
    Options o;
    CLI::App app{"secmsgd: receives sealed messages over TLS and records each in the journal"};
    app.set_version_flag("--version", std::string("secmsgd ") + SECMSG_VERSION + " (" +
                                          secmsg::wolfssl_build_description() + ")");
    app.set_config("--config", default_config, "configuration file (command line options win)");
    app.allow_config_extras(false);  // a misspelt key in the file is an error, not ignored
    app.add_option("--host", o.host, "address to listen on (:: for every IPv6 and IPv4 address)")
        ->capture_default_str();
    app.add_option("--port", o.port, "TCP port")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    app.add_option("--listen", o.listen,
                   "ADDR:PORT or [V6ADDR]:PORT to listen on (repeatable; replaces --host/--port)");
    app.add_flag("--reuse-port", o.reuse_port,
                 "SO_REUSEPORT: several secmsgd may listen on the same port, one per core");
    app.add_option("--proxy-protocol-from", o.proxy_protocol_from,
                   "CIDR of a trusted load balancer whose connections begin with a PROXY protocol "
                   "v2 header naming the client (repeatable)");
    app.add_option(
        "--cert", o.cert,
        "TLS certificate, PEM (default: tls.crt in $CREDENTIALS_DIRECTORY, else $STATE_DIRECTORY)");
    app.add_option(
        "--key", o.key,
        "TLS private key, PEM (default: tls.key in $CREDENTIALS_DIRECTORY, else $STATE_DIRECTORY)");
    app.add_option(
        "--psk-file", o.psk_file,
        "pre-shared key file (default: psk in $CREDENTIALS_DIRECTORY, else $STATE_DIRECTORY)");
    app.add_option("--record", o.record,
                   "journal, stderr or none (none: nothing is recorded, for benchmarks only); "
                   "default: the journal when reachable, else stderr")
        ->check(CLI::IsMember({"auto", "journal", "stderr", "none"}));
    app.add_option("--record-timeout", o.record_timeout,
                   "seconds a message may wait for the journal (or stderr) before it is "
                   "answered ERROR 6, not recorded")
        ->capture_default_str();
    app.add_option("--journal-namespace", o.journal_namespace,
                   "record into this journal namespace's journald "
                   "(/run/systemd/journal.NAME/socket); default: the system journal");
    app.add_option("--max-connections", o.max_connections, "open connections at most")
        ->capture_default_str();
    app.add_option("--handshake-timeout", o.handshake_timeout, "seconds")->capture_default_str();
    app.add_option("--idle-timeout", o.idle_timeout, "seconds")->capture_default_str();
    app.add_option("--shutdown-timeout", o.shutdown_timeout, "seconds")->capture_default_str();
    app.add_option("--frame-timeout", o.frame_timeout,
                   "seconds from a frame's first byte to its last before the connection is closed")
        ->capture_default_str();
    app.add_option("--max-partial-input", o.limits.max_partial_input,
                   "bytes of partly received frames held for all connections together; over it, "
                   "the connections holding the most are closed")
        ->capture_default_str();
    app.add_option("--max-payload", o.limits.max_payload,
                   "largest message in bytes (at most 16 MiB)")
        ->capture_default_str();
    app.add_option("--max-output", o.limits.max_output,
                   "bytes of unsent output per connection before its input pauses")
        ->capture_default_str();
    app.add_option("--tls-min-version", o.tls_min_version,
                   "1.3, or 1.2 to also allow TLS 1.2 (ECDHE+AEAD)")
        ->capture_default_str()
        ->check(CLI::IsMember({"1.2", "1.3"}));
    app.add_option("--tls-ciphers", o.tls_ciphers,
                   "wolfSSL cipher suite list (default: by AES hardware)");
    app.add_option("--tls-groups", o.tls_groups, "key exchange groups, e.g. X25519:P-256");
    add_client_options(app, o);
    app.add_flag("--check-config", o.check_config,
                 "check the configuration and credentials, then exit");
    app.add_option("--init-credentials", o.init_credentials,
                   "create DIR/tls.key, DIR/tls.crt and DIR/psk where missing, then exit");
    app.add_option("--key-type", o.key_type, "for --init-credentials: ecdsa (P-256) or ed25519")
        ->capture_default_str()
        ->check(CLI::IsMember({"ecdsa", "ed25519"}));

    o.argc = argc;
    o.argv = argv;
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version
        return app.exit(e);
    } catch (const CLI::FileError& e) {
        std::cerr << "secmsgd: " << e.what() << "\n";
        return exit_config;
    } catch (const CLI::ConfigError& e) {
        std::cerr << "secmsgd: configuration file: " << e.what() << "\n";
        return exit_config;
    } catch (const CLI::ParseError& e) {
        std::cerr << "secmsgd: " << e.what() << " (see secmsgd --help)\n";
        return exit_usage;
    }

    try {
        if (!o.init_credentials.empty()) {
            auto report = init_credentials(o.init_credentials, parse_key_type(o.key_type));
            std::cout << format_report(report);
            return 0;
        }
        return run(o);
    } catch (const SetupError& e) {  // configuration, credentials, TLS settings
        log::error(explain(e));
        return exit_config;
    } catch (const net::NetError& e) {
        log::error(e.what());
        return exit_runtime;
    } catch (const std::exception& e) {
        log::error(e.what());
        return exit_runtime;
    }
}
