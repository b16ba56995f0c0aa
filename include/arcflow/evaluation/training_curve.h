// Training curves (issue 14): the EMA adapters `arcflow distill --snapshot-every N` keeps in
// RUN_DIR/snapshots/adapter-<iteration>.safetensors, each scored like a row of the comparison table
// (benchmark_table.h) on the table's own noise and labels: FID against the real test images'
// classifier features, and endpoint MSE (per pixel) to the table's reference result.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/evaluation/fid.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/network.h"

namespace arcflow {

struct Snapshot {
  int64_t iteration = 0;
  std::string path;
};

// The files RUN_DIR/snapshots/adapter-<digits>.safetensors, sorted by the iteration those digits
// give; other files there (e.g. a write's temporary file) are ignored. Throws std::runtime_error
// naming the folder when it does not exist or holds no snapshot (with how to make them).
std::vector<Snapshot> find_snapshots(const std::string& run_dir);

struct CurvePoint {
  int64_t iteration = 0;
  double fid = 0, endpoint_mse = 0;
};

struct TrainingCurve {
  std::string name, run_dir;
  int64_t n = 0;  // images scored per snapshot
  int nfe = 0;  // the student steps of the last snapshot (each snapshot samples at its distilled nfe)
  double temperature = 1.0;  // the last snapshot's sampling temperature
  bool temperature_auto = true;  // it was the policy's "auto" value
  std::vector<CurvePoint> points;  // by iteration
};

// (student name, snapshot index, snapshot count), called before each snapshot is sampled.
using CurveProgress = std::function<void(const std::string& name, size_t index, size_t count)>;

// Scores every snapshot of `run_dir` (find_snapshots) on table.noise and table.labels: each loaded
// on `teacher`, LoRA fused, sampled with the schedule it was distilled for (max_batch images per
// call). `table` must come from run_benchmark (noise, labels, reference_samples set). `samples` > 0
// scores only the table's first `samples` images (e.g. 1,000 of a 5,000-image table; labels cycle
// through the classes, so every prefix is balanced); 0 scores all. `temperature` unset: each
// snapshot's "auto" temperature (student_sampling.h).
TrainingCurve run_training_curve(const NetworkPtr& teacher, const std::string& name, const std::string& run_dir,
                                 Classifier& clf, const FeatureStats& reference, const BenchmarkTable& table,
                                 int64_t max_batch, int64_t classifier_batch,
                                 const CurveProgress& progress = nullptr, int64_t samples = 0,
                                 std::optional<double> temperature = std::nullopt);

// {"NAME": {"run_dir", "nfe", "n", "temperature", "temperature_rule", "points": [{"iteration", "fid", "endpoint_mse"}, ...]}, ...};
// non-finite numbers as null.
nlohmann::json curves_json(const std::vector<TrainingCurve>& curves);

}  // namespace arcflow
