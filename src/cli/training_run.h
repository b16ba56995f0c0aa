// What `arcflow train-teacher` and `arcflow distill` share around their step function: the
// output folder's files, the --resume rules, the JSONL log, and the loop with its progress bar,
// checkpoints every N steps, Ctrl-C / SIGTERM and --time-limit stops.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "arcflow/distributed/process_group.h"

namespace arcflow::cli {

// The data-parallel flags (--rank, --world-size, --master-addr, --master-port, --dist-backend,
// --dist-timeout). Each of the first four falls back to its torchrun variable (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), then to DistOptions' default.
class DistFlags {
 public:
  void add(CLI::App* sub);
  DistOptions resolve();  // call after parsing; throws std::invalid_argument on bad values

 private:
  DistOptions opt_;
  std::vector<std::pair<CLI::Option*, std::function<void(DistOptions&, const DistOptions&)>>> env_;
};

// For LoopSettings::any_rank_stops: every rank learns whether any rank wants to stop.
std::function<bool(bool)> stop_agreement(std::shared_ptr<Communicator> comm);

// DIR/checkpoint.safetensors and DIR/train.jsonl of a run in `dir` (created if needed). Throws
// std::runtime_error when the checkpoint exists but `resume` is false (it would be overwritten),
// or when `resume` is true and there is none.
struct RunFiles {
  std::string dir, checkpoint, log;
};
RunFiles prepare_run(const std::string& dir, bool resume);

// Opens the run's log for appending and writes `first_line` (with "event": "start" or "resume").
std::ofstream open_run_log(const RunFiles& files, bool resume, nlohmann::json first_line);

struct LoopSettings {
  std::string label;            // progress bar label, e.g. "distill arcflow"
  std::string unit = "step";    // in messages: "step", "iteration"
  int64_t total = 0;            // run until this many steps are done
  int64_t checkpoint_every = 0; // save() every this many steps (0: only at the end)
  int64_t snapshot_every = 0;   // snapshot(step) every this many steps (0: never)
  double time_limit_min = 0;    // stop after this many minutes (0: none)
  bool quiet = false;           // no progress bar
  // Data parallel: given this rank's wish to stop (signal or time limit), says whether any rank
  // wishes it, so that every rank stops after the same step (collective; null: one process).
  std::function<bool(bool)> any_rank_stops;
};

// One step's outcome: its number (1-based, counted over the whole run) and the text beside the
// progress bar (empty: keep the previous text).
struct StepReport {
  int64_t step = 0;
  std::string bar_text;
};

struct LoopResult {
  int64_t steps_run = 0;
  double seconds = 0;
  bool interrupted = false, time_limit = false;
  // The process exit status: 130 after Ctrl-C / SIGTERM, else 0.
  int exit_status() const { return interrupted ? 130 : 0; }
};

// Runs step() from `start` until `total`, a signal or the time limit; calls save() every
// checkpoint_every steps and once at the end (always, so an interrupted run can resume), and
// snapshot(step) (when given) after every step that is a multiple of snapshot_every.
LoopResult run_training_loop(const LoopSettings& s, int64_t start, const std::function<StepReport()>& step,
                             const std::function<void()>& save,
                             const std::function<void(int64_t)>& snapshot = nullptr);

// Prints how the run stopped: after Ctrl-C (to stderr) or at the time limit, how to continue.
void report_stop(const LoopSettings& s, const LoopResult& r, int64_t done);

}  // namespace arcflow::cli
