// Shared by the libFuzzer harnesses: the contract each one checks is "malformed input gets the
// reader's documented exception; anything else (another exception type, a sanitizer report, a
// crash, a result that does not survive a round trip) is a bug". violation() prints and aborts, so
// libFuzzer records the input as a crash.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace arcflow::fuzz {

[[noreturn]] inline void violation(const std::string& what) {
  std::fprintf(stderr, "contract violation: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// The input written to a file of this process (readers that take a path). Same path every call.
inline const std::string& write_input(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string path = [&] {
    const char* base = std::getenv("TMPDIR");
    return std::string(base && *base ? base : "/tmp") + "/arcflow-fuzz-" + std::to_string(::getpid()) + suffix;
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) violation("cannot write " + path);
  if (size > 0 && std::fwrite(data, 1, size, f) != size) violation("short write to " + path);
  std::fclose(f);
  return path;
}

// Each harness defines write_seeds(dir): its seed corpus, made by our own writers so that it
// matches the formats exactly. Running a harness with ARCFLOW_FUZZ_SEEDS=DIR writes them and exits.
void write_seeds(const std::string& dir);

inline void write_seed(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) violation("cannot write " + path);
  std::fclose(f);
}

}  // namespace arcflow::fuzz

extern "C" __attribute__((used)) int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("ARCFLOW_FUZZ_SEEDS"); dir != nullptr && *dir != '\0') {
    arcflow::fuzz::write_seeds(dir);
    std::exit(0);
  }
  return 0;
}
