// `arcflow toy`: the whole method on a 2-D distribution.
#include <cstdio>

#include "arcflow/io/atomic_file.h"
#include "arcflow/toy/data.h"
#include "arcflow/toy/pipeline.h"
#include "commands.h"

namespace arcflow::cli {

namespace {

struct ToyOptions {
  ToyConfig cfg;
  bool quiet = false;
};

void add_toy_flags(CLI::App* sub, ToyOptions& o) {
  ToyConfig& c = o.cfg;
  sub->add_option("--data", c.data, "Distribution: checkerboard, 8gaussians, moons or spirals")
      ->check(CLI::IsMember(toy_dataset_names()))
      ->capture_default_str();
  sub->add_option("--shift", c.shift, "Schedule shift s >= 1 placing the students' and few-step teacher's steps")
      ->capture_default_str();
  sub->add_option("--nfe", c.nfe, "Student steps (network evaluations per sample)")->capture_default_str();
  sub->add_option("-K,--components", c.K, "Mixture components of the ArcFlow student")->capture_default_str();
  sub->add_option("-s,--seed", c.seed, "Random seed; the same seed reproduces the run")->capture_default_str();
  sub->add_option("--teacher-iters", c.teacher_iters, "Flow-matching iterations of the teacher")->capture_default_str();
  sub->add_option("--teacher-batch", c.teacher_batch, "Teacher batch size")->capture_default_str();
  sub->add_option("--teacher-lr", c.teacher_lr, "Teacher Adam learning rate")->capture_default_str();
  sub->add_option("--distill-iters", c.distill_iters, "Distillation iterations per student")->capture_default_str();
  sub->add_option("--batch", c.distill.batch_size, "Distillation batch size")->capture_default_str();
  sub->add_option("--lr", c.distill.lr, "Student AdamW learning rate (the log-gamma head uses 0.1x)")
      ->capture_default_str();
  sub->add_option("--decay-iters", c.distill.num_decay_iters,
                  "Iterations over which teacher_ratio decays from 1 to 0")->capture_default_str();
  sub->add_option("--timestep-ratio", c.distill.timestep_ratio, "Length of the last step relative to the others")
      ->capture_default_str();
  sub->add_option("--lora-rank", c.lora_rank, "LoRA rank on the teacher's hidden layers (alpha = rank)")
      ->capture_default_str();
  sub->add_option("--eval-samples", c.eval_samples, "Noises used for the metrics")->capture_default_str();
  sub->add_flag("-q,--quiet", o.quiet, "No progress bars");
  sub->footer("Global options -t/--threads and --device are described in `arcflow --help`.");
}

int run_toy(ToyOptions& o, const GlobalOptions& g, const std::string& out_dir) {
  o.cfg.device = start_up(g);
  o.cfg.progress = !o.quiet;
  o.cfg.validate();
  o.cfg.output_dir = out_dir;
  if (!out_dir.empty()) io::make_output_dir(out_dir);  // fail now, not after the training
  const ToyResult res = run_toy(o.cfg);
  std::printf("%s", format_toy_table(res).c_str());
  if (!out_dir.empty()) {
    const std::string html = write_toy_report(res, out_dir);
    std::printf("report: %s (and %s/report.json)\n", html.c_str(), out_dir.c_str());
  }
  return 0;
}

}  // namespace

Runner add_toy_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand("toy", "Run the whole method on a 2-D distribution: teacher, ArcFlow and linear "
                                        "students, metrics, report with trajectory pictures");
  auto o = std::make_shared<ToyOptions>();
  auto out = std::make_shared<std::string>("toy-out");
  add_toy_flags(sub, *o);
  sub->add_option("-o,--output", *out, "Output folder for report.json, report.html and pictures")
      ->capture_default_str();
  return [o, out, &g] { return run_toy(*o, g, *out); };
}

}  // namespace arcflow::cli
