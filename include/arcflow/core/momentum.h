// The ArcFlow policy: a per-element mixture of K momentum processes (ARCFLOW.md section 2).
//
// At a step's source state (x_s, sigma_s) the student emits, for every element of x,
//   means       mu_k  (velocity of component k at sigma_s),
//   logweights  l_k   (mixture logits, w = softmax_k(l), shared by the channels of a pixel),
//   log_gammas  g_k   (log momentum factor, shared by the channels of a pixel; g_0 = 0).
// Component k's velocity is multiplied by gamma_k = exp(g_k) per unit of sigma travelled:
//   u(sigma) = sum_k w_k mu_k exp(g_k (sigma_s - sigma)),   sigma <= sigma_s,
// and integrates in closed form (no discretisation error):
//   x_b = x_a - sum_k w_k mu_k exp(g_k (sigma_s - sigma_a)) * delta * phi(g_k delta),
//   delta = sigma_a - sigma_b,   phi(z) = expm1(z) / z,  phi(0) = 1.
// K = 1 with g = 0 is the linear-shortcut baseline: one constant velocity per step.
//
// Shapes. means is (B, K, ...) with the per-sample element shape after K: (B, K, C, H, W) for
// images, (B, K, D) for points. logweights and log_gammas have the same rank with a size-1
// channel axis: (B, K, 1, H, W) or (B, K, 1). sigma_src is (B). Sigma arguments are (B) tensors
// (one noise level per sample) or 0-d tensors; results have the per-sample shape (B, ...).
// The velocity does not depend on x: the mixture is a function of sigma alone.
//
// Clamp. log_gammas are clamped to [-kMaxLogGamma, kMaxLogGamma] when a mixture is made, so that
// exp(g * span) stays finite for every span in [0, 1] (e^20 ~ 4.9e8). Inside the clamp no
// operation here produces NaN or inf for finite inputs. Precision: float16/bfloat16 network
// outputs are upcast to float32 when the mixture is made (core/policy.h).
#pragma once

#include <torch/torch.h>

#include "arcflow/core/policy.h"

namespace arcflow {

constexpr double kMaxLogGamma = 20.0;

struct MomentumMixture {
  torch::Tensor means;       // (B, K, ...)
  torch::Tensor logweights;  // (B, K, 1, ...) mixture logits
  torch::Tensor log_gammas;  // (B, K, 1, ...) with component 0 fixed at 0, clamped
  torch::Tensor sigma_src;   // (B) noise level the mixture was emitted at

  int64_t num_components() const { return means.size(1); }
};

// Builds a mixture from network outputs. log_gammas_rest holds g_1..g_{K-1}, shape (B, K-1, 1, ...);
// pass an undefined tensor when K = 1. sigma_src may be a (B) tensor or a 0-d tensor.
MomentumMixture make_mixture(const torch::Tensor& means, const torch::Tensor& logweights,
                             const torch::Tensor& log_gammas_rest, const torch::Tensor& sigma_src);

// The linear-shortcut mixture for a plain velocity v (B, ...): K = 1, g = 0. One Euler step of v
// is integrate(linear_mixture(v, sigma_a), x_a, sigma_a, sigma_b).
MomentumMixture linear_mixture(const torch::Tensor& velocity, const torch::Tensor& sigma_src);

// phi(z) = expm1(z) / z with phi(0) = 1, evaluated without cancellation (series for |z| < 1e-4)
// and with finite gradients everywhere.
torch::Tensor phi(const torch::Tensor& z);

// Instantaneous velocity u(sigma), shape (B, ...).
torch::Tensor velocity(const MomentumMixture& p, const torch::Tensor& sigma);

// Mean velocity over [sigma_b, sigma_a]: displacement / (sigma_a - sigma_b); equals velocity(sigma_a)
// when the span is 0.
torch::Tensor mean_velocity(const MomentumMixture& p, const torch::Tensor& sigma_a, const torch::Tensor& sigma_b);

// Closed-form displacement x_a - x_b when moving from sigma_a down to sigma_b.
torch::Tensor displacement(const MomentumMixture& p, const torch::Tensor& sigma_a, const torch::Tensor& sigma_b);

// x_b = x_a - displacement(sigma_a, sigma_b): the exact state at sigma_b.
torch::Tensor integrate(const MomentumMixture& p, const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                        const torch::Tensor& sigma_b);

// A copy whose tensors are detached from the autograd graph.
MomentumMixture detached(const MomentumMixture& p);

// Component dropout of section 4 (see Policy::dropout).
MomentumMixture dropout_components(const MomentumMixture& p, double prob, at::Generator gen);

// Divides the logits by `temperature` (> 0); temperature < 1 sharpens the mixture.
MomentumMixture with_temperature(const MomentumMixture& p, double temperature);

// The mixture behind the Policy interface. Its imitation velocity is the closed-form mean
// velocity over [sigma_end, sigma_a] (section 4).
class MomentumPolicy : public Policy {
 public:
  explicit MomentumPolicy(MomentumMixture m) : m_(std::move(m)) {}
  const MomentumMixture& mixture() const { return m_; }

  std::string name() const override { return "arcflow"; }
  int64_t num_components() const override { return m_.num_components(); }
  const torch::Tensor& sigma_src() const override { return m_.sigma_src; }
  torch::Tensor velocity(const torch::Tensor& x_t, const torch::Tensor& sigma_t) const override;
  torch::Tensor integrate(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                          const torch::Tensor& sigma_b) const override;
  torch::Tensor imitation_velocity(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                   const torch::Tensor& sigma_end) const override;
  PolicyPtr detached() const override;
  PolicyPtr dropout(double prob, at::Generator gen) const override;
  PolicyPtr with_temperature(double temperature) const override;

 private:
  MomentumMixture m_;
};

// A plain velocity as a policy (one Euler step per step): the K = 1, g = 0 mixture.
PolicyPtr linear_policy(const torch::Tensor& velocity, const torch::Tensor& sigma_src);

}  // namespace arcflow
