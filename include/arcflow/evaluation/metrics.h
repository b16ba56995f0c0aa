// Distribution and trajectory metrics.
#pragma once

#include <torch/torch.h>

namespace arcflow {

// Sliced Wasserstein-2 distance between two equally sized point sets (n, d): the square root of
// the mean, over `projections` random unit directions, of the squared W2 distance between the
// 1-D projections (sorted-sample matching). Directions are drawn with `gen` on the CPU.
double sliced_wasserstein(const torch::Tensor& a, const torch::Tensor& b, int projections, at::Generator& gen);

// Mean squared distance per element between two equally shaped tensors (float64 accumulation).
double mse(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace arcflow
