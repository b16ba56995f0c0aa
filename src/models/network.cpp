#include "arcflow/models/network.h"

#include <cmath>
#include <stdexcept>

namespace arcflow {

void Teacher::check_condition(const Condition& c, int64_t batch) const {
  if (!c.empty() && c.batch() != batch)
    throw std::invalid_argument("the condition has " + std::to_string(c.batch()) + " samples, x has " +
                                std::to_string(batch));
}

Condition Network::null_condition(const Condition& /*c*/) const {
  throw std::invalid_argument("model '" + kind() + "' has no null condition for classifier-free guidance");
}

Condition Network::random_condition(int64_t batch, at::Generator& gen) const {
  if (num_classes() <= 0) return {};
  return Condition::labels(torch::randint(num_classes(), {batch}, gen, torch::kLong));
}

GuidedTeacher::GuidedTeacher(NetworkPtr net, double scale) : net_(std::move(net)), scale_(scale) {
  if (!std::isfinite(scale)) throw std::invalid_argument("guidance scale must be finite");
  if (scale != 1.0 && !net_->has_null_condition())
    throw std::invalid_argument("model '" + net_->kind() + "' has no null condition for classifier-free guidance " +
                                "(guidance scale " + std::to_string(scale) + " asked)");
}

torch::Tensor GuidedTeacher::velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
  if (c.empty() || scale_ == 1.0) return net_->velocity(x, sigma, c);
  const Condition null = net_->null_condition(c);
  if (scale_ == 0.0) return net_->velocity(x, sigma, null);
  const int64_t B = x.size(0);
  const torch::Tensor both = net_->velocity(torch::cat({x, x}, 0), torch::cat({sigma, sigma}, 0),
                                            Condition::cat(c.to(x.device()), null.to(x.device())));
  const torch::Tensor u_cond = both.narrow(0, 0, B), u_null = both.narrow(0, B, B);
  return u_null + scale_ * (u_cond - u_null);
}

}  // namespace arcflow
