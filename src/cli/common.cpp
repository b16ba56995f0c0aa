#include "common.h"

#include <sys/stat.h>

#include <stdexcept>
#include <thread>

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
  if (g.device == "cuda") {
    if (!torch::cuda::is_available())
      throw std::runtime_error("--device cuda: no CUDA device is available to this build of LibTorch");
    return torch::Device(torch::kCUDA);
  }
  return torch::Device(torch::kCPU);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string joined_command(int argc, char** argv) {
  std::string cmd = "arcflow";
  for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
  return cmd;
}

}  // namespace arcflow::cli
