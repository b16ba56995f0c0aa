// `arcflow toy`: the whole method on a 2-D distribution. Trains the MLP teacher by flow
// matching, distils three students with the same budget and seed: the linear baseline (K = 1),
// pi-Flow's GMFlow (K components) and ArcFlow (K components), and measures them against the
// teacher's fine Euler solution.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "arcflow/models/student.h"
#include "arcflow/models/toy_mlp/toy_mlp.h"
#include "arcflow/sampling/rollout.h"
#include "arcflow/training/distill.h"

namespace arcflow {

struct ToyConfig {
  std::string data = "checkerboard";
  double shift = 3.0;  // places the students' steps and the teacher's few-step baselines
  int nfe = 2;
  int K = 16;
  uint64_t seed = 0;
  // Teacher (flow matching on uniform sigma).
  ToyMLPConfig teacher_model;
  int teacher_iters = 2000;
  int teacher_batch = 1024;
  double teacher_lr = 1e-3;
  // Students.
  DistillConfig distill = default_distill();
  int distill_iters = 400;
  int lora_rank = 8;
  // Evaluation.
  int eval_samples = 2048;
  int path_points = 64;   // reference-grid points per student step (at least)
  int plot_paths = 24;    // trajectories drawn per picture
  std::string output_dir; // empty: no files written
  torch::Device device = torch::kCPU;
  bool progress = true;

  // The toy recipe for the distiller (section 4 defaults with the toy's lr and budget).
  static DistillConfig default_distill();
  // Throws std::invalid_argument naming the first bad value.
  void validate() const;
};

struct ToyRow {
  std::string method;
  int nfe = 0;
  double endpoint_mse = 0, path_mse = 0, swd = 0, ms_per_sample = 0;
};

struct ToyCurve {             // one method's samples and paths, for the pictures
  std::string method;
  torch::Tensor samples;      // (n, 2)
  torch::Tensor paths;        // (plot_paths, points, 2) states on the reference grid, noise first
  std::vector<int> step_ends; // indices into the points where a step ends
};

struct ToyStudentRun {
  std::string name;              // "linear", "gmflow", "arcflow"
  LoRAStudent student{nullptr};  // EMA weights, eval mode
  double seconds = 0;
  std::vector<double> losses;    // per iteration
};

struct ToyResult {
  ToyConfig config;
  std::vector<ToyRow> rows;
  std::vector<ToyCurve> curves;  // data (samples only), reference and each method
  double teacher_seconds = 0;
  double teacher_final_loss = 0;
  ToyMLP teacher{nullptr};
  std::vector<ToyStudentRun> students;  // linear, gmflow, arcflow
  // The run called `name`; throws std::out_of_range.
  const ToyStudentRun& student(const std::string& name) const;
};

ToyResult run_toy(const ToyConfig& cfg);

// Writes DIR/report.json, DIR/report.html, the pictures, and the weights (teacher.safetensors,
// linear.safetensors and arcflow.safetensors: LoRA + head in PEFT naming). Returns the HTML path.
std::string write_toy_report(const ToyResult& result, const std::string& dir);

// The file names write_toy_report gives a method's pictures (inside DIR): its samples (every curve)
// and its trajectories against the reference (every method after the reference curve).
std::string toy_samples_picture(const std::string& method);
std::string toy_paths_picture(const std::string& method);

// The metric rows as fixed-width text under a header line (what the CLI prints).
std::string format_toy_table(const ToyResult& result);

}  // namespace arcflow
