// Loading FLUX.1 from a diffusers model folder, and the prompt-embeddings file (ARCFLOW.md section 7).
//
//   MODEL_DIR/transformer/config.json + diffusion_pytorch_model.safetensors
//                                        (or shards listed by diffusion_pytorch_model.safetensors.index.json)
//   MODEL_DIR/vae/config.json + diffusion_pytorch_model.safetensors (or shards)
//
// Strict, and before any large allocation: config.json is parsed, the index and the shards'
// headers are read (io/safetensors_dir.h), and every tensor's name, shape and dtype (F32, F16 or
// BF16) is checked against the shapes the config implies. A missing tensor, an extra tensor (the
// VAE encoder's are ignored), a wrong shape or dtype, a missing shard, an index naming a missing
// file, a config.json with an unknown key or inconsistent sizes: each throws std::runtime_error
// with a one-line message naming the file and the key. Only then is the model built, directly in
// the requested dtype (no float32 copy of a BF16 model), and each tensor read from its file
// straight into its parameter (converted when the file's dtype differs from the compute dtype).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "arcflow/io/safetensors_dir.h"
#include "arcflow/models/flux/flux.h"
#include "arcflow/models/flux/flux_vae.h"

namespace arcflow {

// config.json of a transformer or VAE folder. Throws std::runtime_error "<path>: ..." naming the key.
FluxConfig read_flux_config(const std::string& config_json_path);
FluxVaeConfig read_flux_vae_config(const std::string& config_json_path);

// Checks the tensors of `dir` against `expected` (key -> shape) without reading any data. Keys for
// which `ignore(key)` is true are skipped. Throws std::runtime_error naming the file and the key.
void check_tensor_set(const io::SafetensorsDir& dir, const std::map<std::string, std::vector<int64_t>>& expected,
                      bool (*ignore)(const std::string&) = nullptr);

// A FLUX transformer from a component folder (the one holding config.json, e.g. MODEL_DIR/transformer),
// in `dtype` (float32, bfloat16 or float16) on `device`. Put in eval mode with gradients off.
FluxTransformer load_flux_transformer(const std::string& folder, torch::ScalarType dtype = torch::kFloat32,
                                      torch::Device device = torch::kCPU);
// The VAE decoder from a component folder (e.g. MODEL_DIR/vae).
FluxVaeDecoder load_flux_vae_decoder(const std::string& folder, torch::ScalarType dtype = torch::kFloat32,
                                     torch::Device device = torch::kCPU);

// Pre-encoded prompts: a safetensors file with `prompt_embeds` (N, L, joint_attention_dim) (the T5
// output), `pooled_prompt_embeds` (N, pooled_projection_dim) (CLIP's pooled output) and, in the
// metadata, "prompts": a JSON list of the N prompt strings. scripts/encode_prompts.py writes one
// with diffusers' FluxPipeline.encode_prompt.
struct FluxPromptEmbeddings {
  torch::Tensor prompt_embeds;         // (N, L, J)
  torch::Tensor pooled_prompt_embeds;  // (N, P)
  std::vector<std::string> prompts;    // N strings, or empty when the file has none
  int64_t size() const { return prompt_embeds.defined() ? prompt_embeds.size(0) : 0; }
};

// Reads and checks against `cfg` (widths J and P; N and floating dtypes agree; "prompts", when
// present, a list of N strings; no other tensors). Errors are std::runtime_error naming `path`
// and the tensor or metadata key. Tensors are returned on the CPU in the file's dtype.
FluxPromptEmbeddings load_flux_prompt_embeddings(const std::string& path, const FluxConfig& cfg);
// Writes one (atomically).
void save_flux_prompt_embeddings(const std::string& path, const FluxPromptEmbeddings& e);

}  // namespace arcflow
