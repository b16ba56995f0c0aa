// Options shared by every subcommand, and the start-up they imply.
#pragma once

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <string>

namespace arcflow::cli {

struct GlobalOptions {
  int threads = 0;            // 0: one per core
  std::string device = "cpu";
};

// Adds -t/--threads and --device to `app`.
void add_global_options(CLI::App& app, GlobalOptions& g);
// Sets torch's thread count and returns the selected device; throws on an unusable device.
torch::Device start_up(const GlobalOptions& g);

// True when `path` names an existing file or folder.
bool file_exists(const std::string& path);
// "arcflow ARGS...": the command as typed, for logs and file metadata.
std::string joined_command(int argc, char** argv);

}  // namespace arcflow::cli
