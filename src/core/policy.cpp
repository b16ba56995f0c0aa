// The parts of the policy interface every policy shares: component dropout and sigma shapes.
#include "arcflow/core/policy.h"

#include <limits>
#include <stdexcept>

namespace arcflow {

torch::Tensor Policy::imitation_velocity(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                         const torch::Tensor& /*sigma_end*/) const {
  return velocity(x_a, sigma_a);
}

torch::Tensor broadcast_sigma(const torch::Tensor& sigma, int64_t rank) {
  if (sigma.dim() == 0) return sigma;
  if (sigma.dim() != 1) throw std::invalid_argument("sigma must be a (B) or 0-d tensor");
  std::vector<int64_t> shape(rank, 1);
  shape[0] = sigma.size(0);
  return sigma.reshape(shape);
}

torch::Tensor policy_precision(const torch::Tensor& t) {
  if (!t.defined()) return t;
  const auto s = t.scalar_type();
  return s == torch::kFloat16 || s == torch::kBFloat16 ? t.to(torch::kFloat32) : t;
}

torch::Tensor component_drop_mask(int64_t batch, int64_t K, double prob, at::Generator gen) {
  if (!(prob >= 0.0 && prob < 1.0)) throw std::invalid_argument("component dropout must be in [0, 1)");
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor drop = torch::rand({batch, K}, gen, cpu) < prob;
  // A sample whose K draws would all drop keeps all of them (the reference's rule).
  return drop & ~drop.all(1, /*keepdim=*/true);
}

torch::Tensor drop_components(const torch::Tensor& logits, double prob, at::Generator gen) {
  if (!(prob >= 0.0 && prob < 1.0)) throw std::invalid_argument("component dropout must be in [0, 1)");
  const int64_t B = logits.size(0), K = logits.size(1);
  if (prob == 0.0 || K == 1) return logits;
  std::vector<int64_t> shape(logits.dim(), 1);
  shape[0] = B;
  shape[1] = K;
  const torch::Tensor drop = component_drop_mask(B, K, prob, gen).reshape(shape).to(logits.device());
  const torch::Tensor neg_inf = torch::full({}, -std::numeric_limits<double>::infinity(), logits.options());
  return torch::where(drop, neg_inf, logits);
}

}  // namespace arcflow
