// LoRA adapters on named Linear layers (ARCFLOW.md section 3).
//
// Models build their Linear layers as LoRALinear: a plain affine layer (parameters `weight`,
// `bias`, exactly torch::nn::Linear's keys) that can gain a low-rank update
//   y = W x + b + (alpha / r) * B(A(dropout(x))),   A gaussian (std 1/r), B zero,
// so a freshly adapted model computes exactly what the base model computes. The adapter's
// submodules are `lora_A` (r x in) and `lora_B` (out x r), so their checkpoint keys are
// `<module>.lora_A.weight` and `<module>.lora_B.weight`, the naming PEFT and diffusers read.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace arcflow {

struct LoRAConfig {
  int rank = 8;
  double alpha = 8.0;    // scale = alpha / rank
  double dropout = 0.05;
  // Glob patterns ('*' matches any run of characters) over module names, e.g. "blocks.*.mlp.fc1".
  std::vector<std::string> targets;
};

class LoRALinearImpl : public torch::nn::Module {
 public:
  LoRALinearImpl(int64_t in_features, int64_t out_features, bool with_bias = true);

  torch::Tensor forward(const torch::Tensor& x);

  // Adds the adapter (A gaussian, B zero) and freezes the base weight and bias.
  void enable_lora(int rank, double alpha, double dropout);
  bool has_lora() const { return !lora_A.is_empty(); }
  // Folds (alpha / r) B A into the base weight for inference, and takes it back out.
  void fuse();
  void unfuse();
  bool fused() const { return fused_; }
  double lora_scale() const { return scale_; }

  int64_t in_features, out_features;
  torch::Tensor weight, bias;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  torch::nn::Dropout lora_dropout{nullptr};

 private:
  double scale_ = 0.0;
  bool fused_ = false;
};
TORCH_MODULE(LoRALinear);

// True when `name` matches the glob `pattern` ('*' matches any characters, including dots).
bool glob_match(const std::string& pattern, const std::string& name);

// Enables LoRA on every LoRALinear of `root` whose name matches one of cfg.targets. Returns the
// names adapted; throws std::invalid_argument when a pattern matches nothing.
std::vector<std::string> apply_lora(torch::nn::Module& root, const LoRAConfig& cfg);

// The adapters' parameters (lora_A and lora_B weights) under `root`.
std::vector<torch::Tensor> lora_parameters(torch::nn::Module& root);

// Fuse or unfuse every adapted layer under `root`.
void fuse_lora(torch::nn::Module& root);
void unfuse_lora(torch::nn::Module& root);

// Copies every parameter and buffer of `from` into the same-named tensor of `to` (which may have
// extra tensors, e.g. adapters). Throws naming the tensor on a missing name or a shape mismatch.
void copy_state(torch::nn::Module& from, torch::nn::Module& to);

// Freezes (requires_grad = false) every parameter of `m`.
void freeze(torch::nn::Module& m);

}  // namespace arcflow
