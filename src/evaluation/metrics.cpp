#include "arcflow/evaluation/metrics.h"

#include <cmath>
#include <stdexcept>

namespace arcflow {

double sliced_wasserstein(const torch::Tensor& a, const torch::Tensor& b, int projections, at::Generator& gen) {
  if (a.dim() != 2 || a.sizes() != b.sizes())
    throw std::invalid_argument("sliced_wasserstein: need two (n, d) point sets of equal size");
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor dirs = torch::randn({a.size(1), projections}, gen, f64);
  dirs = dirs / dirs.norm(2, 0, /*keepdim=*/true);
  const torch::Tensor pa = std::get<0>(torch::sort(a.to(torch::kCPU, torch::kFloat64).mm(dirs), 0));
  const torch::Tensor pb = std::get<0>(torch::sort(b.to(torch::kCPU, torch::kFloat64).mm(dirs), 0));
  return std::sqrt((pa - pb).pow(2).mean().item<double>());
}

double mse(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) throw std::invalid_argument("mse: shapes differ");
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).pow(2).mean().item<double>();
}

}  // namespace arcflow
