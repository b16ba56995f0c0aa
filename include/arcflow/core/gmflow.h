// pi-Flow's GMFlow policy (ARCFLOW.md section 2b), the paper's competitor: a Gaussian mixture over
// the clean sample instead of momentum components.
//
// At the source (x_s, sigma_s) the student emits velocity means mu_k (B, K, ...), logits l_k
// (B, K, 1, ...) shared by the channels of a pixel, and one log standard deviation per sample,
// logstd (B). In x0 space the mixture is
//   q(x0) = sum_k softmax(l)_k N(x0; m_k, v I),  m_k = x_s - sigma_s mu_k,  v = exp(2 logstd) sigma_s^2,
// the student's belief about x0 given x_s. At a later state (x_t, sigma_t) the policy's velocity is
// u = (x_t - E[x0 | x_t]) / sigma_t, where the posterior reweights q by the likelihood ratio of the
// new observation, N(x_t; alpha_t x0, sigma_t^2) / N(x_s; alpha_s x0, sigma_s^2) (alpha = 1 - sigma).
// In closed form (Gaussian times exp(quadratic)):
//   zeta = (alpha_t/sigma_t)^2 - (alpha_s/sigma_s)^2,  nu = alpha_t x_t / sigma_t^2 - alpha_s x_s / sigma_s^2,
//   d = v zeta + 1,  m'_k = (v nu + m_k) / d,  l'_k = l_k + sum_channels m_k (nu - zeta m_k / 2) / d,
//   E[x0 | x_t] = sum_k softmax(l')_k m'_k      (sigmas clamped at 1e-6).
// At (x_s, sigma_s) itself this is sum_k softmax(l)_k mu_k.
//
// There is no closed-form trajectory: a step from sigma_a to sigma_b takes
// max(1, round((tau_a - tau_b) * total_substeps)) Euler sub-steps, uniform in raw time tau and
// warped to sigma with the schedule's shift (section 1). Temperature T: logits / T, variance * T.
// pi-Flow samples with T = min(max(0.1 (nfe - 1), 0), 1) on all but the last step ("auto").
#pragma once

#include <torch/torch.h>

#include "arcflow/core/policy.h"

namespace arcflow {

// How a GMFlow policy integrates: the schedule's shift and the sub-step count of a whole
// trajectory (tau from 1 to 0).
struct GMFlowIntegration {
  double shift = 1.0;
  int total_substeps = 128;
  // imitation_velocity recomputes its rollout's sub-steps in backward (bounded memory) when the
  // means hold at least this many elements (0: always); smaller policies (the 2-D toy) keep the
  // graph, which costs little memory and saves the recomputation.
  int64_t checkpoint_min_elements = int64_t{1} << 16;
};

struct GaussianMixture {
  torch::Tensor means;       // (B, K, ...) velocity means mu_k at the source
  torch::Tensor logweights;  // (B, K, 1, ...)
  torch::Tensor logstd;      // (B)
  torch::Tensor x_src;       // (B, ...) the source state x_s
  torch::Tensor sigma_src;   // (B)
};

class GMFlowPolicy : public Policy {
 public:
  // pi-Flow's "auto" sampling temperature for an nfe-step sample (its pipelines' default, the
  // published protocol): min(max(0.1 (nfe - 1), 0), 1), applied to all but the last step, so
  // 0.1 at 2 NFE and 0.3 at 4; at 1 NFE the only step is the last, so 1 is returned.
  static double auto_temperature(int nfe);

  // Checks the shapes (std::invalid_argument) and upcasts to float32 (core/policy.h).
  GMFlowPolicy(GaussianMixture g, GMFlowIntegration integration);
  const GaussianMixture& mixture() const { return g_; }

  std::string name() const override { return "gmflow"; }
  int64_t num_components() const override { return g_.means.size(1); }
  const torch::Tensor& sigma_src() const override { return g_.sigma_src; }
  // The posterior-mean velocity above.
  torch::Tensor velocity(const torch::Tensor& x_t, const torch::Tensor& sigma_t) const override;
  // Euler sub-steps (see above); each sample takes its own count when sigmas differ per sample.
  torch::Tensor integrate(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                          const torch::Tensor& sigma_b) const override;
  // pi-Flow's prediction at a walk state (its `policy_average_u`): the mean velocity
  // (x_a - x_end) / (sigma_a - sigma_end) over the Euler rollout of integrate() from sigma_a to
  // sigma_end, differentiated (for policies of checkpoint_min_elements or more the sub-steps are
  // recomputed in backward in chunks, so memory does not grow with their number); the
  // instantaneous velocity for samples whose
  // sigma_end == sigma_a (the distiller's choice when the span is under 2 sub-steps).
  torch::Tensor imitation_velocity(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                   const torch::Tensor& sigma_end) const override;
  PolicyPtr detached() const override;
  PolicyPtr dropout(double prob, at::Generator gen) const override;
  PolicyPtr with_temperature(double temperature) const override;

 private:
  struct Rollout {  // the sub-steps from sigma_a to sigma_b, per sample (float64, CPU)
    torch::Tensor tau_a, span, count;
    int64_t max_count = 0;
  };
  Rollout plan(const torch::Tensor& sigma_a, const torch::Tensor& sigma_b) const;

  GaussianMixture g_;
  GMFlowIntegration integration_;
};

}  // namespace arcflow
