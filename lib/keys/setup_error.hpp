// The base of every error in what the operator set up: a credential file,
// a key, a certificate, an allowed client, a TLS option, a configuration
// value.  what() is one line for people that says what failed; a program
// catches SetupError once and exits with its configuration status.
#pragma once

#include <stdexcept>

namespace secmsg {

class SetupError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace secmsg
