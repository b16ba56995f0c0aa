// `arcflow launch -n N -- distill ...` (or train-teacher): N data-parallel processes of one command on this
// machine, as torchrun --nproc-per-node N would start them: each child gets RANK, WORLD_SIZE,
// MASTER_ADDR=127.0.0.1 and MASTER_PORT, and (unless the command sets -t) an equal share of the
// cores. Ctrl-C reaches every child (same process group), which checkpoint together and stop. When
// a child fails, the others get SIGTERM; the exit status is the first failure's.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"

namespace arcflow::cli {

namespace {

struct LaunchOptions {
  int n = 2;
  int port = 29500;
  std::vector<std::string> command;
};

int run_launch(const LaunchOptions& o) {
  if (o.n < 1) throw std::invalid_argument("launch: -n must be >= 1, got " + std::to_string(o.n));
  if (o.command.empty()) throw std::invalid_argument("launch: give the command after --, e.g. -- distill --config ...");
  if (o.command[0] != "distill" && o.command[0] != "train-teacher")
    throw std::invalid_argument("launch: only distill and train-teacher run data-parallel, got '" + o.command[0] + "'");
  bool threads_given = false;
  for (const auto& a : o.command)
    if (a == "-t" || a == "--threads" || a.rfind("--threads=", 0) == 0) threads_given = true;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int share = std::max(1, (cores > 0 ? cores : 1) / o.n);

  std::vector<pid_t> kids;
  for (int rank = 0; rank < o.n; ++rank) {
    std::vector<std::string> args{"arcflow"};
    args.insert(args.end(), o.command.begin(), o.command.end());
    if (!threads_given) args.insert(args.end(), {"-t", std::to_string(share)});
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("launch: fork failed");
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);  // one GPU each with --device cuda
      ::setenv("WORLD_SIZE", std::to_string(o.n).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(o.port).c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::perror("launch: exec");
      std::_Exit(127);
    }
    kids.push_back(pid);
  }
  ::signal(SIGINT, SIG_IGN);  // the children handle Ctrl-C; wait for them
  int first_failure = 0;
  for (size_t left = kids.size(); left > 0; --left) {
    int status = 0;
    const pid_t pid = ::wait(&status);
    if (pid < 0) break;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    for (size_t r = 0; r < kids.size(); ++r)
      if (kids[r] == pid) {
        if (code != 0) std::fprintf(stderr, "arcflow launch: rank %zu exited with status %d\n", r, code);
        kids[r] = -1;
      }
    if (code != 0 && first_failure == 0) {
      first_failure = code;
      for (pid_t k : kids)
        if (k > 0) ::kill(k, SIGTERM);
    }
  }
  return first_failure;
}

}  // namespace

Runner add_launch_command(CLI::App& app, GlobalOptions&) {
  auto* sub = app.add_subcommand("launch",
                                 "Run N data-parallel processes of `arcflow distill` or `arcflow train-teacher` on "
                                 "this machine (for several machines, start the command on each with RANK, WORLD_SIZE, "
                                 "MASTER_ADDR and MASTER_PORT set, as for torchrun)");
  auto o = std::make_shared<LaunchOptions>();
  sub->add_option("-n,--nproc", o->n, "Number of processes")->capture_default_str();
  sub->add_option("--master-port", o->port, "Rendezvous port on this machine")->capture_default_str();
  sub->add_option("command", o->command, "The arcflow command after --, e.g. -- distill --config configs/arcflow-2.toml")
      ->required();
  sub->footer("Example: arcflow launch -n 2 -- distill --config configs/arcflow-2.toml -o runs/dp");
  return [o] { return run_launch(*o); };
}

}  // namespace arcflow::cli
