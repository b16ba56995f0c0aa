#include "training_run.h"

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/util/interrupt.h"
#include "arcflow/util/progress.h"
#include "common.h"

namespace arcflow::cli {

void DistFlags::add(CLI::App* sub) {
  DistOptions& t = opt_;
  env_.emplace_back(sub->add_option("--rank", t.rank, "This process's rank in [0, world size) (env RANK; default 0)"),
                    [](DistOptions& o, const DistOptions& e) { o.rank = e.rank; });
  env_.emplace_back(sub->add_option("--world-size", t.world_size,
                                    "Number of data-parallel processes (env WORLD_SIZE; default 1); each runs --batch "
                                    "samples per step. `arcflow launch -n N -- COMMAND` starts N on this machine"),
                    [](DistOptions& o, const DistOptions& e) { o.world_size = e.world_size; });
  env_.emplace_back(sub->add_option("--master-addr", t.master_addr, "Address of rank 0 (env MASTER_ADDR; default 127.0.0.1)"),
                    [](DistOptions& o, const DistOptions& e) { o.master_addr = e.master_addr; });
  env_.emplace_back(sub->add_option("--master-port", t.master_port, "Rendezvous port on rank 0 (env MASTER_PORT; default 29500)"),
                    [](DistOptions& o, const DistOptions& e) { o.master_port = e.master_port; });
  sub->add_option("--dist-backend", t.backend, "Collective backend: gloo (CPU) or nccl (CUDA builds with NCCL)")
      ->check(CLI::IsMember({"gloo", "nccl"}))
      ->capture_default_str();
  sub->add_option("--dist-timeout", t.timeout_s, "Seconds to wait for the other processes before failing")
      ->capture_default_str();
}

DistOptions DistFlags::resolve() {
  const DistOptions env = DistOptions::from_env();
  for (auto& [opt, take] : env_)
    if (opt->count() == 0) take(opt_, env);
  opt_.validate();
  return opt_;
}

std::function<bool(bool)> stop_agreement(std::shared_ptr<Communicator> comm) {
  if (!comm) return nullptr;
  return [comm](bool stop) {
    std::vector<torch::Tensor> flag{torch::full({1}, stop ? 1.0 : 0.0)};
    comm->all_reduce_sum(flag);
    return flag[0].item<double>() > 0;
  };
}

RunFiles prepare_run(const std::string& dir, bool resume) {
  io::make_output_dir(dir);
  RunFiles f{dir, dir + "/checkpoint.safetensors", dir + "/train.jsonl"};
  if (!resume && file_exists(f.checkpoint))
    throw std::runtime_error(f.checkpoint + " exists: pass --resume to continue that run, or choose another -o");
  if (resume && !file_exists(f.checkpoint)) throw std::runtime_error(f.checkpoint + ": no checkpoint to resume from");
  return f;
}

std::ofstream open_run_log(const RunFiles& files, bool resume, nlohmann::json first_line) {
  std::ofstream log(files.log, std::ios::app);
  if (!log) throw std::runtime_error(files.log + ": cannot open for appending");
  first_line["event"] = resume ? "resume" : "start";
  log << first_line.dump() << "\n" << std::flush;
  return log;
}

LoopResult run_training_loop(const LoopSettings& s, int64_t start, const std::function<StepReport()>& step,
                             const std::function<void()>& save, const std::function<void(int64_t)>& snapshot) {
  install_interrupt_handler();
  const auto t0 = std::chrono::steady_clock::now();
  ProgressBar bar(s.label, s.total, !s.quiet);
  bar.update(start);
  std::string text;
  LoopResult r;
  for (int64_t done = start; done < s.total;) {
    const StepReport rep = step();
    done = rep.step;
    ++r.steps_run;
    if (!rep.bar_text.empty()) text = rep.bar_text;
    bar.update(done, text);
    if (s.checkpoint_every > 0 && done % s.checkpoint_every == 0) save();
    if (snapshot && s.snapshot_every > 0 && done % s.snapshot_every == 0) snapshot(done);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool signal = interrupted(), late = s.time_limit_min > 0 && elapsed > s.time_limit_min * 60.0;
    if (s.any_rank_stops ? s.any_rank_stops(signal || late) : signal || late) {
      r.interrupted = signal || !late;  // a peer's signal counts as one here
      r.time_limit = late;
      break;
    }
  }
  save();
  bar.finish(text);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void report_stop(const LoopSettings& s, const LoopResult& r, int64_t done) {
  if (r.interrupted)
    std::fprintf(stderr, "arcflow: interrupted at %s %lld; checkpoint written; continue with --resume\n",
                 s.unit.c_str(), static_cast<long long>(done));
  else if (r.time_limit)
    std::printf("stopped at the time limit at %s %lld of %lld; continue with --resume\n", s.unit.c_str(),
                static_cast<long long>(done), static_cast<long long>(s.total));
}

}  // namespace arcflow::cli
