// What a distilled student's policy head emits, as histograms (issue 14): while the comparison
// table generates a student's row, a MixtureStatsCollector watches every step's policy and
// accumulates, per student step (over every sample and pixel of the row):
//   weight              the mixture weights w_k = softmax_k(logits), every component of every
//                       pixel (counts sum to K x pixels)
//   log_gamma           ln gamma_k of the components k = 1..K-1 that have a learnt rate (component
//                       0's is fixed at 0, core/momentum.h), each counted once (sums to (K-1) x pixels)
//   log_gamma_weighted  ln gamma_k of every component weighted by its w_k: the rates the velocity
//                       actually uses (sums to the pixel count)
// plus each component's mean weight and mean ln gamma. A GMFlow policy (core/gmflow.h) has mixture
// weights but no momentum rates: its steps carry weights only (has_gammas false). Any other
// policy is ignored.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/core/step_loop.h"

namespace arcflow {

// Fixed bins over [lo, hi]: bin i holds [lo + i d, lo + (i + 1) d), d = (hi - lo) / bins, the last
// bin also hi itself; mass below lo or above hi goes to `below` / `above`; NaN is dropped.
struct Histogram {
  double lo = 0, hi = 1;
  std::vector<double> counts;
  double below = 0, above = 0;

  Histogram() = default;
  Histogram(double lo, double hi, int bins);  // std::invalid_argument unless lo < hi, bins >= 1
  // Adds every element of `values`, each with weight 1 or the matching element of `weights`
  // (same number of elements).
  void add(const torch::Tensor& values, const torch::Tensor& weights = {});
  double total() const;  // below + above + the bins
  // {"lo", "hi", "edges" (bins + 1), "counts", "below", "above"}
  nlohmann::json to_json() const;
};

struct StepMixtureStats {
  int step = 0;  // 0-based student step
  double sigma_src = 0, sigma_dst = 0;
  int64_t K = 0;
  int64_t pixels = 0;  // samples x pixels seen
  bool has_gammas = false;
  Histogram weight, log_gamma, log_gamma_weighted;
  std::vector<double> mean_weight, mean_log_gamma;  // per component (mean_log_gamma empty without gammas)
};

class MixtureStatsCollector {
 public:
  // weight_bins over [0, 1]; gamma_bins over ln gamma in [log_gamma_lo, log_gamma_hi].
  explicit MixtureStatsCollector(int weight_bins = 20, int gamma_bins = 32, double log_gamma_lo = -4.0,
                                 double log_gamma_hi = 4.0);

  // Adds one step's policy (any batch); steps are told apart by ctx.index.
  void add(const StepContext& ctx, const Policy& policy);
  // An observer for BenchmarkStudent::observe / sample_student that calls add().
  StepObserver observer();

  const std::vector<StepMixtureStats>& steps() const { return steps_; }
  // "mixture" (the policy name seen: "arcflow", "gmflow", or "none") and "steps": one object per
  // step with "step", "sigma_src", "sigma_dst", "K", "pixels", "weight" (histogram),
  // "mean_weight", and for momentum policies "log_gamma", "log_gamma_weighted", "mean_log_gamma".
  nlohmann::json to_json() const;

 private:
  int weight_bins_, gamma_bins_;
  double lg_lo_, lg_hi_;
  std::string policy_ = "none";
  std::vector<StepMixtureStats> steps_;
  std::vector<std::vector<double>> weight_sum_, log_gamma_sum_;  // per step, per component
};

}  // namespace arcflow
