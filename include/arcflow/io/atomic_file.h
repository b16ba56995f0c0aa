// Whole-file I/O helpers: crash-safe replacement of a file and whole-file reads.
//
// Every weights / checkpoint / config file the project writes goes through
// write_file_atomic(), so that a crash or a full disk never leaves a truncated
// file behind: readers see either the previous contents or the new ones.
#pragma once

#include <string>

namespace arcflow::io {

// Atomically replaces the file at `path` with `bytes`.
//
// The data is first written to `path + ".tmp.<pid>"` (same folder, hence the
// same file system), flushed to disk with fsync(), and then rename()d over
// `path`; the containing folder is fsync()ed afterwards (best effort) so the
// rename itself is durable. On any failure the temporary file is removed and
// std::runtime_error is thrown; its message names `path`, the failing step and
// strerror(errno). The previous contents of `path` (if any) are then intact.
//
// Not safe against two threads of the same process writing the same path at
// once (they would share the temp name); different processes are fine.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads the whole file at `path` into a string (binary-safe).
// Throws std::runtime_error naming `path` and strerror(errno) if the file is
// missing, is not a regular file, or cannot be read.
std::string read_file(const std::string& path);

}  // namespace arcflow::io
