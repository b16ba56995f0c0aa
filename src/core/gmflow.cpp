// The GMFlow policy (ARCFLOW.md section 2b); the formulas are in core/gmflow.h.
#include "arcflow/core/gmflow.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "arcflow/core/activation_checkpoint.h"
#include "arcflow/core/schedule.h"

namespace arcflow {

namespace {
constexpr double kMinSigma = 1e-6;

// A (B) or 0-d sigma as a (B) tensor of `like`'s dtype and device.
torch::Tensor per_sample(const torch::Tensor& sigma, const torch::Tensor& like, int64_t B) {
  torch::Tensor s = sigma.to(like.device(), like.scalar_type());
  return s.dim() == 0 ? s.expand({B}) : s;
}
}  // namespace

GMFlowPolicy::GMFlowPolicy(GaussianMixture g, GMFlowIntegration integration) : integration_(integration) {
  if (g.means.dim() < 3) throw std::invalid_argument("GMFlow means must be (B, K, ...)");
  const int64_t B = g.means.size(0);
  if (g.logweights.dim() != g.means.dim() || g.logweights.size(0) != B || g.logweights.size(1) != g.means.size(1) ||
      g.logweights.size(2) != 1)
    throw std::invalid_argument("GMFlow logweights must be (B, K, 1, ...) matching the means");
  if (g.logstd.dim() != 1 || g.logstd.size(0) != B) throw std::invalid_argument("GMFlow logstd must be (B)");
  if (g.x_src.dim() != g.means.dim() - 1 || g.x_src.size(0) != B)
    throw std::invalid_argument("GMFlow x_src must be (B, ...) matching the means");
  if (integration.total_substeps < 1 || !(integration.shift >= 1))
    throw std::invalid_argument("GMFlow integration needs total_substeps >= 1 and shift >= 1");
  g_.means = policy_precision(g.means);
  g_.logweights = policy_precision(g.logweights);
  g_.logstd = policy_precision(g.logstd);
  g_.x_src = policy_precision(g.x_src).to(g_.means.scalar_type());
  g_.sigma_src = per_sample(g.sigma_src, g_.means, B);
}

namespace {

// The posterior-mean velocity of mixture g at (x_t, sigma_t) (the formulas of core/gmflow.h).
torch::Tensor posterior_velocity(const GaussianMixture& g_, const torch::Tensor& x_t_in,
                                 const torch::Tensor& sigma_t) {
  const int64_t B = g_.means.size(0), rank = g_.means.dim();  // rank of (B, K, ...)
  const torch::Tensor x_t = x_t_in.to(g_.means.scalar_type());
  // Per-sample scalars shaped for (B, ...) and for (B, K, ...).
  const auto on_x = [&](const torch::Tensor& v) { return broadcast_sigma(v, rank - 1); };
  const auto on_k = [&](const torch::Tensor& v) { return broadcast_sigma(v, rank); };
  const torch::Tensor s_s = g_.sigma_src.clamp_min(kMinSigma), a_s = 1.0 - g_.sigma_src;
  const torch::Tensor st = per_sample(sigma_t, g_.means, B);
  const torch::Tensor s_t = st.clamp_min(kMinSigma), a_t = 1.0 - st;

  const torch::Tensor m = g_.x_src.unsqueeze(1) - on_k(s_s) * g_.means;      // x0 means, (B, K, ...)
  const torch::Tensor v = torch::exp(2.0 * g_.logstd) * s_s * s_s;          // (B)
  const torch::Tensor zeta = (a_t / s_t).pow(2) - (a_s / s_s).pow(2);       // (B)
  const torch::Tensor nu = on_x(a_t / (s_t * s_t)) * x_t - on_x(a_s / (s_s * s_s)) * g_.x_src;  // (B, ...)
  const torch::Tensor d = on_k(v * zeta + 1.0);
  const torch::Tensor nu_k = nu.unsqueeze(1);
  const torch::Tensor m_post = (on_k(v) * nu_k + m) / d;
  const torch::Tensor logit_post =
      g_.logweights + (m * (nu_k - on_k(zeta) * m * 0.5) / d).sum(2, /*keepdim=*/true);
  const torch::Tensor x0 = (torch::softmax(logit_post, 1) * m_post).sum(1);
  return (x_t - x0) / on_x(s_t);
}

// Euler sub-steps of mixture g (see core/gmflow.h) between raw times tau_a and tau_a - span (B,
// float64 on the CPU), count (B) sub-steps per sample; runs sub-steps j0 <= j < j1 from x. A
// sample moves on sub-steps j < count_i and stands still afterwards (zero sigma step).
torch::Tensor euler_substeps(const GaussianMixture& g, torch::Tensor x, const torch::Tensor& tau_a,
                             const torch::Tensor& span, const torch::Tensor& count, double shift, int64_t j0,
                             int64_t j1) {
  const int64_t B = g.means.size(0);
  const auto on_x = [&](const torch::Tensor& t) { return broadcast_sigma(t, x.dim()); };
  const auto sigma_at = [&](int64_t j) {
    const torch::Tensor done = torch::minimum(torch::full({B}, static_cast<double>(j), torch::kFloat64), count);
    return warp(tau_a - span * done / count, shift).to(x.device(), x.scalar_type());
  };
  torch::Tensor s_cur = sigma_at(j0);
  for (int64_t j = j0; j < j1; ++j) {
    const torch::Tensor s_next = sigma_at(j + 1);
    x = x - on_x(s_cur - s_next) * posterior_velocity(g, x, s_cur);
    s_cur = s_next;
  }
  return x;
}

// Sub-steps per chunk of a checkpointed rollout: the backward pass keeps one chunk's activations.
constexpr int64_t kSubstepsPerChunk = 8;

}  // namespace

torch::Tensor GMFlowPolicy::velocity(const torch::Tensor& x_t, const torch::Tensor& sigma_t) const {
  return posterior_velocity(g_, x_t, sigma_t);
}

GMFlowPolicy::Rollout GMFlowPolicy::plan(const torch::Tensor& sigma_a, const torch::Tensor& sigma_b) const {
  const int64_t B = g_.means.size(0);
  const double shift = integration_.shift;
  // Raw-time ends per sample, in float64 on the CPU (they decide sub-step counts).
  Rollout r;
  r.tau_a = unwarp(per_sample(sigma_a, g_.means, B).to(torch::kCPU, torch::kFloat64), shift);
  const torch::Tensor tau_b = unwarp(per_sample(sigma_b, g_.means, B).to(torch::kCPU, torch::kFloat64), shift);
  r.span = r.tau_a - tau_b;
  r.count = (r.span * integration_.total_substeps).round().clamp_min(1.0);  // (B)
  r.max_count = r.count.max().item<int64_t>();
  return r;
}

torch::Tensor GMFlowPolicy::integrate(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                      const torch::Tensor& sigma_b) const {
  const Rollout r = plan(sigma_a, sigma_b);
  return euler_substeps(g_, x_a.to(g_.means.scalar_type()), r.tau_a, r.span, r.count, integration_.shift, 0,
                        r.max_count);
}

torch::Tensor GMFlowPolicy::imitation_velocity(const torch::Tensor& x_a_in, const torch::Tensor& sigma_a,
                                               const torch::Tensor& sigma_end) const {
  const int64_t B = g_.means.size(0);
  const torch::Tensor x_a = x_a_in.to(g_.means.scalar_type());
  const torch::Tensor s_a = per_sample(sigma_a, g_.means, B), s_end = per_sample(sigma_end, g_.means, B);
  const torch::Tensor moving = s_a > s_end;  // (B): samples whose span is a real interval
  const torch::Tensor instantaneous = velocity(x_a, s_a);
  if (!moving.any().item<bool>()) return instantaneous;
  // x_end from the Euler rollout, differentiated (for large policies recomputed in backward in chunks).
  const Rollout r = plan(s_a, torch::where(moving, s_end, s_a));
  const double shift = integration_.shift;
  const torch::Tensor sigma_src = g_.sigma_src;
  torch::Tensor x = x_a;
  const bool recompute = g_.means.numel() >= integration_.checkpoint_min_elements;
  if (!recompute) {  // small policies: one differentiated rollout, graph kept
    x = euler_substeps(g_, x_a, r.tau_a, r.span, r.count, shift, 0, r.max_count);
  } else {
    for (int64_t j0 = 0; j0 < r.max_count; j0 += kSubstepsPerChunk) {
      const int64_t j1 = std::min(r.max_count, j0 + kSubstepsPerChunk);
      const BlockFn chunk = [=](const std::vector<torch::Tensor>& in) {
        const GaussianMixture g{in[1], in[2], in[3], in[4], sigma_src};
        return std::vector<torch::Tensor>{euler_substeps(g, in[0], r.tau_a, r.span, r.count, shift, j0, j1)};
      };
      x = checkpointed(chunk, {x, g_.means, g_.logweights, g_.logstd, g_.x_src})[0];
    }
  }
  const torch::Tensor on_moving = broadcast_sigma(moving, x_a.dim());
  const torch::Tensor span = torch::where(moving, s_a - s_end, torch::ones_like(s_a));  // no 0/0 off the span
  const torch::Tensor mean = (x_a - x) / broadcast_sigma(span, x_a.dim());
  return torch::where(on_moving, mean, instantaneous);
}

PolicyPtr GMFlowPolicy::detached() const {
  GaussianMixture g{g_.means.detach(), g_.logweights.detach(), g_.logstd.detach(), g_.x_src.detach(),
                    g_.sigma_src.detach()};
  return std::make_shared<GMFlowPolicy>(std::move(g), integration_);
}

PolicyPtr GMFlowPolicy::dropout(double prob, at::Generator gen) const {
  GaussianMixture g = g_;
  g.logweights = drop_components(g_.logweights, prob, std::move(gen));
  return std::make_shared<GMFlowPolicy>(std::move(g), integration_);
}

double GMFlowPolicy::auto_temperature(int nfe) {
  if (nfe <= 1) return 1.0;  // the only step is the last, which pi-Flow samples at T = 1 anyway
  return std::min(0.1 * (nfe - 1), 1.0);
}

PolicyPtr GMFlowPolicy::with_temperature(double temperature) const {
  if (!(temperature > 0.0)) throw std::invalid_argument("temperature must be > 0");
  GaussianMixture g = g_;
  g.logweights = g_.logweights / temperature;
  g.logstd = g_.logstd + 0.5 * std::log(temperature);  // variance * T
  return std::make_shared<GMFlowPolicy>(std::move(g), integration_);
}

}  // namespace arcflow
