// Tests for arcflow/evaluation/mixture_stats.h: the histogram's bins and edges, and the collector's
// weights, rates and per-component means for a hand-written momentum mixture (two batches of one
// step and a second step) and a GMFlow mixture, each checked against sums written out here with
// plain loops and std::exp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "arcflow/core/gmflow.h"
#include "arcflow/core/momentum.h"
#include "arcflow/evaluation/mixture_stats.h"

using namespace arcflow;

TEST(Histogram, BinsEdgesOutsideAndWeights) {
  Histogram h(0.0, 1.0, 4);
  h.add(torch::tensor({-0.5, 0.0, 0.25, 0.5, 0.99, 1.0, 1.5, std::nan("")}));
  EXPECT_EQ(h.counts, (std::vector<double>{1, 1, 1, 2}));  // 1.0 falls in the last bin
  EXPECT_EQ(h.below, 1);
  EXPECT_EQ(h.above, 1);
  EXPECT_EQ(h.total(), 7);  // NaN dropped
  Histogram w(0.0, 1.0, 2);
  w.add(torch::tensor({0.1, 0.2, 0.7, 2.0}), torch::tensor({0.5, 0.25, 2.0, 3.0}));
  EXPECT_EQ(w.counts, (std::vector<double>{0.75, 2.0}));
  EXPECT_EQ(w.above, 3.0);
  const nlohmann::json j = w.to_json();
  EXPECT_EQ(j["edges"], (std::vector<double>{0.0, 0.5, 1.0}));
  EXPECT_THROW(Histogram(1.0, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(Histogram(0.0, 1.0, 0), std::invalid_argument);
  EXPECT_THROW(w.add(torch::ones({3}), torch::ones({2})), std::invalid_argument);
}

namespace {

// Bin of v in [lo, hi] with n bins (v inside), as documented.
int bin_of(double v, double lo, double hi, int n) {
  int b = static_cast<int>(std::floor((v - lo) / (hi - lo) * n));
  return b >= n ? n - 1 : b;
}

}  // namespace

TEST(MixtureStats, MomentumWeightsAndRatesAgainstLoops) {
  // B = 2 samples, K = 3 components, per-sample shape (1, 1, 2): 2 pixels per sample.
  const int B = 2, K = 3, P = 2;
  const std::vector<double> logits = {0.0, 1.0, -1.0, 2.0, 0.5, 0.5,    // sample 0: k0 (p0, p1), k1, k2
                                      3.0, 0.0, 0.0, 0.0, -2.0, 1.0};  // sample 1
  const std::vector<double> rest = {0.7, -0.3, 5.0, -1.2,   // sample 0: k1 (p0, p1), k2 (p0, p1)
                                    0.1, 2.2, -3.9, 0.0};   // sample 1
  const torch::Tensor lw = torch::tensor(logits, torch::kFloat64).reshape({B, K, 1, 1, P});
  const torch::Tensor lg = torch::tensor(rest, torch::kFloat64).reshape({B, K - 1, 1, 1, P});
  const torch::Tensor means = torch::zeros({B, K, 1, 1, P}, torch::kFloat64);
  const MomentumPolicy pol(make_mixture(means, lw, lg, torch::full({B}, 1.0, torch::kFloat64)));

  MixtureStatsCollector c(4, 8, -4.0, 4.0);
  const std::vector<Segment> segs = {{1.0, 0.5, 1.0, 0.5}, {0.5, 0.0, 0.5, 0.0}};
  const torch::Tensor s = torch::full({B}, 1.0);
  c.add(StepContext{0, segs[0], s, s}, pol);
  c.add(StepContext{0, segs[0], s, s}, pol);  // a second batch of the same step
  c.add(StepContext{1, segs[1], s, s}, pol);
  ASSERT_EQ(c.steps().size(), 2u);

  // The same sums with loops.
  std::vector<double> wh(4, 0), gh(8, 0), gwh(8, 0), wsum(K, 0), gsum(K, 0);
  double g_above = 0, gw_above = 0;
  for (int b = 0; b < B; ++b)
    for (int p = 0; p < P; ++p) {
      double z = 0;
      for (int k = 0; k < K; ++k) z += std::exp(logits[(b * K + k) * P + p]);
      for (int k = 0; k < K; ++k) {
        const double w = std::exp(logits[(b * K + k) * P + p]) / z;
        const double g = k == 0 ? 0.0 : rest[(b * (K - 1) + k - 1) * P + p];
        wh[bin_of(w, 0, 1, 4)] += 1;
        wsum[k] += w;
        gsum[k] += g;
        if (g > 4.0) {
          gw_above += w;
          if (k > 0) g_above += 1;
          continue;
        }
        gwh[bin_of(g, -4, 4, 8)] += w;
        if (k > 0) gh[bin_of(g, -4, 4, 8)] += 1;
      }
    }
  for (int step = 0; step < 2; ++step) {
    const StepMixtureStats& st = c.steps()[step];
    const double reps = step == 0 ? 2 : 1;  // step 0 saw the batch twice
    EXPECT_EQ(st.step, step);
    EXPECT_EQ(st.K, K);
    EXPECT_EQ(st.pixels, static_cast<int64_t>(reps * B * P));
    EXPECT_DOUBLE_EQ(st.sigma_src, segs[step].sigma_src);
    EXPECT_TRUE(st.has_gammas);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(st.weight.counts[i], reps * wh[i], 1e-12) << i;
    for (int i = 0; i < 8; ++i) {
      EXPECT_NEAR(st.log_gamma.counts[i], reps * gh[i], 1e-12) << i;
      EXPECT_NEAR(st.log_gamma_weighted.counts[i], reps * gwh[i], 1e-12) << i;
    }
    EXPECT_NEAR(st.log_gamma.above, reps * g_above, 1e-12);
    EXPECT_NEAR(st.log_gamma_weighted.above, reps * gw_above, 1e-12);
    EXPECT_NEAR(st.log_gamma.total(), reps * B * P * (K - 1), 1e-9);
    EXPECT_NEAR(st.log_gamma_weighted.total(), reps * B * P, 1e-9);  // weights sum to 1 per pixel
    for (int k = 0; k < K; ++k) {
      EXPECT_NEAR(st.mean_weight[k], wsum[k] / (B * P), 1e-12) << k;
      EXPECT_NEAR(st.mean_log_gamma[k], gsum[k] / (B * P), 1e-12) << k;
    }
  }
  const nlohmann::json j = c.to_json();
  EXPECT_EQ(j["mixture"], "arcflow");
  ASSERT_EQ(j["steps"].size(), 2u);
  EXPECT_EQ(j["steps"][1]["sigma_src"], 0.5);
  EXPECT_TRUE(j["steps"][0].contains("log_gamma_weighted"));
}

TEST(MixtureStats, GMFlowHasWeightsOnly) {
  const int B = 1, K = 2;
  GaussianMixture g;
  g.means = torch::zeros({B, K, 1, 2, 2});
  g.logweights = torch::tensor({0.0, 0.0, 0.0, std::log(4.0), 0.0, 0.0, 0.0, 0.0}).reshape({B, K, 1, 2, 2});
  g.logstd = torch::zeros({B});
  g.x_src = torch::zeros({B, 1, 2, 2});
  g.sigma_src = torch::ones({B});
  const GMFlowPolicy pol(g, GMFlowIntegration{});
  MixtureStatsCollector c(4);
  const Segment seg{1.0, 0.0, 1.0, 0.0};
  const torch::Tensor s = torch::ones({B});
  c.add(StepContext{0, seg, s, s}, pol);
  ASSERT_EQ(c.steps().size(), 1u);
  const StepMixtureStats& st = c.steps()[0];
  EXPECT_FALSE(st.has_gammas);
  // Pixels 0-2: weights 1/2, 1/2; pixel 3: 4/5 (k 0) and 1/5 (k 1). Bins of width 1/4.
  EXPECT_EQ(st.weight.counts, (std::vector<double>{1, 0, 6, 1}));
  EXPECT_NEAR(st.mean_weight[0], (0.5 * 3 + 0.8) / 4, 1e-6);
  EXPECT_TRUE(st.mean_log_gamma.empty());
  const nlohmann::json j = c.to_json();
  EXPECT_EQ(j["mixture"], "gmflow");
  EXPECT_FALSE(j["steps"][0].contains("log_gamma"));
}
