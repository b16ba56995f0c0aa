// The step loop, written once: for each step of a schedule, ask the model for a policy at the
// step's source state and follow it to the step's end,
//   x <- policy(x, sigma_src).integrate(x, sigma_src, sigma_dst).
// Student sampling, evaluation, bench, the server and the 2-D toy's rollouts call it as is; the
// distiller passes its own `advance` (the walk of ARCFLOW.md section 4) and gets the same loop.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/core/schedule.h"

namespace arcflow {

// The policy at (x, sigma_src (B)).
using PolicyFn = std::function<PolicyPtr(const torch::Tensor& x, const torch::Tensor& sigma_src)>;

// One step as the loop sees it: its index, segment, and its sigmas as (B) tensors in x's dtype.
// sigma_src is the very tensor the model was called with.
struct StepContext {
  size_t index;
  const Segment& segment;
  const torch::Tensor& sigma_src;
  const torch::Tensor& sigma_dst;
};

// How a step moves: the state at the step's end from the policy and the step's start.
using StepAdvance = std::function<torch::Tensor(const PolicyPtr& policy, const torch::Tensor& x, const StepContext&)>;
// Called after every step with the policy, the step's start and end states.
using StepObserver = std::function<void(const StepContext&, const PolicyPtr& policy, const torch::Tensor& x_src,
                                        const torch::Tensor& x_dst)>;

struct StepLoopOptions {
  double temperature = 1.0;  // divides the logits (policy-specific) of all but the last step
};

// Runs `model` from x (at segs.front().sigma_src) over `segs`. `advance` defaults to integrating
// the (tempered) policy from sigma_src to sigma_dst. Gradients follow the caller's grad mode.
torch::Tensor run_steps(const PolicyFn& model, torch::Tensor x, const std::vector<Segment>& segs,
                        const StepLoopOptions& opt = {}, const StepObserver& observe = nullptr,
                        const StepAdvance& advance = nullptr);

}  // namespace arcflow
