// The headline comparison of `arcflow eval --teacher ...` (issue 4): few-step teacher baselines and
// distilled students against the guided many-step teacher, every method started from the SAME noise
// (make_noise(n, (C, H, W), seed)) with the same labels (classes cycling 0..num_classes-1).
//
// Rows, in this order:
//   teacher-euler-<R>-cfg   the reference: guided Euler, R steps (default 50), 2 NFE per step (100)
//   teacher-euler-<R>-cfg-shift-<S>   the same sampler at schedule shift S, for each S in
//                           BenchmarkOptions::reference_shifts other than teacher_shift (side by
//                           side with the reference; the reference itself stays at teacher_shift)
//   teacher-euler-<S>       guided Euler, S steps, 2 NFE per step (S = 2: 4 NFE), for each S in
//                           BenchmarkOptions::teacher_steps
//   teacher-dpmpp-<S>       guided DPM-Solver++(2M), S steps, 2 NFE per step (4 NFE for S = 2).
//                           Its first and final steps are first order (samplers.h), so for S <= 2
//                           it gives exactly the Euler row's images; the row says so.
//   <student name>          one per BenchmarkStudent, in the caller's order; 1 NFE per step
// Every teacher row uses the same guidance scale and schedule shift; each student samples with its
// own StudentSampling. The nfe column counts network evaluations per image, a guided teacher step
// counting 2 (ARCFLOW.md section 1).
//
// Columns (all read off the evaluation classifier, see image_metrics.h; NaN where undefined):
//   fid             Frechet distance of the method's classifier features to the reference stats
//                   (the 10,000 test images)
//   fid_vs_teacher  Frechet distance to the reference teacher's features on the same noise
//                   (~0 for the reference row itself, up to eigendecomposition rounding)
//   accuracy        fraction of samples the classifier assigns to their conditioning class
//   diversity       per-class mean pairwise feature distance, averaged over classes
//   endpoint_mse    the end point's per-pixel MSE to the reference teacher's result from the same
//                   noise: mean over samples and pixels of (x - x_ref)^2, raw unclamped outputs
//                   (0 for the reference itself). Reports before it was renamed call it traj_mse.
//   ms_per_image    wall time of the generation alone (no metrics) / n, in milliseconds (a row taken
//                   from the cache: the time it took when it was made, summed over the runs that made it)
// The reference teacher is generated once; its outputs serve every other row.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "arcflow/evaluation/fid.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/network.h"
#include "arcflow/models/student.h"
#include "arcflow/core/step_loop.h"
#include "arcflow/sampling/student_sampling.h"

namespace arcflow {

// A distilled student to put in the table (one row). The same student may appear in several
// entries with different sampling (e.g. nfe 2 and 4). Fuse its LoRA first for speed (fuse_lora).
struct BenchmarkStudent {
  std::string name;  // row name, e.g. "arcflow-2"; must be unique in the table
  LoRAStudent student{nullptr};
  StudentSampling sampling;
  StepObserver observe;  // optional: sees every step's policy while the row is generated
};

struct BenchmarkOptions {
  int64_t n = 5000;                // samples per method (>= 2 for the feature covariance)
  uint64_t seed = 0;               // make_noise seed
  double cfg_scale = 4.0;          // teacher guidance, every teacher row
  double teacher_shift = 1.0;      // teacher schedule shift, every teacher row
  int reference_steps = 50;        // guided Euler steps of the reference
  std::vector<int> teacher_steps = {2};  // few-step teacher baselines (Euler and DPM++(2M) each)
  std::vector<double> reference_shifts;  // extra reference-sampler rows at these shifts
  int64_t max_batch = 256;         // teacher samples per model call (students use their own)
  int64_t classifier_batch = 500;
  int64_t preview = 20;            // how many of the first samples each row keeps (for image grids)
  // Teacher rows kept on disk batch by batch (evaluation/sample_cache.h), one file per row, named by
  // what it holds rather than by the row: cache_dir/teacher-<sampler>-<steps>-cfg-<cfg>-shift-<shift>
  // .safetensors, so tables sharing a folder share equal rows (the reference at shift 1 here is the
  // "-shift-1" row of a table whose reference is at 3.2). Empty: none. Rows already there with the
  // same key (sampler, settings, n, seed, shape, batch, teacher weights) are reused.
  std::string cache_dir;
  // Stop (throw BenchmarkStopped) once this many seconds have passed (0: no limit), and on
  // interrupted() (util/interrupt.h); checked at every sampler step.
  double time_limit_s = 0;

  // Throws std::invalid_argument naming the field: n < 2, non-finite cfg_scale, teacher_shift <= 0,
  // reference_steps < 1, a teacher_steps entry < 1, a reference_shifts entry <= 0 or non-finite,
  // batch sizes < 1, preview < 0.
  void validate() const;
};

// Thrown by run_benchmark when it stops early (interrupted or over its time limit). The teacher rows
// made so far are in the cache (if any), so the same call continues from there.
class BenchmarkStopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct BenchmarkRow {
  std::string method;
  std::string description;  // e.g. "teacher, Euler 50 steps, guidance 4"
  int nfe = 0;
  // Student rows: the temperature of all but the last step, and whether it was the policy's "auto"
  // value (StudentSampling::temperature unset). Teacher rows: none.
  std::optional<double> temperature;
  bool temperature_auto = false;
  double fid = 0, fid_vs_teacher = 0, accuracy = 0, diversity = 0, endpoint_mse = 0, ms_per_image = 0;
  torch::Tensor preview;    // the first min(preview, n) raw outputs (P, C, H, W) float32, CPU
};

struct BenchmarkTable {
  std::vector<BenchmarkRow> rows;
  int64_t n = 0;
  uint64_t seed = 0;
  torch::Tensor labels;  // (n) int64, shared by every row
  torch::Tensor noise;   // (n, C, H, W) float32, the shared noise (make_noise(n, shape, seed))
  torch::Tensor reference_samples;  // (n, C, H, W) float32 CPU: the reference row's raw outputs
};

// Progress of the generation: (method, done, total), called with done = 0 when a method starts and
// after each sampler step (counted over all batches) with done = 1..total.
using BenchmarkProgress = std::function<void(const std::string& method, int64_t done, int64_t total)>;

// Builds the table described above. `reference` holds the classifier-feature statistics of the real
// images (feature_stats of classify_images(clf, test images).features). The teacher must be
// class-conditional, the classifier must take the teacher's image shape and have its number of classes; students must belong to a teacher
// of the same config. Throws std::invalid_argument naming the problem (bad options, shape or class
// mismatch, duplicate or empty row names, invalid student sampling).
BenchmarkTable run_benchmark(const NetworkPtr& teacher, std::vector<BenchmarkStudent>& students, Classifier& clf,
                             const FeatureStats& reference, const BenchmarkOptions& opt,
                             const BenchmarkProgress& progress = nullptr);

// The table as fixed-width text, one line per row under a header line (what the CLI prints).
std::string format_benchmark_table(const BenchmarkTable& t);

// {"rows": [{"method", "description", "nfe", "fid", "fid_vs_teacher", "accuracy", "diversity",
// "endpoint_mse", "ms_per_image", and for students "temperature" and "temperature_rule" ("auto" or
// "given")}, ...], "n", "seed"} plus every entry of `info` (e.g. "teacher",
// "adapters", "feature_network", "command"). Non-finite numbers are written as null.
nlohmann::json benchmark_json(const BenchmarkTable& t, const nlohmann::json& info = nlohmann::json::object());

// The rows of an eval.json read back (no previews): numbers, null as NaN. Old reports' "traj_mse"
// is read as endpoint_mse. Throws std::runtime_error naming `source` and the row when "rows" is
// missing or a row lacks "method" or has a non-number metric.
std::vector<BenchmarkRow> benchmark_rows_from_json(const nlohmann::json& report, const std::string& source);

// File name of a row's image grid: the method name with every character outside [A-Za-z0-9._-]
// replaced by '_', plus ".png".
std::string benchmark_grid_file(const std::string& method);

// Writes into the existing folder `dir`, each file atomically: eval.json (benchmark_json), one PNG
// grid per row (benchmark_grid_file: its preview images, `nrow` per row, so with the cycling labels
// column k shows class k % num_classes) and index.html (the table, then the grids one above the
// other, every method from the same noise). Throws std::runtime_error naming the file on I/O errors.
// `extra_json` entries go into eval.json only (not into the page's run section); `extra_html` is
// put into the page after the grids (e.g. curves and histograms).
void write_benchmark_report(const BenchmarkTable& t, const std::string& dir,
                            const nlohmann::json& info = nlohmann::json::object(), int nrow = 10,
                            const nlohmann::json& extra_json = nlohmann::json::object(),
                            const std::string& extra_html = "");

}  // namespace arcflow
