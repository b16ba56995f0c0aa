// Rollouts that keep every step's policy, for the 2-D toy's trajectory pictures and errors: the
// step loop of core/step_loop.h with an observer. A teacher's Euler step is the K = 1, g = 0
// policy of its velocity, so Euler and student rollouts share the code.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/core/schedule.h"
#include "arcflow/core/step_loop.h"

namespace arcflow {

using VelocityModel = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma)>;

// A velocity model as a policy model (Euler steps).
PolicyFn euler_policy(VelocityModel model);

struct Rollout {
  std::vector<Segment> segments;
  std::vector<torch::Tensor> sources;  // state at each step's start
  std::vector<PolicyPtr> policies;     // the policy emitted at each step's start
  torch::Tensor final;                 // state at the last segment's end
};

// Runs the model from `noise` (at sigma = 1) over `segs`. temperature divides the logits of all
// but the last step. Runs without gradients.
Rollout rollout(const PolicyFn& model, const torch::Tensor& noise, const std::vector<Segment>& segs,
                double temperature = 1.0);

// The state at `sigma` inside step `step` of a rollout, following that step's policy.
torch::Tensor state_at(const Rollout& r, size_t step, double sigma);

// Each segment split into `per_segment` equal pieces in raw time (sigmas re-warped with `shift`).
std::vector<Segment> subdivide(const std::vector<Segment>& segs, int per_segment, double shift);

}  // namespace arcflow
