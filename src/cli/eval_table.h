// The few-step comparison table of `arcflow eval --teacher ...`, as one function that `arcflow demo`
// reuses: load the teacher, the classifier and the students, score them against the real test set
// (evaluation/benchmark_table.h), print the table and write eval.json, index.html and the grids.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/evaluation/image_metrics.h"

namespace arcflow::cli {

inline constexpr const char* kFeatureNetwork =
    "arcflow Fashion-MNIST classifier (penultimate features); not Inception";

// A number for JSON, or null where it is NaN or infinite.
nlohmann::json number_or_null(double v);

// A student given on the command line as NAME=PATH.
struct AdapterSpec {
  std::string name, path;
};
// Parses "NAME=PATH"; the name becomes a row and a file name, so it is kept to [A-Za-z0-9._-].
AdapterSpec parse_adapter(const std::string& spec);
// The same for another flag (errors name `flag` and show `example`), e.g. --curve NAME=RUN_DIR.
AdapterSpec parse_named(const std::string& spec, const std::string& flag, const std::string& example);

struct TableRequest {
  std::string teacher, classifier, data_dir, output_dir;
  std::vector<AdapterSpec> adapters;
  std::vector<int> student_nfe;  // empty: each adapter's distilled nfe
  // Sampling temperatures, one row per adapter, nfe and value (unset: the policy's "auto"); values
  // that give an adapter the same temperature as an earlier one make no second row. Rows of the
  // first keep the adapter's name, others get "-T<value>" (gmflow-2-T1).
  std::vector<std::optional<double>> temperatures = {std::nullopt};
  std::vector<AdapterSpec> curves;  // NAME=RUN_DIR: training curves from RUN_DIR/snapshots
  int64_t curve_samples = 0;        // images per curve point: the table's first ones (0: all)
  int64_t profile_samples = 0;      // velocity profile of each adapter on the table's first ones (0: none)
  int profile_points = 8;           // noise levels per student step in the profile
  BenchmarkOptions bench;        // bench.classifier_batch is the classifier's batch size
  bool quiet = false;            // no progress bars
};

// Everything that can be checked before loading a model: files exist, names unique, numbers in
// range. Throws std::invalid_argument naming the flag.
void validate(const TableRequest& r);

struct TableRun {
  BenchmarkTable table;
  ImageMetrics reference;  // the real test images' own metrics
  nlohmann::json info;     // what eval.json holds besides the rows (and "curves", "learnt")
  nlohmann::json curves, learnt, velocity_profiles;
  double seconds = 0;
};

// Runs the table on `device`, prints it, and writes eval.json, index.html and one PNG grid per row
// into r.output_dir (created if needed). eval.json also gets "learnt" (per adapter: histograms of
// the mixture weights and momentum rates its row's policies emitted, evaluation/mixture_stats.h)
// and, with r.curves, "curves" (evaluation/training_curve.h); index.html shows both as SVG.
// Stops early with BenchmarkStopped on Ctrl-C or past r.bench.time_limit_s (teacher rows made so far
// stay in r.bench.cache_dir, if set, for the next run).
TableRun run_table(const TableRequest& r, torch::Device device);

}  // namespace arcflow::cli
