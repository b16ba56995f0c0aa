// 2-D toy distributions, made in code. All sit roughly in [-2.5, 2.5]^2 (noise is N(0, I)).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace arcflow {

// Names accepted by sample_toy: checkerboard, 8gaussians, moons, spirals.
const std::vector<std::string>& toy_dataset_names();

// n points (n, 2), float32 on the CPU, drawn with `gen`. Throws std::invalid_argument naming
// the dataset and the valid names for an unknown name.
torch::Tensor sample_toy(const std::string& name, int64_t n, at::Generator& gen);

}  // namespace arcflow
