// The ArcFlow student of the image DiT (ARCFLOW.md section 3): the frozen teacher (`base`) with
// LoRA adapters on named Linear layers, plus a new mixture head reading the teacher's final tokens:
//   proj_out_means       Linear(D, K * p*p*C)   per token, ordered (k, py, px, c)
//   proj_out_logweights  Linear(D, K * p*p)     ordered (k, py, px); one logit per pixel
//   proj_out_log_gammas  Linear(D, (K-1) * p*p) ordered (k, py, px); components 1..K-1
// initialised from the teacher's proj_out (init_mixture_head), so before training the mixture's
// velocity is the teacher's up to the documented bias noise. K = 1 is the linear baseline.
//
// Adapter files (section 6) hold only what the student adds: `<module>.lora_A.weight` (r x in) and
// `<module>.lora_B.weight` (out x r) under the teacher's module names (PEFT/diffusers naming), the
// head tensors, `norm_out.linear.*` when it was trained, and metadata {"model": "arcflow-adapter",
// "config": student config JSON, "teacher_config": the DiT config, "lora_rank", "lora_alpha"}.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/dit.h"
#include "arcflow/models/lora.h"

namespace arcflow {

struct DiTStudentConfig {
  int64_t K = 16;
  LoRAConfig lora{8, 8.0, 0.05, {"blocks.*.mlp.fc1", "blocks.*.mlp.fc2", "t_embedder.linear_1", "t_embedder.linear_2"}};
  bool train_norm_out = false;    // also train the final norm's modulation (as the reference may)
  double head_bias_noise = 0.05;  // std of the noise on each component's copied bias
  double min_gamma = 0.2, max_gamma = 4.0;

  void validate() const;  // std::invalid_argument naming the field
  nlohmann::json to_json() const;
  static DiTStudentConfig from_json(const nlohmann::json& j);  // strict; std::invalid_argument
};

class DiTStudentImpl : public torch::nn::Module {
 public:
  // Copies the teacher's weights into a frozen `base`, adds LoRA and the head (random parts drawn
  // from torch's global generator: seed it for reproducible students).
  DiTStudentImpl(DiT teacher, const DiTStudentConfig& cfg);

  // The policy at (x, sigma (B) or scalar, y (B) int64): means (B, K, C, H, W), logweights and
  // log_gammas (B, K, 1, H, W).
  Policy forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y);

  std::vector<torch::Tensor> main_parameters();       // LoRA, means and logweights heads, norm_out
  std::vector<torch::Tensor> log_gamma_parameters();  // the log-gamma head (its own lr)
  int64_t trainable_count();
  int64_t total_count();

  // Adapter tensors (see above), CPU copies.
  io::TensorMap adapter_tensors();
  // Copies an adapter's tensors in; strict (missing, extra or wrongly shaped tensors throw naming
  // `source` and the tensor).
  void load_adapter_tensors(const io::TensorMap& t, const std::string& source);

  DiTStudentConfig config;
  DiT base{nullptr};
  torch::nn::Linear proj_out_means{nullptr}, proj_out_logweights{nullptr}, proj_out_log_gammas{nullptr};
};
TORCH_MODULE(DiTStudent);

void save_adapter(DiTStudent& s, const std::string& path, const io::Metadata& extra = {});
// Builds the student on `teacher` from the adapter file alone (config from its metadata) and loads
// it. Throws std::runtime_error naming `path` when the file is not an adapter, was made for a
// teacher of another shape, or its tensors do not match.
DiTStudent load_adapter(DiT teacher, const std::string& path, io::Metadata* metadata = nullptr);

}  // namespace arcflow
