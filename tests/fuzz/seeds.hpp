// Generated seed inputs for the frame, client and proxy targets: valid
// streams (in both modes, for frames and client), and the replay's
// mutations of them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace secmsg::fuzz {

using Seed = std::pair<std::string, std::vector<std::uint8_t>>;  // name, bytes

// Meaningful valid inputs (the committed corpus's gen-* files).
std::vector<Seed> frames_seeds();
std::vector<Seed> client_seeds();
std::vector<Seed> proxy_seeds();

}  // namespace secmsg::fuzz
