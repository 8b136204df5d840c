// Small-file I/O for key material and certificates: whole reads into wiped
// memory, and atomic creation (temporary file, fsync, link or rename, fsync
// of the directory).  Errors are std::system_error whose what() names the
// file and says what failed; callers add their own context.
#pragma once

#include "secret.hpp"

#include <span>
#include <string>
#include <sys/types.h>

namespace secmsg {

struct FileContents {
    SecretBytes bytes;  // the whole file, wiped when dropped
    mode_t mode = 0;    // st_mode of the file that was read
};

// Reads a regular file of at most max_size bytes.  Throws std::system_error
// (code: the errno, e.g. ENOENT for a missing file; EFBIG when larger than
// max_size; EINVAL when not a regular file).
FileContents read_small_file(const std::string& path, std::size_t max_size);

// Writes data to path with `mode`, atomically.  With replace == false an
// existing path is never touched and the call returns false; otherwise it
// returns true.  Throws std::system_error on failure (the temporary file is
// removed).
bool write_file_atomically(const std::string& path, std::span<const std::uint8_t> data,
                           mode_t mode, bool replace = false);

}  // namespace secmsg
