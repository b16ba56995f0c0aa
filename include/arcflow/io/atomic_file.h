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
// The data is first written to `path + ".tmp.<pid>.<n>"` (same folder, hence the
// same file system), flushed to disk with fsync(), and then rename()d over
// `path`; the containing folder is fsync()ed afterwards (best effort) so the
// rename itself is durable. On any failure the temporary file is removed and
// std::runtime_error is thrown; its message names `path`, the failing step and
// strerror(errno). The previous contents of `path` (if any) are then intact.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads the whole file at `path` into a string (binary-safe).
// Throws std::runtime_error naming `path` and strerror(errno) if the file is
// missing, is not a regular file, or cannot be read.
std::string read_file(const std::string& path);

// Whether `path` names a regular file / a folder (following symbolic links); false when it is
// missing or unreadable.
bool is_regular_file(const std::string& path);
bool is_directory(const std::string& path);

// Creates the folder `path` and any missing parents (like mkdir -p), then checks that a file can
// be created in it. Throws std::runtime_error naming the path and the reason otherwise. Meant to
// run before long work, so a bad output folder fails at once.
void make_output_dir(const std::string& path);

}  // namespace arcflow::io
