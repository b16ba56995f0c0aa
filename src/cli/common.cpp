#include "common.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "arcflow/distributed/process_group.h"
#include "arcflow/models/student.h"
#include "arcflow/util/resources.h"

// OpenBLAS's thread-count setter, when the process has OpenBLAS (a weak reference: null otherwise).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace arcflow::cli {

void add_global_options(CLI::App& app, GlobalOptions& g) {
  app.add_option("-t,--threads", g.threads, "CPU threads for torch (default: one per core)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", g.device, "Device to run on: cpu or cuda (default cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

torch::Device start_up(const GlobalOptions& g) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int threads = g.threads > 0 ? g.threads : (cores > 0 ? cores : 1);
  torch::set_num_threads(threads);
  // OpenBLAS (pthreads build) keeps its own pool of one thread per core, which torch's setting does
  // not reach: with -t 1 a matrix product still ran on two busy threads, and two single-thread runs
  // side by side fought over the cores. Absent (null) when the BLAS is another library.
  if (openblas_set_num_threads != nullptr) openblas_set_num_threads(threads);
  if (g.device == "cuda") {
    if (!torch::cuda::is_available())
      throw std::runtime_error("--device cuda: no CUDA device is available to this build of LibTorch");
    return local_cuda_device();  // cuda:LOCAL_RANK when several processes share the machine
  }
  return torch::Device(torch::kCPU);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void require_input_file(const std::string& flag, const std::string& path, const std::string& hint) {
  const std::string why = hint.empty() ? "" : " (" + hint + ")";
  struct stat st {};
  if (path.empty()) throw std::invalid_argument(flag + ": empty file name");
  if (::stat(path.c_str(), &st) != 0) throw std::invalid_argument(flag + ": no such file '" + path + "'" + why);
  if (S_ISDIR(st.st_mode)) throw std::invalid_argument(flag + ": '" + path + "' is a folder, expected a file");
}

void require_adapter(const std::string& flag, const std::string& path, const std::string& hint) {
  const std::string why = hint.empty() ? "" : " (" + hint + ")";
  struct stat st {};
  if (path.empty()) throw std::invalid_argument(flag + ": empty path");
  if (::stat(path.c_str(), &st) != 0)
    throw std::invalid_argument(flag + ": no such file or folder '" + path + "'" + why);
  if (S_ISDIR(st.st_mode) && !is_adapter_folder(path))
    throw std::invalid_argument(flag + ": " + not_an_adapter_folder(path));
}

std::string shell_command(const std::vector<std::string>& args) {
  std::string cmd = "arcflow";
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    bool plain = !a.empty();
    for (char ch : a)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || std::string("_-./=:,+@%").find(ch) != std::string::npos))
        plain = false;
    if (plain) {
      cmd += " " + a;
      continue;
    }
    std::string q = "'";
    for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    cmd += " " + q + "'";
  }
  return cmd;
}

namespace {
std::string& recorded() {
  static std::string cmd = "arcflow";
  return cmd;
}
}  // namespace

void record_command_line(int argc, char** argv) { recorded() = shell_command(std::vector<std::string>(argv, argv + argc)); }

const std::string& command_line() { return recorded(); }

std::string parent_dir(const std::string& file, const std::string& flag) {
  struct stat st {};
  if (file.empty() || file.back() == '/' || (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)))
    throw std::invalid_argument(flag + " '" + file + "' must name a file, not a folder");
  const size_t slash = file.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : file.substr(0, slash);
}

}  // namespace arcflow::cli
