// Each subcommand registers itself on the app and returns a function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "common.h"

namespace arcflow::cli {

using Runner = std::function<int()>;

Runner add_toy_command(CLI::App& app, GlobalOptions& g);
Runner add_demo_command(CLI::App& app, GlobalOptions& g);
Runner add_train_classifier_command(CLI::App& app, GlobalOptions& g);
Runner add_eval_command(CLI::App& app, GlobalOptions& g);
Runner add_sample_command(CLI::App& app, GlobalOptions& g);
Runner add_train_teacher_command(CLI::App& app, GlobalOptions& g);
Runner add_distill_command(CLI::App& app, GlobalOptions& g);
Runner add_bench_command(CLI::App& app, GlobalOptions& g);
Runner add_launch_command(CLI::App& app, GlobalOptions& g);
Runner add_serve_command(CLI::App& app, GlobalOptions& g);

}  // namespace arcflow::cli
