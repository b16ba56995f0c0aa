// Implementation of arcflow/io/atomic_file.h on top of POSIX file descriptors
// (iostreams can neither fsync nor report errno reliably).
#include "arcflow/io/atomic_file.h"

#include <atomic>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace arcflow::io {
namespace {

// Builds "<what> '<path>': <strerror(err)>".
std::string describe(const std::string& what, const std::string& path, int err) {
  return what + " '" + path + "': " + std::strerror(err);
}

// Closes a descriptor on scope exit unless release()d.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Writes all of `bytes` to `fd`, retrying on EINTR and short writes.
// Returns 0 on success, otherwise the errno of the failing write().
int write_all(int fd, const std::string& bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // should not happen for regular files
    p += n;
    left -= static_cast<size_t>(n);
  }
  return 0;
}

// The folder that contains `path` ("." when `path` has no slash).
std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  if (path.empty()) throw std::runtime_error("write_file_atomic: empty path");
  // Unique per process (pid) and per call (counter), so concurrent writers never share a temp file.
  static std::atomic<unsigned long> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);

  // Any failure after the temp file exists: remember errno, remove the temp
  // file (which may clobber errno), then throw.
  auto fail = [&](const std::string& step, int err) {
    ::unlink(tmp.c_str());
    throw std::runtime_error(describe("write_file_atomic: " + step + " for", path, err));
  };

  // O_TRUNC: a stale temp file left by a crashed process with a recycled pid
  // is simply overwritten.
  FdGuard fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    // Nothing was created, so there is nothing to remove.
    const int err = errno;
    throw std::runtime_error(describe("write_file_atomic: cannot create temp file '" + tmp + "' for",
                                      path, err));
  }
  if (int err = write_all(fd.get(), bytes)) fail("write failed", err);
  if (::fsync(fd.get()) != 0) fail("fsync failed", errno);
  // close() can report deferred write errors (e.g. on NFS), so check it.
  if (::close(fd.release()) != 0) fail("close failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename failed", errno);

  // Make the rename durable. Best effort: the new contents are already in
  // place and complete, so a failure here is not reported.
  const int dir_fd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
}

std::string read_file(const std::string& path) {
  FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw std::runtime_error(describe("read_file: cannot open", path, errno));

  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw std::runtime_error(describe("read_file: cannot stat", path, errno));
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(describe("read_file: not a regular file", path, EINVAL));

  // Read straight into a buffer of st_size bytes; once it is full, keep
  // reading through a small chunk until EOF in case the file grew meanwhile
  // (probing with a chunk avoids re-allocating a full buffer needlessly).
  // Shrink if the file turned out shorter.
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t filled = 0;
  char chunk[1 << 14];
  for (;;) {
    const bool direct = filled < out.size();
    char* dst = direct ? &out[filled] : chunk;
    const size_t room = direct ? out.size() - filled : sizeof(chunk);
    const ssize_t n = ::read(fd.get(), dst, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(describe("read_file: read failed for", path, errno));
    }
    if (n == 0) break;
    if (direct) {
      filled += static_cast<size_t>(n);
    } else {
      out.append(chunk, static_cast<size_t>(n));
      filled = out.size();
    }
  }
  out.resize(filled);
  return out;
}

void make_output_dir(const std::string& path) {
  if (path.empty()) throw std::runtime_error("output folder: empty path");
  auto fail = [&](const std::string& what, int err) {
    throw std::runtime_error(path + ": cannot use as output folder: " + what + ": " + std::strerror(err));
  };
  // mkdir -p: create each prefix in turn; existing folders are fine.
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    struct stat st {};
    if (::stat(prefix.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) fail("'" + prefix + "' is not a folder", ENOTDIR);
    } else if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      fail("mkdir '" + prefix + "' failed", errno);
    }
    if (pos == std::string::npos) break;
  }
  const std::string probe = path + "/.arcflow-write-test." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("not writable", errno);
  ::close(fd);
  ::unlink(probe.c_str());
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace arcflow::io
