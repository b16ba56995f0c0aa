// One interface for every policy a student can emit (ARCFLOW.md sections 2 and 2b).
//
// A policy is what a student network says at a step's source state (x_s, sigma_s): a velocity
// field for the rest of the step that the sampler follows without calling the network again.
// Two policies implement it:
//   - the momentum mixture of ArcFlow (core/momentum.h; K = 1 is the linear shortcut), integrated
//     in closed form;
//   - pi-Flow's Gaussian mixture GMFlow (core/gmflow.h), integrated with Euler sub-steps.
// Adding a policy: a class implementing this interface (core/), a head that emits it
// (models/policy_head.cpp registry), nothing else.
//
// Shapes. x is (B, ...) with the per-sample shape after B ((B, C, H, W) images, (B, D) points).
// Sigma arguments are (B) tensors (one noise level per sample) or 0-d tensors. Every policy
// computes in float32 (float64 stays float64): network outputs in bfloat16 or float16 are upcast
// when the policy is made, and results come back in that precision.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

namespace arcflow {

class Policy;
using PolicyPtr = std::shared_ptr<const Policy>;

class Policy {
 public:
  virtual ~Policy() = default;

  // The registry name: "arcflow" (momentum mixture) or "gmflow".
  virtual std::string name() const = 0;
  virtual int64_t num_components() const = 0;
  // The noise level the policy was emitted at, (B).
  virtual const torch::Tensor& sigma_src() const = 0;

  // Velocity dx/dsigma at state x_t and noise level sigma_t <= sigma_src, shape (B, ...).
  virtual torch::Tensor velocity(const torch::Tensor& x_t, const torch::Tensor& sigma_t) const = 0;
  // The state at sigma_b reached by following the policy from x_a at sigma_a
  // (sigma_src >= sigma_a >= sigma_b).
  virtual torch::Tensor integrate(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                  const torch::Tensor& sigma_b) const = 0;
  // The student's prediction at a walk state (x_a, sigma_a) that distillation compares with the
  // teacher's velocity there (ARCFLOW.md section 4, step 4). sigma_end <= sigma_a closes the span
  // the prediction may average over. Default: the instantaneous velocity at (x_a, sigma_a); the
  // momentum mixture averages over [sigma_end, sigma_a] in closed form, GMFlow over its Euler
  // rollout (pi-Flow's pi-ID, section 2b).
  virtual torch::Tensor imitation_velocity(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                           const torch::Tensor& sigma_end) const;

  // A copy cut from the autograd graph.
  virtual PolicyPtr detached() const = 0;
  // Component dropout (section 4): every component of every sample is dropped as a whole (its
  // logit -inf at every pixel) with probability `prob`; a sample whose K draws would all drop
  // keeps all of them. Random numbers come from `gen` on the CPU (device-independent results).
  virtual PolicyPtr dropout(double prob, at::Generator gen) const = 0;
  // Temperature T > 0 (applied to non-final steps by samplers): T < 1 sharpens the mixture.
  virtual PolicyPtr with_temperature(double temperature) const = 0;
};

// The (B, K) boolean drop mask of component dropout (see Policy::dropout), drawn on the CPU.
// Throws std::invalid_argument for prob outside [0, 1).
torch::Tensor component_drop_mask(int64_t batch, int64_t K, double prob, at::Generator gen);
// Logits (B, K, 1, ...) with the components of component_drop_mask set to -inf.
torch::Tensor drop_components(const torch::Tensor& logits, double prob, at::Generator gen);

// A (B) or 0-d sigma tensor shaped to broadcast against a tensor of rank `rank` with B first.
torch::Tensor broadcast_sigma(const torch::Tensor& sigma, int64_t rank);
// float16 / bfloat16 -> float32; float32 and float64 unchanged (the policies' precision rule).
torch::Tensor policy_precision(const torch::Tensor& t);

}  // namespace arcflow
