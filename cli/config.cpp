// secmsg's configuration file.
#include "config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace secmsg::cli {

namespace {

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return {};
    const auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

}  // namespace

std::string default_config_path() {
    if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
        return std::string(x) + "/secmsg/config";
    if (const char* h = std::getenv("HOME"); h && *h)
        return std::string(h) + "/.config/secmsg/config";
    return {};
}

std::map<std::string, std::string> read_config(const std::string& path) {
    std::map<std::string, std::string> out;
    if (path.empty()) return out;
    std::ifstream in(path);
    if (!in) {
        if (errno == ENOENT) return out;
        throw ConfigError(true,
                          "cannot read configuration file " + path + ": " + std::strerror(errno));
    }
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        const std::string where = path + ":" + std::to_string(n) + ": ";
        if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        line = trim(line);
        if (line.empty()) continue;
        const auto eq = line.find('=');
        if (eq == std::string::npos)
            throw ConfigError(false, where + "expected \"key = value\", found \"" + line + "\"");
        const std::string key = trim(line.substr(0, eq));
        std::string value = trim(line.substr(eq + 1));
        if (std::find_if(std::begin(config_keys), std::end(config_keys),
                         [&](const char* k) { return key == k; }) == std::end(config_keys))
            throw ConfigError(false, where + "unknown key \"" + key +
                                         "\" (known: host, port, psk-file, ca-file, "
                                         "server-name, pin, retry-for)");
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
            value = value.substr(1, value.size() - 2);
        if (value.starts_with("~/"))
            if (const char* h = std::getenv("HOME"); h && *h) value = h + value.substr(1);
        if (!out.emplace(key, value).second)
            throw ConfigError(false, where + "\"" + key + "\" is set twice");
    }
    if (in.bad()) throw ConfigError(true, "cannot read configuration file " + path);
    return out;
}

}  // namespace secmsg::cli
