// The image teacher: a class-conditional DiT with adaLN-Zero (ARCFLOW.md section 5), laid out so
// that its checkpoint keys are those of the PyTorch reference, and PyTorch users can load our weights.
//
// Checkpoint keys (D = width, C = in_channels, p = patch, N = (image_size / p)^2, L = num_classes):
//   x_embedder.weight (D, C, p, p), x_embedder.bias (D)        Conv2d, kernel p, stride p
//   pos_embed (1, N, D)                                         learned
//   t_embedder.linear_1.weight (D, 256), .bias (D)              sinusoidal(sigma * 1000, 256 dims)
//   t_embedder.linear_2.weight (D, D), .bias (D)                  -> linear_1 -> SiLU -> linear_2
//   y_embedder.weight (L + 1, D)                                row L is the null class
//   blocks.{i}.adaLN_modulation.1.weight (6D, D), .bias (6D)    Sequential(SiLU, Linear)
//   blocks.{i}.attn.qkv.weight (3D, D), .bias (3D)
//   blocks.{i}.attn.proj.weight (D, D), .bias (D)
//   blocks.{i}.mlp.fc1.weight (M, D), .bias (M)                 M = int(D * mlp_ratio)
//   blocks.{i}.mlp.fc2.weight (D, M), .bias (D)
//   norm_out.linear.weight (2D, D), .bias (2D)                  SiLU before it; gives shift, scale
//   proj_out.weight (p*p*C, D), .bias (p*p*C)
// Every Linear is a LoRALinear (same keys as torch::nn::Linear), so adapters can be added later
// by name pattern, e.g. "blocks.*.attn.qkv" (keys then gain `<module>.lora_A/B.weight`).
//
// Computation: tokens = x_embedder(x) flattened row-major + pos_embed; c = t_emb + y_emb;
// each block: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = adaLN_modulation(c)
// (chunks of D, in that order), LayerNorm without affine (eps 1e-6),
//   h = x + gate_msa * attn(norm(x) * (1 + scale_msa) + shift_msa)
//   out = h + gate_mlp * mlp(norm(h) * (1 + scale_mlp) + shift_mlp),
// attention softmax(q k^T / sqrt(D / heads)) v over heads split from the q, k, v chunks of qkv;
// MLP GELU with the tanh approximation. Final: shift, scale = norm_out.linear(SiLU(c));
// features = norm(x) * (1 + scale) + shift; proj_out; a token's outputs are ordered (py, px, c).
//
// Initialisation (as the reference DiT): Linear weights xavier-uniform, biases zero; t_embedder
// weights normal(0, 0.02); y_embedder normal(0, 0.02); x_embedder xavier-uniform over its
// (D, C*p*p) view, bias zero; pos_embed the fixed 2-D sin-cos table of the reference DiT/MAE (when
// D % 4 == 0, else normal(0, 0.02)) but trainable; adaLN-Zero: every adaLN_modulation Linear,
// norm_out.linear and proj_out start at zero weight and bias, so a fresh model outputs exactly 0.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/lora.h"
#include "arcflow/models/network.h"
#include "arcflow/models/weights.h"  // count_parameters

namespace arcflow {

struct DiTConfig {
  int64_t in_channels = 1, image_size = 28, patch = 4, width = 256, depth = 6, heads = 4;
  double mlp_ratio = 4;
  int64_t num_classes = 10;

  int64_t grid() const { return image_size / patch; }           // tokens per side
  int64_t num_tokens() const { return grid() * grid(); }        // N
  int64_t token_dim() const { return patch * patch * in_channels; }  // p*p*C
  int64_t mlp_hidden() const { return static_cast<int64_t>(static_cast<double>(width) * mlp_ratio); }

  // Number of values in the model's state (parameters and buffers), in closed form: a weights file
  // whose config promises more than the file holds is refused before anything is allocated.
  // A double: absurd configs give absurd (not overflowed) counts.
  double state_size() const;

  // Throws std::invalid_argument naming the field: every size > 0, image_size % patch == 0,
  // width % heads == 0, mlp_ratio > 0 with int(width * mlp_ratio) >= 1.
  void validate() const;
  // {"in_channels": .., "image_size": .., "patch": .., "width": .., "depth": .., "heads": ..,
  //  "mlp_ratio": .., "num_classes": ..}
  nlohmann::json to_json() const;
  // Strict: every field above must be present with the right type (integers for all but
  // mlp_ratio), unknown fields are rejected, then validate(). Throws std::invalid_argument naming
  // the field.
  static DiTConfig from_json(const nlohmann::json& j);
};

// t_embedder: sinusoidal features of t (256 dims) -> linear_1 -> SiLU -> linear_2.
class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kFrequencyDim = 256;
  explicit TimestepEmbedderImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& t);  // t: (B) timesteps (sigma * 1000) -> (B, D)
  LoRALinear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedder);

// attn: qkv Linear(D, 3D), multi-head softmax attention, proj Linear(D, D).
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);  // (B, N, D) -> (B, N, D)
  int64_t heads;
  LoRALinear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(Attention);

// mlp: fc1 Linear(D, M), GELU (tanh), fc2 Linear(M, D).
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t width, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  LoRALinear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

// One adaLN-Zero transformer block.
class DiTBlockImpl : public torch::nn::Module {
 public:
  DiTBlockImpl(int64_t width, int64_t heads, int64_t mlp_hidden);
  // x: (B, N, D) tokens, c: (B, D) conditioning.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c);
  torch::nn::Sequential adaLN_modulation{nullptr};  // [0] SiLU, [1] LoRALinear(D, 6D)
  LoRALinear modulation{nullptr};                    // alias of adaLN_modulation[1] (not re-registered)
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(DiTBlock);

// norm_out: SiLU(c) -> linear (D -> 2D) = shift, scale; LayerNorm(x) * (1 + scale) + shift.
class FinalNormImpl : public torch::nn::Module {
 public:
  explicit FinalNormImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c);
  LoRALinear linear{nullptr};
};
TORCH_MODULE(FinalNorm);

// The DiT is a registered Network (models/network.h, kind "dit"): conditions are class labels
// ("labels", (B) int64 in 0..num_classes, num_classes = the null class; an empty condition is
// the null class), the head input is features() with the conditioning c as the embedding.
class DiTImpl : public torch::nn::Module, public Network {
 public:
  explicit DiTImpl(const DiTConfig& cfg);

  // Velocity u = eps - x0, (B, C, H, W). x: (B, C, H, W); sigma: (B) (or a scalar, broadcast) in
  // [0, 1], the network sees t = sigma * 1000; y: (B) int64 labels, num_classes = null class.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y);

  // The final tokens after the norm_out modulation, (B, N, D): what proj_out reads, so a student
  // head can replace proj_out. When c_out is given it receives the conditioning c, (B, D).
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y,
                         torch::Tensor* c_out = nullptr);

  // x_embedder(x) as tokens, (B, N, D), row-major over the patch grid, without pos_embed.
  torch::Tensor embed_patches(const torch::Tensor& x);
  // c = t_embedder(sigma * 1000) + y_embedder(y), (B, D).
  torch::Tensor conditioning(const torch::Tensor& sigma, const torch::Tensor& y, int64_t batch);

  // Network
  torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  std::vector<int64_t> sample_shape() const override;
  torch::Device device() const override { return proj_out->weight.device(); }
  void check_condition(const Condition& c, int64_t batch) const override;
  torch::nn::Module& module() override { return *this; }
  std::string kind() const override { return "dit"; }
  std::string summary() const override;
  nlohmann::json config_json() const override { return config.to_json(); }
  NetworkPtr copy_network() override;
  HeadInput head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  LoRALinear output_layer() override { return proj_out; }
  HeadLayout head_layout() const override;
  std::vector<std::string> default_lora_targets() const override;
  std::string final_norm_module() const override { return "norm_out"; }
  int64_t num_classes() const override { return config.num_classes; }
  bool has_null_condition() const override { return true; }
  Condition null_condition(const Condition& c) const override;
  double forward_flops(int64_t batch) const override;
  double forward_memory_bytes(int64_t batch, bool for_backward = false) const override;

  DiTConfig config;
  torch::nn::Conv2d x_embedder{nullptr};
  torch::Tensor pos_embed;
  TimestepEmbedder t_embedder{nullptr};
  torch::nn::Embedding y_embedder{nullptr};
  torch::nn::ModuleList blocks{nullptr};  // of DiTBlock
  FinalNorm norm_out{nullptr};
  LoRALinear proj_out{nullptr};
};
TORCH_MODULE(DiT);

// LayerNorm over the last dimension without affine parameters, eps 1e-6 (the DiT's norm).
torch::Tensor dit_layer_norm(const torch::Tensor& x);

// Unpatchify: tokens (B, N, p*p*C), row-major over the (H/p, W/p) grid, each token's outputs
// ordered (py, px, c) -> image (B, C, H, W) with pixel (c, gy*p + py, gx*p + px).
torch::Tensor patchify_tokens_to_image(const torch::Tensor& tokens, int64_t patch, int64_t channels,
                                       int64_t image_size);
// The inverse: image (B, C, H, W) -> tokens (B, N, p*p*C) in the same order.
torch::Tensor patchify_image_to_tokens(const torch::Tensor& image, int64_t patch);

// Floating-point operations (multiply and add counted as 2) of one forward pass over `batch`
// images: the matrix products of the patch embedding, attention (qkv, q k^T, weights v, proj), MLP,
// adaLN modulation, timestep MLP, final modulation and proj_out. Element-wise work (norms, GELU,
// softmax) is left out: it is a few percent.
double dit_forward_flops(const DiTConfig& c, int64_t batch);


// Writes the weights as safetensors with metadata {"config": config JSON, "model": "dit"}.
// Throws std::invalid_argument for a model carrying LoRA adapters (load_dit could not read the
// file back: save adapters separately).
void save_dit(DiT& m, const std::string& path);
// The registry's loader (models/registry.h): load_dit on a file already read.
NetworkPtr load_dit_network(const io::SafetensorsFile& f, const std::string& path, torch::Device device);
NetworkPtr create_dit_network(const nlohmann::json& config);
// `train-teacher`'s registry hooks (models/registry.h): the config JSON with every field (from_json
// then to_json), and a freshly initialised DiT for images of `image_shape` (C, H, W), which must be
// (in_channels, image_size, image_size). std::invalid_argument naming the field or the shape.
nlohmann::json dit_image_teacher_config(const nlohmann::json& config);
NetworkPtr create_dit_image_teacher(const nlohmann::json& config, const std::vector<int64_t>& image_shape);
// DiTConfig as JSON wherever a JSON config is asked for (nlohmann's to_json hook).
inline void to_json(nlohmann::json& j, const DiTConfig& c) { j = c.to_json(); }
// Builds a DiT from the file's "config" metadata alone and loads its weights strictly: missing,
// extra or wrongly shaped tensors, missing or invalid config metadata, or a "model" entry other
// than "dit" throw std::runtime_error naming `path` (and the tensor or field).
DiT load_dit(const std::string& path, torch::Device device = torch::kCPU);

}  // namespace arcflow
