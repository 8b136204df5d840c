// secmsg: the companion client of secmsgd.  Option parsing and wiring only;
// the connection, the send loop and the input are this folder's library
// (client.hpp, message_source.hpp, backoff.hpp); the checks live in lib/
// (client_session.hpp, client_context.hpp).
#include "config.hpp"

#include "client.hpp"
#include "keys/credentials.hpp"
#include "keys/pin.hpp"
#include "keys/psk.hpp"
#include "message_source.hpp"
#include "proto/escape.hpp"
#include "proto/seal.hpp"
#include "secmsg_config.h"
#include "tls/build_info.hpp"
#include "tls/client_context.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace {

using secmsg::ClientSession;
using secmsg::Failure;

// sysexits(3) values, as documented in secmsg(1).
enum Exit : int {
    ok = 0,
    usage = 64,        // EX_USAGE
    data_err = 65,     // EX_DATAERR: the input holds a message too large to send
    no_input = 66,     // EX_NOINPUT: input, PSK or CA file missing or unusable
    unavailable = 69,  // EX_UNAVAILABLE: server unreachable
    temp_fail = 75,    // EX_TEMPFAIL: ERROR 6 or 7, connection lost: may be resent
    protocol = 76,     // EX_PROTOCOL
    no_perm = 77,      // EX_NOPERM: certificate or pin rejected
};

int exit_for(Failure f) {
    switch (f) {
    case Failure::none: return ok;
    case Failure::unreachable: return unavailable;
    case Failure::certificate: return no_perm;
    case Failure::protocol: return protocol;
    case Failure::temporary: return temp_fail;
    }
    return protocol;
}

void say(const std::string& line) { std::cerr << "secmsg: " << line << '\n'; }

enum class Mode { interactive, pipe, one_shot };

// A duration in seconds, as the options take it.
double in_seconds(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

// The command line and the configuration file.  The defaults that the
// client library also has are its own (ConnectOptions, DeliveryOptions),
// and --help shows them from here.
struct Options {
    std::vector<std::string> messages;
    bool whole = false;
    std::string host = secmsg::ConnectOptions{}.host;
    std::uint16_t port = secmsg::ConnectOptions{}.port;
    double connect_timeout = in_seconds(secmsg::ConnectOptions{}.timeout);
    double timeout = in_seconds(secmsg::DeliveryOptions{}.ack_timeout);
    std::string ca_file, server_name, pin, psk_file;
    std::string cert, key;  // client certificate (mutual TLS)
    std::string init_identity, key_type = "ecdsa";
    bool insecure = false;
    std::size_t window = secmsg::DeliveryOptions{}.window;
    bool quiet = false;
    bool verbose = false;
    double retry_for = 60;  // seconds; 0: the first failure ends the run
};

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0 + 0.5));
}

// Interactive input: lines typed at the terminal; blank lines are skipped,
// "exit" (or end of input) quits.
class TypedLines : public secmsg::MessageSource {
public:
    explicit TypedLines(std::function<void()> prompt)
        : lines_(STDIN_FILENO), prompt_(std::move(prompt)) {}
    Next next(std::vector<std::uint8_t>& msg) override {
        for (;;) {
            const Next n = lines_.next(msg);
            if (n == Next::end && !said_bye_) {
                said_bye_ = true;
                if (lines_.at_eof()) std::cout << '\n' << std::flush;  // after ^D
            }
            if (n != Next::message) return n;
            if (!msg.empty() && msg.back() == '\r') msg.pop_back();
            const std::string_view text(reinterpret_cast<const char*>(msg.data()), msg.size());
            if (text == "exit" || text == "quit") return Next::end;
            if (text.find_first_not_of(" \t") == std::string_view::npos) {
                prompt_();
                continue;
            }
            return n;
        }
    }
    int fd() const override { return lines_.fd(); }
    void on_readable() override { lines_.on_readable(); }

private:
    secmsg::LineSource lines_;
    std::function<void()> prompt_;
    bool said_bye_ = false;
};

std::string seconds(std::chrono::steady_clock::duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f s", std::chrono::duration<double>(d).count());
    return buf;
}

// A wiring step that cannot go on: it has said why, and secmsg exits with
// `status`.
struct Stop {
    int status;
};

[[noreturn]] void stop(const std::string& why, int status) {
    say(why);
    throw Stop{status};
}

// Trust: exactly one of --pin, --insecure, CA verification.
secmsg::tls::ClientOptions trust_options(const Options& o) {
    secmsg::tls::ClientOptions trust;
    trust.ca_file = o.ca_file;
    trust.server_name = o.server_name;
    trust.pin = o.pin;
    trust.insecure = o.insecure;
    trust.cert_file = o.cert;
    trust.key_file = o.key;
    if (!o.pin.empty() && !secmsg::parse_pin(o.pin))
        stop("--pin " + o.pin +
                 " is not a pin: expected sha256: and the base64 of 32 bytes "
                 "(secmsgd --init-credentials prints it)",
             usage);
    if (o.insecure)
        say("warning: --insecure: the server's certificate is NOT verified; anyone between "
            "you and the server can impersonate it (use --ca-file or --pin instead)");
    if (!o.insecure && o.pin.empty() && !o.ca_file.empty() &&
        ::access(o.ca_file.c_str(), R_OK) != 0)
        stop(
            "cannot read CA file " + o.ca_file + ": " + std::strerror(errno) + " (check --ca-file)",
            no_input);
    return trust;
}

// The keys that seal this run's messages: from the PSK file's first key.
std::shared_ptr<const secmsg::FrameKeys> sealing_keys(const Options& o) {
    if (o.psk_file.empty())
        stop("no PSK file: pass --psk-file FILE, set SECMSG_PSK_FILE, or put psk-file in " +
                 secmsg::cli::default_config_path(),
             usage);
    try {
        const auto psk = secmsg::load_sender_psk(o.psk_file);  // the file's first key
        return std::make_shared<const secmsg::FrameKeys>(psk.bytes());
    } catch (const secmsg::KeyFileError& e) {
        stop(e.what(), no_input);
    }
}

// What the library found wrong with a TLS setting, and the secmsg option
// that sets it (with how to fix it).
std::string with_option(const secmsg::tls::TlsError& e) {
    using secmsg::tls::Setting;
    const std::string what = e.what();
    switch (e.about()) {
    case Setting::certificate: return what + " (--cert)";
    case Setting::private_key: return what + " (--key)";
    case Setting::certificate_pair:  // said in secmsg's own terms
        return "--cert and --key go together: give both (secmsg --init-identity DIR makes a pair)";
    case Setting::pin: return "--pin " + what + " (secmsgd --init-credentials prints it)";
    case Setting::ca_file: return what + " (--ca-file)";
    case Setting::trust_store:
        return what + " (install ca-certificates, or use --ca-file or --pin)";
    case Setting::none:
    case Setting::client_ca:
    case Setting::allowed_client:
    case Setting::tls_version: break;
    }
    return what;
}

std::shared_ptr<secmsg::tls::Context> client_context(const secmsg::tls::ClientOptions& trust) {
    try {
        return secmsg::tls::make_client_context(trust);
    } catch (const secmsg::tls::TlsError& e) {
        stop(with_option(e), no_input);
    }
}

// Where the messages come from.  --whole: all of the input is read, within
// the largest message there can be, before anything is sent (and before
// connecting).
std::unique_ptr<secmsg::MessageSource> message_source(const Options& o, Mode mode,
                                                      const std::function<void()>& prompt) {
    switch (mode) {
    case Mode::interactive: return std::make_unique<TypedLines>(prompt);
    case Mode::one_shot: return std::make_unique<secmsg::ListSource>(o.messages);
    case Mode::pipe: break;
    }
    if (!o.whole) return std::make_unique<secmsg::LineSource>(STDIN_FILENO);
    auto whole = std::make_unique<secmsg::WholeSource>(STDIN_FILENO, secmsg::max_max_payload);
    try {
        whole->read_to_end();
    } catch (const secmsg::InputTooLarge& e) {
        stop(std::string("--whole: ") + e.what() + "; nothing was sent", data_err);
    } catch (const std::system_error& e) {
        stop(std::string(e.what()) + " (standard input)", no_input);
    }
    return whole;
}

secmsg::DeliveryOptions delivery_options(const Options& o, Mode mode,
                                         const secmsg::tls::ClientOptions& trust,
                                         std::shared_ptr<secmsg::tls::Context> context,
                                         std::shared_ptr<const secmsg::FrameKeys> keys) {
    secmsg::DeliveryOptions d;
    d.connect.host = o.host;
    d.connect.port = o.port;
    d.connect.server_name = o.server_name;
    d.connect.timeout = to_ms(o.connect_timeout);
    d.context = std::move(context);
    d.trust = trust;
    d.keys = std::move(keys);
    d.window = mode == Mode::interactive ? 1 : o.window;  // interactive: type, Enter, see the reply
    d.ack_timeout = to_ms(o.timeout);
    d.retry.retry_for = to_ms(o.retry_for);
    return d;
}

// How a message is named for people: its place in the input.
std::string message_name(const Options& o, Mode mode, std::uint64_t number) {
    switch (mode) {
    case Mode::pipe:
        return o.whole ? std::string("the message") : "line " + std::to_string(number + 1);
    case Mode::one_shot: return "message " + std::to_string(number + 1) + " (-m)";
    case Mode::interactive: break;
    }
    return "message " + std::to_string(number + 1);
}

// What secmsg shows as the delivery goes: connections, acknowledgements,
// messages not recorded, retries.  `o` must outlive the hooks.
secmsg::DeliveryHooks progress_hooks(const Options& o, Mode mode, std::function<void()> prompt) {
    const bool retrying = to_ms(o.retry_for).count() > 0;  // as delivery_options has it
    const auto which = [&o, mode](std::uint64_t number) { return message_name(o, mode, number); };
    secmsg::DeliveryHooks hooks;
    hooks.name = which;
    hooks.connected = [&o, mode, prompt](secmsg::Connection& conn, secmsg::Attempt attempt,
                                         std::size_t resending) {
        const bool first = attempt == secmsg::Attempt::first;
        auto& s = conn.session();
        const std::string details =
            s.version() + ", " + s.cipher() + ", " + secmsg::tls::key_exchange_group(s) +
            (s.alpn().empty() ? "" : ", ALPN " + secmsg::escape_payload(s.alpn()));
        if (o.verbose)
            say(std::string(first ? "connected" : "connected again") + " to " + conn.peer() + " (" +
                details + "), server key " + secmsg::tls::peer_pin(s) +
                (resending ? "; sending " + std::to_string(resending) + " unacknowledged again"
                           : ""));
        if (mode == Mode::interactive && first) {
            std::cerr << "Connected to " << conn.peer() << " (" << details << ").\n"
                      << "Type a message and press Enter; 'exit' or Ctrl-D quits.\n";
            prompt();
        }
    };
    hooks.event = [&o, mode, prompt, retrying, which](const ClientSession::Event& e) {
        using Kind = ClientSession::Event::Kind;
        if (e.kind == Kind::acked) {
            if (mode == Mode::interactive) {
                std::cout << "[ack seq " << e.seq << "] " << e.text << '\n';
                prompt();
            } else if (o.verbose || (mode == Mode::one_shot && !o.quiet)) {
                std::cout << "seq " << e.seq << ": " << e.text << '\n';
            }
        } else if (e.kind == Kind::not_recorded && !retrying) {
            say(which(e.number) + " (seq " + std::to_string(e.seq) +
                ") was NOT recorded by the server (ERROR 6: " + e.text + "); it may be sent again");
            if (mode == Mode::interactive) prompt();
        } else if (e.kind == Kind::not_recorded && o.verbose) {
            say(which(e.number) + " (seq " + std::to_string(e.seq) +
                ") was NOT recorded by the server (ERROR 6: " + e.text +
                "); it will be sent again");
        }
    };
    hooks.retrying = [mode, prompt](const std::string& line, secmsg::Retrying about) {
        const bool idle = about == secmsg::Retrying::idle;
        if (mode == Mode::interactive && idle) std::cout << '\n' << std::flush;  // after the prompt
        say(line);
        if (mode == Mode::interactive && idle) prompt();
    };
    return hooks;
}

// Says how the run ended (its failure; in pipe mode the summary line) and
// returns secmsg's exit status.
int conclude(const Options& o, Mode mode, const secmsg::RunReport& r,
             std::chrono::steady_clock::duration took) {
    if (mode == Mode::interactive && r.failure != Failure::none && r.connections > 0)
        std::cout << '\n' << std::flush;
    if (r.failure != Failure::none) say(r.error);
    if (mode == Mode::pipe && !o.quiet && r.connections > 0)
        say(std::to_string(r.acked) + " of " + std::to_string(r.sent) + " messages acknowledged (" +
            std::to_string(r.bytes) + " bytes) in " + seconds(took) +
            (r.not_recorded ? ", " + std::to_string(r.not_recorded) + " NOT recorded" : "") +
            (r.resent ? ", " + std::to_string(r.resent) + " sent again over " +
                            std::to_string(r.connections) + " connections"
                      : ""));
    if (r.failure != Failure::none) return exit_for(r.failure);
    return r.not_recorded > 0 ? temp_fail : ok;
}

int run(const Options& o, Mode mode) {
    const auto trust = trust_options(o);
    auto keys = sealing_keys(o);
    auto context = client_context(trust);
    const std::function<void()> prompt = [] { std::cout << "> " << std::flush; };
    const auto source = message_source(o, mode, prompt);
    const auto options = delivery_options(o, mode, trust, std::move(context), std::move(keys));
    const auto hooks = progress_hooks(o, mode, prompt);

    const auto start = std::chrono::steady_clock::now();
    secmsg::RunReport r;
    try {
        r = secmsg::deliver(options, *source, hooks);
    } catch (const std::system_error& e) {
        stop(std::string(e.what()) + " (standard input)", no_input);
    } catch (const secmsg::InputTooLarge& e) {
        stop(std::string(e.what()) + " (standard input); it was not sent", data_err);
    }
    return conclude(o, mode, r, std::chrono::steady_clock::now() - start);
}

// Option values that are checked after the configuration file filled in
// what the command line left out.
struct OptionTexts {
    std::string host, port, retry_for;
};

// A default as --help shows it: "10", "0.5", "127.0.0.1".
template <typename T>
std::string shown(const T& value) {
    std::ostringstream s;
    s << value;
    return s.str();
}

void add_options(CLI::App& app, Options& o, OptionTexts& texts) {
    const Options defaults;
    app.add_option("-m,--message", o.messages, "send TEXT as one message (repeatable) and exit")
        ->type_name("TEXT");
    app.add_flag("--whole", o.whole, "send all of standard input as one message (binary-safe)");
    app.add_option("--host", texts.host,
                   "server address or name (default " + defaults.host + "; IPv6 as ::1 or [::1])");
    app.add_option("-p,--port", texts.port, "server port (default " + shown(defaults.port) + ")");
    app.add_option(
           "--connect-timeout", o.connect_timeout,
           "seconds to connect and complete TLS (default " + shown(defaults.connect_timeout) + ")")
        ->check(CLI::PositiveNumber);
    app.add_option(
           "--timeout", o.timeout,
           "seconds to wait for an acknowledgement (default " + shown(defaults.timeout) + ")")
        ->check(CLI::PositiveNumber);
    app.add_option("--retry-for", texts.retry_for,
                   "seconds to keep reconnecting and resending after a failure that may pass "
                   "(default " +
                       shown(defaults.retry_for) + "; 0: exit at the first failure)")
        ->type_name("SECONDS");
    app.add_option("--ca-file", o.ca_file,
                   "PEM CA certificates to verify the server with (default: the system store)");
    app.add_option("--server-name", o.server_name,
                   "name the certificate must carry (default: the host)");
    app.add_option("--pin", o.pin,
                   "accept exactly the server key with this sha256:BASE64 pin instead of a CA");
    app.add_flag("--insecure", o.insecure, "do not verify the server at all (prints a warning)");
    app.add_option("--cert", o.cert,
                   "PEM client certificate to present, for servers that require one (with --key)");
    app.add_option("--key", o.key, "PEM private key of --cert (readable by you only)");
    app.add_option("--init-identity", o.init_identity,
                   "create DIR/client.key and a self-signed DIR/client.crt where missing, print "
                   "the pin for the server's --allow-client, then exit");
    app.add_option("--key-type", o.key_type,
                   "for --init-identity: ecdsa (P-256, default) or ed25519")
        ->check(CLI::IsMember({"ecdsa", "ed25519"}));
    app.add_option(
        "--psk-file", o.psk_file,
        "file with the pre-shared key, its first line's when several (default $SECMSG_PSK_FILE)");
    app.add_option("--window", o.window,
                   "messages in flight at most (default " + shown(defaults.window) + ")")
        ->check(CLI::Range(1, 1 << 16));
    app.add_flag("-q,--quiet", o.quiet, "no summary line, no acknowledgements shown (one-shot)");
    app.add_flag("-v,--verbose", o.verbose, "show the connection and every acknowledgement");
    app.set_version_flag("--version", std::string("secmsg ") + SECMSG_VERSION + " (" +
                                          secmsg::wolfssl_build_description() + ")");

    // A repeated option takes its last value, as in most Unix tools (so a
    // wrapper script's defaults can be overridden by appending).
    for (CLI::Option* opt : app.get_options())
        if (opt->get_name() != "--message" && opt->get_type_size() != 0)
            opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

// --init-identity: makes the client's key and certificate where missing
// and prints them with the pin; nothing is sent.
int init_identity(const Options& o) {
    try {
        const auto r =
            secmsg::init_client_identity(o.init_identity, secmsg::parse_key_type(o.key_type));
        std::cout << secmsg::format_report(r) << "use it with: secmsg --cert " << r.cert_file
                  << " --key " << r.key_file << "\n"
                  << "allow it on the server with: --allow-client " << r.pin << "\n";
        return ok;
    } catch (const std::exception& e) {
        stop(e.what(), no_input);
    }
}

// Defaults for what the command line left out: $SECMSG_PSK_FILE (PSK
// only), then the configuration file.
void read_defaults(const CLI::App& app, Options& o, OptionTexts& texts) {
    std::map<std::string, std::string> config;
    try {
        config = secmsg::cli::read_config(secmsg::cli::default_config_path());
    } catch (const secmsg::cli::ConfigError& e) {
        stop(e.what(), e.unreadable() ? no_input : usage);
    }
    const auto from_config = [&](const char* key, const char* option, std::string& into) {
        if (app.count(option) == 0)
            if (auto it = config.find(key); it != config.end()) into = it->second;
    };
    if (app.count("--psk-file") == 0)
        if (const char* env = std::getenv("SECMSG_PSK_FILE"); env && *env) o.psk_file = env;
    if (o.psk_file.empty()) from_config("psk-file", "--psk-file", o.psk_file);
    from_config("host", "--host", texts.host);
    from_config("port", "--port", texts.port);
    from_config("ca-file", "--ca-file", o.ca_file);
    from_config("server-name", "--server-name", o.server_name);
    from_config("pin", "--pin", o.pin);
    from_config("cert", "--cert", o.cert);
    from_config("key", "--key", o.key);
    from_config("retry-for", "--retry-for", texts.retry_for);
}

// The host (without IPv6 brackets), the port and --retry-for from their texts.
void resolve_texts(Options& o, const OptionTexts& texts) {
    std::string host = texts.host;
    if (!host.empty()) {
        if (host.size() > 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        o.host = host;
    }
    if (!texts.port.empty()) {
        char* end = nullptr;
        const long p = std::strtol(texts.port.c_str(), &end, 10);
        if (!end || *end || p < 1 || p > 65535)
            stop("port " + texts.port + " is not a number from 1 to 65535 (check --port)", usage);
        o.port = static_cast<std::uint16_t>(p);
    }
    if (!texts.retry_for.empty()) {
        char* end = nullptr;
        const double t = std::strtod(texts.retry_for.c_str(), &end);
        if (!end || *end || !(t >= 0) || t > 1e9)
            stop("retry-for " + texts.retry_for +
                     " is not a number of seconds from 0 (check --retry-for)",
                 usage);
        o.retry_for = t;
    }
}

void check_combinations(const Options& o) {
    if ((o.insecure ? 1 : 0) + (o.pin.empty() ? 0 : 1) > 1)
        stop("--insecure and --pin contradict each other: choose one", usage);
    if (o.whole && !o.messages.empty())
        stop("--whole reads standard input; it cannot be combined with -m", usage);
}

// -m: one-shot; a terminal: interactive; otherwise lines (or --whole) from a pipe.
Mode mode_for(const Options& o) {
    if (!o.messages.empty()) return Mode::one_shot;
    if (!o.whole && ::isatty(STDIN_FILENO)) return Mode::interactive;
    return Mode::pipe;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);

    CLI::App app{
        "secmsg: send messages to secmsgd over TLS, each sealed with a pre-shared key.\n"
        "Interactive when standard input is a terminal; otherwise each input line is\n"
        "one message.  Exit status: 0 all acknowledged, 64 usage, 65 input too large,\n"
        "66 file missing, 69 server unreachable, 75 not recorded or connection lost\n"
        "(after --retry-for; resend later), 76 protocol error, 77 certificate or pin\n"
        "rejected.\n"
        "See secmsg(1).",
        "secmsg"};
    Options o;
    OptionTexts texts;
    add_options(app, o, texts);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        say(e.what() + std::string(" (see secmsg --help)"));
        return usage;
    }

    try {
        if (!o.init_identity.empty()) return init_identity(o);
        read_defaults(app, o, texts);
        resolve_texts(o, texts);
        check_combinations(o);
        return run(o, mode_for(o));
    } catch (const Stop& s) {
        return s.status;
    }
}
