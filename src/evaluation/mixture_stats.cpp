// Histograms of the mixture weights and momentum rates a student emits (see mixture_stats.h).
#include "arcflow/evaluation/mixture_stats.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "arcflow/core/gmflow.h"
#include "arcflow/core/momentum.h"

namespace arcflow {

Histogram::Histogram(double lo_, double hi_, int bins) : lo(lo_), hi(hi_), counts(bins > 0 ? bins : 0, 0.0) {
  if (!(lo < hi) || !std::isfinite(lo) || !std::isfinite(hi) || bins < 1)
    throw std::invalid_argument("histogram: need lo < hi (finite) and bins >= 1");
}

void Histogram::add(const torch::Tensor& values, const torch::Tensor& weights) {
  const torch::Tensor v = values.detach().to(torch::kCPU, torch::kFloat64).flatten();
  torch::Tensor w = weights.defined() ? weights.detach().to(torch::kCPU, torch::kFloat64).flatten()
                                      : torch::ones_like(v);
  if (w.numel() != v.numel())
    throw std::invalid_argument("histogram: " + std::to_string(v.numel()) + " values but " +
                                std::to_string(w.numel()) + " weights");
  below += w.masked_select(v < lo).sum().item<double>();
  above += w.masked_select(v > hi).sum().item<double>();
  const torch::Tensor in = (v >= lo).logical_and(v <= hi);
  const int64_t bins = static_cast<int64_t>(counts.size());
  const torch::Tensor idx =
      ((v.masked_select(in) - lo) / (hi - lo) * static_cast<double>(bins)).floor().to(torch::kLong).clamp(0, bins - 1);
  const torch::Tensor c = torch::bincount(idx, w.masked_select(in), bins).to(torch::kFloat64);
  const double* p = c.data_ptr<double>();
  for (int64_t i = 0; i < bins; ++i) counts[i] += p[i];
}

double Histogram::total() const {
  double t = below + above;
  for (double c : counts) t += c;
  return t;
}

nlohmann::json Histogram::to_json() const {
  std::vector<double> edges;
  for (size_t i = 0; i <= counts.size(); ++i)
    edges.push_back(lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(counts.size()));
  return {{"lo", lo}, {"hi", hi}, {"edges", edges}, {"counts", counts}, {"below", below}, {"above", above}};
}

MixtureStatsCollector::MixtureStatsCollector(int weight_bins, int gamma_bins, double log_gamma_lo, double log_gamma_hi)
    : weight_bins_(weight_bins), gamma_bins_(gamma_bins), lg_lo_(log_gamma_lo), lg_hi_(log_gamma_hi) {
  Histogram(0, 1, weight_bins);  // validate now
  Histogram(log_gamma_lo, log_gamma_hi, gamma_bins);
}

void MixtureStatsCollector::add(const StepContext& ctx, const Policy& policy) {
  torch::Tensor logweights, log_gammas;  // (B, K, 1, ...)
  if (const auto* m = dynamic_cast<const MomentumPolicy*>(&policy)) {
    logweights = m->mixture().logweights;
    log_gammas = m->mixture().log_gammas;
  } else if (const auto* g = dynamic_cast<const GMFlowPolicy*>(&policy)) {
    logweights = g->mixture().logweights;
  } else {
    return;
  }
  policy_ = policy.name();
  torch::NoGradGuard no_grad;
  const int64_t K = logweights.size(1);
  // (K, pixels) with every sample's pixels side by side.
  const torch::Tensor w = torch::softmax(logweights.detach().to(torch::kCPU, torch::kFloat64), 1)
                              .transpose(0, 1).reshape({K, -1});
  const int64_t pixels = w.size(1);
  const size_t i = ctx.index;
  while (steps_.size() <= i) {
    StepMixtureStats s;
    s.step = static_cast<int>(steps_.size());
    s.weight = Histogram(0, 1, weight_bins_);
    s.log_gamma = Histogram(lg_lo_, lg_hi_, gamma_bins_);
    s.log_gamma_weighted = Histogram(lg_lo_, lg_hi_, gamma_bins_);
    steps_.push_back(std::move(s));
    weight_sum_.emplace_back();
    log_gamma_sum_.emplace_back();
  }
  StepMixtureStats& s = steps_[i];
  if (s.pixels > 0 && s.K != K)
    throw std::invalid_argument("mixture stats: step " + std::to_string(i) + " had K " + std::to_string(s.K) +
                                ", now " + std::to_string(K));
  s.sigma_src = ctx.segment.sigma_src;
  s.sigma_dst = ctx.segment.sigma_dst;
  s.K = K;
  s.weight.add(w);
  weight_sum_[i].resize(K, 0.0);
  const torch::Tensor wsum = w.sum(1);
  for (int64_t k = 0; k < K; ++k) weight_sum_[i][k] += wsum[k].item<double>();
  if (log_gammas.defined()) {
    s.has_gammas = true;
    const torch::Tensor g = log_gammas.detach().to(torch::kCPU, torch::kFloat64).transpose(0, 1).reshape({K, -1});
    if (K > 1) s.log_gamma.add(g.narrow(0, 1, K - 1));
    s.log_gamma_weighted.add(g, w);
    log_gamma_sum_[i].resize(K, 0.0);
    const torch::Tensor gsum = g.sum(1);
    for (int64_t k = 0; k < K; ++k) log_gamma_sum_[i][k] += gsum[k].item<double>();
  }
  s.pixels += pixels;
  s.mean_weight.assign(K, 0.0);
  for (int64_t k = 0; k < K; ++k) s.mean_weight[k] = weight_sum_[i][k] / static_cast<double>(s.pixels);
  if (s.has_gammas) {
    s.mean_log_gamma.assign(K, 0.0);
    for (int64_t k = 0; k < K; ++k) s.mean_log_gamma[k] = log_gamma_sum_[i][k] / static_cast<double>(s.pixels);
  }
}

StepObserver MixtureStatsCollector::observer() {
  return [this](const StepContext& ctx, const PolicyPtr& p, const torch::Tensor&, const torch::Tensor&) {
    if (p) add(ctx, *p);
  };
}

nlohmann::json MixtureStatsCollector::to_json() const {
  nlohmann::json steps = nlohmann::json::array();
  for (const StepMixtureStats& s : steps_) {
    nlohmann::json j = {{"step", s.step},           {"sigma_src", s.sigma_src}, {"sigma_dst", s.sigma_dst},
                        {"K", s.K},                 {"pixels", s.pixels},       {"weight", s.weight.to_json()},
                        {"mean_weight", s.mean_weight}};
    if (s.has_gammas) {
      j["log_gamma"] = s.log_gamma.to_json();
      j["log_gamma_weighted"] = s.log_gamma_weighted.to_json();
      j["mean_log_gamma"] = s.mean_log_gamma;
    }
    steps.push_back(j);
  }
  return {{"mixture", policy_}, {"steps", steps}};
}

}  // namespace arcflow
