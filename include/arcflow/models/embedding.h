// Sinusoidal timestep features (ARCFLOW.md section 5): for t = sigma * 1000 and `dim` features,
//   f_i = exp(-ln(10000) * i / (dim / 2)),  i = 0 .. dim/2 - 1,   features = [cos(t f), sin(t f)].
#pragma once

#include <torch/torch.h>

namespace arcflow {

// t: (B) timesteps (sigma * 1000). Returns (B, dim), dim even.
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim);

}  // namespace arcflow
