// The parts of the `arcflow eval --teacher` page and eval.json beyond the table (issue 14): the
// training curves of --curve (FID and endpoint MSE against iterations) and what each student
// learnt (histograms of its mixture weights and momentum rates at every step).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/evaluation/mixture_stats.h"
#include "arcflow/evaluation/training_curve.h"
#include "arcflow/evaluation/velocity_profile.h"

namespace arcflow::cli {

// One adapter's policies, as seen while its row `row` (nfe steps) was generated.
struct LearntReport {
  std::string name, row, policy;
  int64_t K = 0;
  int nfe = 0;
  MixtureStatsCollector stats;
};

// {"NAME": {"row", "nfe", "policy", "K", "mixture", "steps": [...]}} (MixtureStatsCollector::to_json),
// plus a "note" where there is nothing to show (GMFlow's rates, a K = 1 student).
nlohmann::json learnt_json(const std::vector<LearntReport>& learnt);

// HTML sections with inline SVG: "Training curves" (empty string without curves) and "What the
// students learnt" (empty without adapters).
std::string curves_html(const std::vector<TrainingCurve>& curves, const BenchmarkTable& table);
std::string learnt_html(const std::vector<LearntReport>& learnt);
// The velocity-error profiles (evaluation/velocity_profile.h) as two SVG panels and a table.
std::string velocity_profiles_html(const std::vector<VelocityProfile>& profiles);

}  // namespace arcflow::cli
