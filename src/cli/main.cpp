// arcflow: ArcFlow distillation of flow-matching generators (command-line entry point).
#include <c10/util/Exception.h>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>

#include "commands.h"

int main(int argc, char** argv) {
  // torch's OpenMP workers spin after each parallel region and steal the cores OpenBLAS's own
  // threads need for matrix products (measured on 2 cores: toy teacher 18 it/s with spinning,
  // 45 it/s with passive waiting). libgomp reads OMP_WAIT_POLICY when it loads, before main, so
  // set it and start again once; the user's own setting always wins.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
  }
  // glibc serves blocks over 128 KiB-32 MiB with fresh mmap pages and returns them on free, so every
  // large tensor (a few MB here) costs page faults again; keeping them on the heap lets freed blocks
  // be reused (measured: the closed-form integration at batch 64, 1 thread, 6.7 -> 3.8 ms median).
  ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 512 << 20);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // logs of background runs keep stdout and stderr in order
  CLI::App app{
      "arcflow: distil a many-step flow-matching generator into a 2-step one with ArcFlow\n"
      "(a per-pixel mixture of momentum processes integrated in closed form)."};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  app.set_version_flag("--version", std::string("arcflow 0.1.0"));
  arcflow::cli::record_command_line(argc, argv);
  arcflow::cli::GlobalOptions global;
  arcflow::cli::add_global_options(app, global);

  std::map<CLI::App*, arcflow::cli::Runner> runners;
  auto reg = [&](arcflow::cli::Runner r) { runners[app.get_subcommands({}).back()] = std::move(r); };
  reg(arcflow::cli::add_toy_command(app, global));
  reg(arcflow::cli::add_demo_command(app, global));
  reg(arcflow::cli::add_train_classifier_command(app, global));
  reg(arcflow::cli::add_eval_command(app, global));
  reg(arcflow::cli::add_sample_command(app, global));
  reg(arcflow::cli::add_train_teacher_command(app, global));
  reg(arcflow::cli::add_distill_command(app, global));
  reg(arcflow::cli::add_bench_command(app, global));
  reg(arcflow::cli::add_launch_command(app, global));
  reg(arcflow::cli::add_serve_command(app, global));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "arcflow: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "arcflow: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
