// secmsg's configuration file: defaults for some options, one "key = value"
// per line, '#' starts a comment.  The command line wins over it.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

namespace secmsg::cli {

// A configuration file that exists but cannot be used; what() is one line
// with the file and line.
class ConfigError : public std::runtime_error {
public:
    ConfigError(bool missing_input, const std::string& what)
        : std::runtime_error(what), unreadable_(missing_input) {}
    bool unreadable() const { return unreadable_; }  // could not be read at all

private:
    bool unreadable_;
};

// $XDG_CONFIG_HOME/secmsg/config, else ~/.config/secmsg/config; empty when
// neither variable is set.
std::string default_config_path();

// The keys the file may set (the long option names without "--").
inline constexpr const char* config_keys[] = {"host", "port", "psk-file", "ca-file",  "server-name",
                                              "pin",  "cert", "key",      "retry-for"};

// Reads the file at `path`: key -> value.  A missing file is no error (an
// empty map).  A leading "~/" in a value is the home directory.  Throws
// ConfigError for an unreadable file, an unknown key, a line without '=',
// or a key given twice.
std::map<std::string, std::string> read_config(const std::string& path);

}  // namespace secmsg::cli
