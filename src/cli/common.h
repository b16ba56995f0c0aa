// Options shared by every subcommand, and the start-up they imply.
#pragma once

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "arcflow/util/resources.h"  // check_memory
#include "arcflow/util/text.h"       // format_number

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
// Throws std::invalid_argument "FLAG: no such file 'PATH' (HINT)" when `path` is empty, missing or
// a folder, so a bad input path fails before any long work starts.
void require_input_file(const std::string& flag, const std::string& path, const std::string& hint = "");
// An adapter path: a file (checked when read), or a pnotp/ArcFlow adapter folder. Anything else
// throws std::invalid_argument naming the flag, what was found and what is accepted.
void require_adapter(const std::string& flag, const std::string& path, const std::string& hint = "");
// The folder that will hold output `file` (to create before writing); throws std::invalid_argument
// naming `flag` when `file` is empty or names a folder.
std::string parent_dir(const std::string& file, const std::string& flag);

// The command line of this run, recorded in logs and file metadata so a result says how to remake
// it: main() records argv once; command_line() gives "arcflow ARGS..." with every argument a shell
// would split or expand single-quoted ("arcflow" alone before anything is recorded).
void record_command_line(int argc, char** argv);
const std::string& command_line();
// The same quoting for any argument list (args[0] is replaced by "arcflow").
std::string shell_command(const std::vector<std::string>& args);

}  // namespace arcflow::cli
