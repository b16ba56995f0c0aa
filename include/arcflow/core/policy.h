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
//
// Clamp. log_gammas are clamped to [-kMaxLogGamma, kMaxLogGamma] when a policy is made, so that
// exp(g * span) stays finite for every span in [0, 1] even in float16 ranges of the weights
// (e^20 ~ 4.9e8). Inside the clamp no operation here produces NaN or inf for finite inputs.
#pragma once

#include <torch/torch.h>

namespace arcflow {

constexpr double kMaxLogGamma = 20.0;

struct Policy {
  torch::Tensor means;       // (B, K, ...)
  torch::Tensor logweights;  // (B, K, 1, ...) mixture logits
  torch::Tensor log_gammas;  // (B, K, 1, ...) with component 0 fixed at 0, clamped
  torch::Tensor sigma_src;   // (B) noise level the policy was emitted at

  int64_t num_components() const { return means.size(1); }
};

// Builds a policy from network outputs. log_gammas_rest holds g_1..g_{K-1}, shape (B, K-1, 1, ...);
// pass an undefined tensor when K = 1. sigma_src may be a (B) tensor or a 0-d tensor.
Policy make_policy(const torch::Tensor& means, const torch::Tensor& logweights,
                   const torch::Tensor& log_gammas_rest, const torch::Tensor& sigma_src);

// The linear-shortcut policy for a plain velocity v (B, ...): K = 1, g = 0. One Euler step of v
// is integrate(linear_policy(v, sigma_a), x_a, sigma_a, sigma_b).
Policy linear_policy(const torch::Tensor& velocity, const torch::Tensor& sigma_src);

// phi(z) = expm1(z) / z with phi(0) = 1, evaluated without cancellation (series for |z| < 1e-4)
// and with finite gradients everywhere.
torch::Tensor phi(const torch::Tensor& z);

// Instantaneous velocity u(sigma), shape (B, ...).
torch::Tensor velocity(const Policy& p, const torch::Tensor& sigma);

// Mean velocity over [sigma_b, sigma_a]: displacement / (sigma_a - sigma_b); equals velocity(sigma_a)
// when the span is 0.
torch::Tensor mean_velocity(const Policy& p, const torch::Tensor& sigma_a, const torch::Tensor& sigma_b);

// Closed-form displacement x_a - x_b when moving from sigma_a down to sigma_b.
torch::Tensor displacement(const Policy& p, const torch::Tensor& sigma_a, const torch::Tensor& sigma_b);

// x_b = x_a - displacement(sigma_a, sigma_b): the exact state at sigma_b.
torch::Tensor integrate(const Policy& p, const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                        const torch::Tensor& sigma_b);

// A copy whose tensors are detached from the autograd graph.
Policy detached(const Policy& p);

// Drops each component's logit (sets it to -inf) independently with probability `prob`, per
// sample and pixel, never all K at one place (where all would drop, one uniformly chosen
// component is kept). Random numbers come from `gen` on the CPU, so results match across devices.
Policy dropout_components(const Policy& p, double prob, at::Generator gen);

// Divides the logits by `temperature` (> 0); temperature < 1 sharpens the mixture.
Policy with_temperature(const Policy& p, double temperature);

// A (B) or 0-d sigma tensor as a tensor that broadcasts against (B, K, ...) (keep_k) or (B, ...).
torch::Tensor broadcast_sigma(const torch::Tensor& sigma, int64_t rank);

}  // namespace arcflow
