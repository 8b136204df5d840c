#include "proto/protocol.hpp"

namespace secmsg {

std::string_view describe(ProtoError e) {
    switch (e) {
    case ProtoError::ok: return "ok";
    case ProtoError::malformed: return "malformed frame";
    case ProtoError::auth: return "authentication failed";
    case ProtoError::sequence: return "unexpected sequence number";
    case ProtoError::version: return "unsupported version or type";
    case ProtoError::too_large: return "message larger than the server accepts";
    case ProtoError::not_recorded: return "message could not be recorded";
    case ProtoError::shutting_down: return "server shutting down";
    }
    return "unknown error";
}

}  // namespace secmsg
