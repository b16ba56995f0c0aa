// `--config FILE` for a subcommand: a TOML file whose top-level keys are the subcommand's long flag
// names (dashes or underscores), e.g. `lr = 3e-4`, `iters = 6000`. Flags given on the command line
// win over the file; an unknown key is an error naming the file and line.
#pragma once

#include <CLI/CLI.hpp>

namespace arcflow::cli {

void add_config_option(CLI::App* sub);

}  // namespace arcflow::cli
