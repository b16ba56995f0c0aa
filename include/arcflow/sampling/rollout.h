// Few-step sampling with policies: every step asks the model for a policy at its source state and
// integrates it in closed form to the step's end. A teacher's Euler step is the K = 1, g = 0
// policy of its velocity, so Euler sampling and ArcFlow sampling share this code.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/core/schedule.h"

namespace arcflow {

using PolicyModel = std::function<Policy(const torch::Tensor& x, const torch::Tensor& sigma)>;
using VelocityModel = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma)>;

// A velocity model as a policy model (Euler steps).
PolicyModel euler_policy(VelocityModel model);

struct Rollout {
  std::vector<Segment> segments;
  std::vector<torch::Tensor> sources;  // state at each step's start
  std::vector<Policy> policies;        // the policy emitted at each step's start
  torch::Tensor final;                 // state at sigma = 0
};

// Runs the model from `noise` (at sigma = 1) over `segs`. temperature divides the logits of all
// but the last step. Runs without gradients.
Rollout rollout(const PolicyModel& model, const torch::Tensor& noise, const std::vector<Segment>& segs,
                double temperature = 1.0);

// The closed-form state at `sigma` inside step `step` of a rollout.
torch::Tensor state_at(const Rollout& r, size_t step, double sigma);

// Each segment split into `per_segment` equal pieces in raw time (sigmas re-warped with `shift`).
std::vector<Segment> subdivide(const std::vector<Segment>& segs, int per_segment, double shift);

}  // namespace arcflow
