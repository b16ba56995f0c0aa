#include "arcflow/models/embedding.h"

#include <cmath>
#include <stdexcept>

namespace arcflow {

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  if (dim <= 0 || dim % 2 != 0) throw std::invalid_argument("timestep embedding dim must be even and > 0");
  const int64_t half = dim / 2;
  const auto opts = t.options().dtype(t.is_floating_point() ? t.scalar_type() : torch::kFloat32);
  const torch::Tensor freqs = torch::exp(torch::arange(half, opts) * (-std::log(10000.0) / half));
  const torch::Tensor args = t.to(opts.dtype()).reshape({-1, 1}) * freqs.reshape({1, half});
  return torch::cat({torch::cos(args), torch::sin(args)}, 1);
}

}  // namespace arcflow
