#include "arcflow/models/condition.h"

#include <stdexcept>

namespace arcflow {

Condition Condition::labels(const torch::Tensor& y) {
  Condition c;
  if (y.defined()) c.set("labels", y);
  return c;
}

const torch::Tensor& Condition::at(const std::string& key) const {
  const auto it = tensors_.find(key);
  if (it == tensors_.end()) throw std::invalid_argument("the condition has no '" + key + "' tensor");
  return it->second;
}

void Condition::set(const std::string& key, const torch::Tensor& t) {
  if (!t.defined() || t.dim() < 1) throw std::invalid_argument("condition '" + key + "' must have a batch dimension");
  for (const auto& [k, v] : tensors_)
    if (k != key && v.size(0) != t.size(0))
      throw std::invalid_argument("condition '" + key + "' has " + std::to_string(t.size(0)) + " samples, '" + k +
                                  "' has " + std::to_string(v.size(0)));
  tensors_[key] = t;
}

int64_t Condition::batch() const { return tensors_.empty() ? -1 : tensors_.begin()->second.size(0); }

Condition Condition::narrow(int64_t start, int64_t length) const {
  Condition c;
  for (const auto& [k, v] : tensors_) c.tensors_[k] = v.narrow(0, start, length);
  return c;
}

Condition Condition::to(torch::Device device) const {
  Condition c;
  for (const auto& [k, v] : tensors_) c.tensors_[k] = v.to(device);
  return c;
}

Condition Condition::cat(const Condition& a, const Condition& b) {
  if (a.tensors_.size() != b.tensors_.size())
    throw std::invalid_argument("cannot concatenate conditions with different keys");
  Condition c;
  for (const auto& [k, v] : a.tensors_) {
    const auto it = b.tensors_.find(k);
    if (it == b.tensors_.end()) throw std::invalid_argument("cannot concatenate conditions: '" + k + "' is missing");
    c.tensors_[k] = torch::cat({v, it->second.to(v.device())}, 0);
  }
  return c;
}

}  // namespace arcflow
