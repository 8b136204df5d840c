// Runs every fuzz target (fuzz.hpp) without libFuzzer, with any compiler:
//   fuzz-replay CORPUS_DIR             each target over CORPUS_DIR/<target>/*,
//                                      then over seeded mutations of valid
//                                      streams (the suite's 'fuzz-replay')
//   fuzz-replay TARGET FILE...         one target over the given files (a
//                                      crash reproducer, say)
//   fuzz-replay --write-seeds CORPUS_DIR   writes the generated seeds
//                                      (gen-*) into CORPUS_DIR/<target>/
#include "fuzz.hpp"
#include "seeds.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using namespace secmsg;

namespace {

struct Target {
    const char* name;
    int (*run)(const std::uint8_t*, std::size_t);
};

// Also the list of corpus folders.
constexpr Target targets[] = {
    {"frames", fuzz::frames}, {"client", fuzz::client}, {"psk", fuzz::psk},
    {"config", fuzz::config}, {"proxy", fuzz::proxy},
};

const Target* find_target(std::string_view name) {
    for (const auto& t : targets)
        if (name == t.name) return &t;
    return nullptr;
}

std::vector<std::uint8_t> read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

void run(const Target& t, const std::vector<std::uint8_t>& d) { t.run(d.data(), d.size()); }

// Bit flips, cuts, overwritten and inserted bytes, from a fixed seed; the
// first byte (the mode) is left alone half of the time.
long mutate_all(const Target& t, const std::vector<fuzz::Seed>& seeds, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    long n = 0;
    for (int round = 0; round < 300; ++round) {
        for (const auto& [name, bytes] : seeds) {
            if (bytes.size() < 3) continue;
            auto s = bytes;
            const std::size_t from = rng() % 2 ? 0 : 2;
            for (int k = 0, edits = 1 + static_cast<int>(rng() % 3); k < edits; ++k) {
                const std::size_t at = from + rng() % (s.size() - from);
                switch (rng() % 4) {
                case 0: s[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
                case 1: s.resize(std::max<std::size_t>(at, 3)); break;
                case 2: s[at] = static_cast<std::uint8_t>(rng()); break;
                default:
                    s.insert(s.begin() + static_cast<long>(at), static_cast<std::uint8_t>(rng()));
                    break;
                }
            }
            run(t, s);
            ++n;
        }
    }
    return n;
}

int replay_corpus(const fs::path& root) {
    long files = 0;
    for (const auto& t : targets) {
        const fs::path dir = root / t.name;
        if (!fs::is_directory(dir)) {
            std::fprintf(stderr, "fuzz-replay: no corpus folder %s\n", dir.c_str());
            return 1;
        }
        std::vector<fs::path> paths;
        for (const auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file()) paths.push_back(e.path());
        std::sort(paths.begin(), paths.end());
        for (const auto& p : paths) run(t, read_file(p));
        std::printf("fuzz-replay: %-7s %zu corpus files\n", t.name, paths.size());
        files += static_cast<long>(paths.size());
    }
    const long m = mutate_all(*find_target("frames"), fuzz::frames_seeds(), 20261126) +
                   mutate_all(*find_target("client"), fuzz::client_seeds(), 20261202) +
                   mutate_all(*find_target("proxy"), fuzz::proxy_seeds(), 20261210);
    std::printf("fuzz-replay: %ld corpus files and %ld mutated streams, no crash\n", files, m);
    return 0;
}

int write_seeds(const fs::path& root) {
    for (const auto& [target, seeds] :
         {std::pair{"frames", fuzz::frames_seeds()}, std::pair{"client", fuzz::client_seeds()},
          std::pair{"proxy", fuzz::proxy_seeds()}}) {
        fs::create_directories(root / target);
        for (const auto& [name, bytes] : seeds) {
            std::ofstream f(root / target / name, std::ios::binary | std::ios::trunc);
            f.write(reinterpret_cast<const char*>(bytes.data()),
                    static_cast<std::streamsize>(bytes.size()));
            if (!f) {
                std::fprintf(stderr, "fuzz-replay: cannot write %s/%s/%s\n", root.c_str(), target,
                             name.c_str());
                return 1;
            }
        }
        std::printf("fuzz-replay: %zu seeds in %s/%s\n", seeds.size(), root.c_str(), target);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "--write-seeds") == 0) return write_seeds(argv[2]);
    if (argc == 2) return replay_corpus(argv[1]);
    if (argc >= 3) {
        const Target* t = find_target(argv[1]);
        if (!t) {
            std::fprintf(stderr, "fuzz-replay: no target '%s'\n", argv[1]);
            return 2;
        }
        for (int i = 2; i < argc; ++i) run(*t, read_file(argv[i]));
        std::printf("fuzz-replay: %s over %d files, no crash\n", t->name, argc - 2);
        return 0;
    }
    std::fprintf(stderr,
                 "usage: fuzz-replay CORPUS_DIR | TARGET FILE... | --write-seeds CORPUS_DIR\n");
    return 2;
}
