// What a model is conditioned on, per sample: named tensors whose first dimension is the batch.
// Class-conditional models (the DiT) read "labels", (B) int64; FLUX-like models will read prompt
// embeddings ("prompt_embeds" (B, L, D), "pooled_prompt_embeds" (B, P)) and "guidance" (B).
// A model documents the keys it reads; an empty Condition means unconditional.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

namespace arcflow {

class Condition {
 public:
  Condition() = default;
  // {"labels": y}; an undefined y gives the empty condition.
  static Condition labels(const torch::Tensor& y);

  bool empty() const { return tensors_.empty(); }
  bool has(const std::string& key) const { return tensors_.count(key) != 0; }
  // Throws std::invalid_argument naming the key when it is absent.
  const torch::Tensor& at(const std::string& key) const;
  // Adds or replaces a tensor; throws std::invalid_argument when its batch differs from the others'.
  void set(const std::string& key, const torch::Tensor& t);
  const std::map<std::string, torch::Tensor>& tensors() const { return tensors_; }
  // Samples in the condition; -1 when empty.
  int64_t batch() const;

  Condition narrow(int64_t start, int64_t length) const;
  Condition to(torch::Device device) const;
  // The samples of `a` followed by those of `b` (same keys; std::invalid_argument otherwise).
  static Condition cat(const Condition& a, const Condition& b);

 private:
  std::map<std::string, torch::Tensor> tensors_;
};

}  // namespace arcflow
