// The decoder half of diffusers' AutoencoderKL (the FLUX.1 VAE, ARCFLOW.md section 7), with the
// checkpoint keys of a published `vae/` folder. The encoder is not built: its keys (`encoder.*`,
// `quant_conv.*`) in a weights file are ignored by the loader (models/flux/flux_loader.h).
//
// Checkpoint keys (c_i = block_out_channels[i], n = len(block_out_channels), C = c_{n-1},
// r_i = c_{n-1-i} (reversed), Z = latent_channels, O = out_channels, G = norm_num_groups groups):
//   post_quant_conv (Z, Z, 1, 1)                          only when use_post_quant_conv (FLUX: false)
//   decoder.conv_in (C, Z, 3, 3)
//   decoder.mid_block.resnets.{0,1}                       ResnetBlock2D(C -> C)
//   decoder.mid_block.attentions.0.group_norm (C), .to_q, .to_k, .to_v, .to_out.0 (C, C)
//                                                          (only when mid_block_add_attention)
//   decoder.up_blocks.{i}.resnets.{j}, j <= layers_per_block   ResnetBlock2D(j == 0 ? r_{i-1} : r_i -> r_i)
//     (r_{-1} = C) with norm1, conv1 (3x3), norm2, conv2 (3x3), conv_shortcut (1x1, when in != out)
//   decoder.up_blocks.{i}.upsamplers.0.conv (r_i, r_i, 3, 3)   for i < n - 1
//   decoder.conv_norm_out (c_0), decoder.conv_out (O, c_0, 3, 3)
// All GroupNorms have eps 1e-6 and affine weight/bias; every conv has a bias.
//
// Computation (diffusers' Decoder): conv_in; mid block: resnet, attention, resnet; up blocks:
// resnets then (except the last) nearest 2x upsampling + conv; GroupNorm, SiLU, conv_out.
//   ResnetBlock2D: h = conv1(SiLU(norm1(x))); h = conv2(SiLU(norm2(h))); out = shortcut(x) + h.
//   Mid attention (one head of width C over the H*W pixels): h = group_norm(x) as (B, HW, C);
//   out = x + to_out.0(softmax(q k^T / sqrt(C)) v).
// The image is 2^(n-1) times larger than the latent (8 for FLUX).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "arcflow/models/lora.h"

namespace arcflow {

// diffusers' AutoencoderKL config (vae/config.json); defaults are the class defaults.
struct FluxVaeConfig {
  int64_t in_channels = 3, out_channels = 3;
  std::vector<int64_t> block_out_channels = {64};
  int64_t layers_per_block = 1;
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  double shift_factor = 0.0;  // null in the file: 0
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  // 2^(len(block_out_channels) - 1): image pixels per latent pixel along each side.
  int64_t downscale() const { return int64_t{1} << (block_out_channels.size() - 1); }

  // Throws std::invalid_argument naming the key: sizes > 0, every block_out_channels entry
  // divisible by norm_num_groups, scaling_factor finite and non-zero.
  void validate() const;
  // From a config.json object. Keys starting with "_" are ignored except `_class_name`, which when
  // present must be "AutoencoderKL"; encoder-only keys (in_channels, down_block_types,
  // use_quant_conv, force_upcast, sample_size, latents_mean/std) are read or checked but do not
  // change the decoder; up_block_types must all be "UpDecoderBlock2D" and as many as
  // block_out_channels; act_fn must be "silu"; unknown keys, wrong types and inconsistent sizes
  // throw std::invalid_argument naming the key.
  static FluxVaeConfig from_json(const nlohmann::json& j);
  // FLUX.1's published VAE config.
  static FluxVaeConfig flux1();
};

// Checkpoint key -> shape of every decoder tensor, from the config alone.
std::map<std::string, std::vector<int64_t>> flux_vae_state_shapes(const FluxVaeConfig& cfg);
// True for keys of the encoder half (`encoder.*`, `quant_conv.*`), which the decoder ignores.
bool is_vae_encoder_key(const std::string& key);

// ResnetBlock2D without a time embedding.
class VaeResnetBlockImpl : public torch::nn::Module {
 public:
  VaeResnetBlockImpl(int64_t in, int64_t out, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(VaeResnetBlock);

// The mid block's single-head spatial self-attention with a residual connection.
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);  // (B, C, H, W)
  torch::nn::GroupNorm group_norm{nullptr};
  LoRALinear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out_0{nullptr};
  torch::nn::ModuleList to_out{nullptr};
};
TORCH_MODULE(VaeAttention);

// UNetMidBlock2D: resnets[0], attentions[0] (optional), resnets[1].
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int64_t channels, int64_t groups, bool attention);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// UpDecoderBlock2D: resnets, then (optionally) upsamplers.0 = nearest 2x + conv.
class VaeUpBlockImpl : public torch::nn::Module {
 public:
  VaeUpBlockImpl(int64_t in, int64_t out, int64_t num_resnets, int64_t groups, bool upsample);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList resnets{nullptr}, upsamplers{nullptr};
  torch::nn::Conv2d upsample_conv{nullptr};  // alias of upsamplers[0].conv
};
TORCH_MODULE(VaeUpBlock);

// The Decoder module (keys under `decoder.`).
class VaeDecoderNetImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderNetImpl(const FluxVaeConfig& cfg);
  torch::Tensor forward(const torch::Tensor& z);
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  VaeMidBlock mid_block{nullptr};
  torch::nn::ModuleList up_blocks{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeDecoderNet);

class FluxVaeDecoderImpl : public torch::nn::Module {
 public:
  // Parameters in the current default dtype (the loader builds straight in the compute dtype).
  explicit FluxVaeDecoderImpl(const FluxVaeConfig& cfg);

  // Images (B, out_channels, H * downscale, W * downscale), nominally in [-1, 1] (not clamped),
  // from latents (B, latent_channels, H, W) as the FLUX pipeline gives them:
  // decoder(post_quant_conv?(latents / scaling_factor + shift_factor)). Computed in the model's
  // dtype; returned in it.
  torch::Tensor decode(const torch::Tensor& latents);
  // decoder(post_quant_conv?(z)) without the scaling.
  torch::Tensor forward(const torch::Tensor& z);

  torch::ScalarType dtype() const { return decoder->conv_in->weight.scalar_type(); }
  torch::Device device() const { return decoder->conv_in->weight.device(); }

  FluxVaeConfig config;
  torch::nn::Conv2d post_quant_conv{nullptr};
  VaeDecoderNet decoder{nullptr};
};
TORCH_MODULE(FluxVaeDecoder);

}  // namespace arcflow
