// Each subcommand registers itself on the app and returns a function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "common.h"

namespace arcflow::cli {

using Runner = std::function<int()>;

Runner add_toy_command(CLI::App& app, GlobalOptions& g);
Runner add_demo_command(CLI::App& app, GlobalOptions& g);

}  // namespace arcflow::cli
