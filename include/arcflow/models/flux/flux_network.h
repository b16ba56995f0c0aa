// FLUX.1 as a registered Network (models/network.h, kind "flux"), so that sampling, distillation,
// evaluation and benchmarking reach it through the same seam as the DiT.
//
// Sample space: the VAE latent (C, h, w) with C = in_channels / 4 (16 for FLUX.1) and h, w even
// (the image is h * 8 by w * 8 pixels for FLUX's VAE); the network packs it into 2x2 tokens
// (pack_latents), runs the transformer and unpacks the velocity. The latent size is a setting of
// the network (set_latent_size), not of the architecture.
//
// Condition keys (models/condition.h), per sample:
//   "prompt_embeds"         (B, L, joint_attention_dim)   the T5 output
//   "pooled_prompt_embeds"  (B, pooled_projection_dim)    CLIP's pooled output
//   "guidance"              (B) float                     distilled guidance (FLUX.1-dev: required
//                                                          when the config has guidance_embeds)
// There is no null condition: FLUX.1-dev's guidance is an input (1 NFE per step), and FLUX.1-schnell
// has none, so classifier-free guidance (cfg scale other than 1) is refused.
//
// Precision: the transformer runs in its weights' dtype (BF16 on CUDA); velocity() returns x's
// dtype, so the sampler's state and the policy's integration stay in float32.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/flux/flux.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/network.h"
#include "arcflow/models/pipeline.h"
#include "arcflow/models/teacher_options.h"

namespace arcflow {

class FluxNetwork : public Network {
 public:
  explicit FluxNetwork(FluxTransformer transformer, int64_t latent_height = 64, int64_t latent_width = 64);

  // The latent the network samples: h and w even and > 0 (std::invalid_argument otherwise).
  void set_latent_size(int64_t h, int64_t w);
  int64_t latent_height() const { return h_; }
  int64_t latent_width() const { return w_; }
  int64_t latent_channels() const { return transformer->config.in_channels / 4; }
  // Text tokens assumed by forward_flops (default 512, FLUX.1-dev's T5 length).
  void set_text_tokens(int64_t n) { text_tokens_ = n; }
  int64_t text_tokens() const { return text_tokens_; }
  // Data-free distillation: random_condition() draws prompts uniformly from `e` (checked against
  // the config: std::invalid_argument naming the tensor), with distilled guidance `guidance` for
  // models that take it. Without a pool random_condition() throws, naming --prompts.
  void set_prompt_pool(const FluxPromptEmbeddings& e, double guidance);
  // Without a prompt pool, a network with class prompts draws uniform labels.
  Condition random_condition(int64_t batch, at::Generator& gen) const override;

  // Class-conditional use (a FLUX-architecture teacher trained on a labelled data set by `arcflow
  // train-teacher --arch flux`): row l of `table` is the "prompt" of class l and its last row that
  // of the null class (label num_classes, for classifier-free guidance). Conditions may then carry
  // "labels" (B) int64 in 0..num_classes instead of prompt embeddings, and the null condition is
  // the last row. Checked against the config (std::invalid_argument naming the tensor); kept in
  // the weights file (metadata "class_prompts", with "sample_size").
  void set_class_prompts(const FluxPromptEmbeddings& table);
  const FluxPromptEmbeddings& class_prompts() const { return classes_; }
  int64_t num_classes() const override { return classes_.size() > 0 ? classes_.size() - 1 : 0; }
  bool has_null_condition() const override { return classes_.size() > 0; }
  Condition null_condition(const Condition& c) const override;
  // Classifier-free with class prompts; else distilled with a guidance embedding (FLUX.1-dev), none without.
  GuidanceKind guidance_kind() const override;
  int64_t image_tokens() const override { return flux_packed_tokens(h_, w_); }
  bool set_block_checkpointing(bool on) override {
    transformer->checkpoint_blocks = on;
    return true;
  }
  io::Metadata extra_metadata() const override;
  // Reads what extra_metadata() wrote (absent entries leave the defaults); std::runtime_error naming `path`.
  void read_extra_metadata(const io::Metadata& meta, const std::string& path);

  torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  std::vector<int64_t> sample_shape() const override { return {latent_channels(), h_, w_}; }
  torch::Device device() const override { return transformer->device(); }
  void check_condition(const Condition& c, int64_t batch) const override;
  torch::nn::Module& module() override { return *transformer; }
  std::string kind() const override { return "flux"; }
  std::string summary() const override;
  // A class-prompt network writes DIR/class-prompts.safetensors (its class table as a prompts file).
  void save_companions(const std::string& dir) const override;
  nlohmann::json config_json() const override { return transformer->config.to_json(); }
  NetworkPtr copy_network() override;
  HeadInput head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  LoRALinear output_layer() override { return transformer->proj_out; }
  HeadLayout head_layout() const override;
  // The reference's targets for FLUX (ARCFLOW.md section 7).
  std::vector<std::string> default_lora_targets() const override;
  std::string final_norm_module() const override { return "norm_out"; }
  double forward_flops(int64_t batch) const override;
  double forward_memory_bytes(int64_t batch, bool for_backward = false) const override;

  FluxTransformer transformer;

 private:
  // Packed tokens, ids and the transformer's other inputs for x (B, C, h, w).
  struct Inputs {
    torch::Tensor tokens, prompt, pooled, guidance, img_ids, txt_ids;
  };
  Inputs inputs(const torch::Tensor& x, const Condition& c) const;
  // For conditions carrying "labels" (models/flux/flux_classes.cpp): the check, and the prompts they stand for.
  void check_class_condition(const Condition& c, int64_t batch) const;
  Condition class_prompt_condition(const Condition& c) const;

  int64_t h_, w_;
  int64_t text_tokens_ = 512;
  FluxPromptEmbeddings pool_;
  double pool_guidance_ = 3.5;
  FluxPromptEmbeddings classes_;  // float32, on the CPU
};

// A FLUX model folder: MODEL_DIR/transformer/ (or a transformer folder itself, holding config.json
// with _class_name FluxTransformer2DModel), weights in `dtype` on `device`.
NetworkPtr load_flux_folder(const std::string& dir, torch::Device device, torch::ScalarType dtype);
// A FLUX model folder set up as a teacher (registry.h, load_teacher): weights in options.dtype,
// the latent of options.height x options.width pixels (checked: multiples of 2 x the VAE's
// downscale), the prompt pool of options.prompts (checked against the config) with distilled
// guidance options.guidance; the size and the memory one forward pass at options.batch needs are
// checked before the weights are read (std::invalid_argument naming the flags).
NetworkPtr load_flux_folder_teacher(const std::string& dir, const FolderTeacherOptions& options, torch::Device device);
// The folder as a pipeline (models/pipeline.h; flux_pipeline.cpp): the registry's load_pipeline.
PipelinePtr load_flux_pipeline(const std::string& dir, const PipelineOptions& options, torch::Device device);
// The image-to-latent downscale of a model folder's VAE (MODEL_DIR/vae/config.json), or FLUX.1's 8
// when the folder has no VAE.
int64_t flux_vae_downscale(const std::string& model_dir);
// Throws std::invalid_argument naming `flags` unless height and width are positive multiples of
// 2 x downscale (a packed token covers 2x2 latent pixels).
void check_flux_image_size(int64_t height, int64_t width, int64_t downscale, const std::string& flags);

// The registry's single-file loader and constructor ("model" = "flux", "config" = the config JSON).
NetworkPtr load_flux_network(const io::SafetensorsFile& f, const std::string& path, torch::Device device);
NetworkPtr create_flux_network(const nlohmann::json& config);
// A network of `cfg` whose weights are N(0, std^2) (biases and norm weights as the layer kinds
// suggest: biases 0, RMSNorm weights 1), built uninitialised straight on `device` in `dtype`:
// for timing full-size shapes without the weights (`arcflow bench --random-weights`).
NetworkPtr random_flux_network(const FluxConfig& cfg, torch::Device device, torch::ScalarType dtype,
                               uint64_t seed = 0, double std = 0.02);

// A class-prompt table for set_class_prompts(): for each name a fixed random "prompt" (L = tokens
// rows of N(0, 1) of width joint_attention_dim, and an N(0, 1) pooled vector), drawn from a CPU
// generator seeded with `seed` (the stand-in for a text encoder), then a last all-zero row named ""
// for the null class. float32 on the CPU.
FluxPromptEmbeddings make_class_prompts(const FluxConfig& cfg, const std::vector<std::string>& names, int64_t tokens,
                                        uint64_t seed);

// `train-teacher` with arch "flux": the FLUX transformer over images of C channels packed 2x2
// (transformer.in_channels = 4 C, guidance_embeds false: guidance is classifier-free, through the
// null class). The prompt of class l is row l of make_class_prompts(transformer, class_names,
// prompt_tokens, prompt_seed). JSON: {"transformer": the config.json keys, "num_classes",
// "class_names", "prompt_tokens", "prompt_seed"}.
struct FluxTeacherModel {
  FluxConfig transformer;
  int64_t num_classes = 10;
  std::vector<std::string> class_names;  // empty: "class 0", "class 1", ...
  int64_t prompt_tokens = 4;             // L, text tokens per class prompt
  uint64_t prompt_seed = 0;              // the class prompts' random draw (not the training seed)

  void validate() const;  // std::invalid_argument naming the field ("flux.num_classes")
  nlohmann::json to_json() const;
  // "transformer" is required, the rest default as above; unknown fields are rejected; then validate().
  static FluxTeacherModel from_json(const nlohmann::json& j);
  std::vector<std::string> names() const;
};
inline void to_json(nlohmann::json& j, const FluxTeacherModel& m) { j = m.to_json(); }

// `train-teacher`'s registry hooks (models/registry.h): the config with every field, and a freshly
// initialised class-prompt FLUX network for images of `image_shape` (C, H, W: C = in_channels / 4,
// even sides). std::invalid_argument naming the field or the shape.
nlohmann::json flux_image_teacher_config(const nlohmann::json& config);
NetworkPtr create_flux_image_teacher(const nlohmann::json& config, const std::vector<int64_t>& image_shape);

// The condition of prompts rows[i] of `e` (on the CPU, in the file's dtype), with guidance g for
// every sample when `with_guidance`.
Condition flux_condition(const FluxPromptEmbeddings& e, const std::vector<int64_t>& rows, bool with_guidance,
                         double guidance);

}  // namespace arcflow
