// Classifier-free guidance (ARCFLOW.md section 1) as a VelocityFn adapter for the samplers:
//   u = u(x, null) + scale * (u(x, y) - u(x, null)),   null class index = num_classes.
#pragma once

#include <torch/torch.h>

#include <functional>

#include "arcflow/sampling/samplers.h"

namespace arcflow {

// A class-conditional velocity model u(x, sigma (B), y (B) int64).
using ConditionalVelocityFn =
    std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y)>;

// The guided velocity of `model` for labels `y` (B, int64). Cases, each documented by what it costs:
//   - y undefined: unconditional, one call model(x, sigma, y) with the undefined y passed through;
//   - scale == 1: the conditional velocity, one call model(x, sigma, y);
//   - scale == 0: the null velocity, one call model(x, sigma, null labels);
//   - otherwise: ONE batched call on 2B samples, x and sigma concatenated with themselves and labels
//     [y; null], the output split into u_cond (first B) and u_null (last B).
// y is moved to x's device at call time; throws std::invalid_argument if y.size(0) != x.size(0).
VelocityFn guided(ConditionalVelocityFn model, torch::Tensor y, int64_t null_class, double scale);

}  // namespace arcflow
