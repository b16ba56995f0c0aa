// The FLUX.1 transformer (ARCFLOW.md section 7) in the layout of diffusers' FluxTransformer2DModel,
// so that a published `transformer/` folder loads key for key (models/flux/flux_loader.h).
//
// Checkpoint keys (D = heads * head_dim, J = joint_attention_dim, P = pooled_projection_dim,
// C = in_channels, O = out_channels, p = patch_size, M = 4D; every Linear has .weight and .bias):
//   x_embedder (D, C)                      context_embedder (D, J)
//   time_text_embed.timestep_embedder.linear_1 (D, 256), .linear_2 (D, D)
//   time_text_embed.guidance_embedder.linear_1 (D, 256), .linear_2 (D, D)   only with guidance_embeds
//   time_text_embed.text_embedder.linear_1 (D, P), .linear_2 (D, D)
//   transformer_blocks.{i}.                 (num_layers double-stream blocks)
//     norm1.linear (6D, D), norm1_context.linear (6D, D)
//     attn.to_q, to_k, to_v, to_out.0, add_q_proj, add_k_proj, add_v_proj, to_add_out (D, D)
//     attn.norm_q, norm_k, norm_added_q, norm_added_k .weight (head_dim)     RMSNorm, eps 1e-6
//     ff.net.0.proj (M, D), ff.net.2 (D, M), ff_context.net.0.proj (M, D), ff_context.net.2 (D, M)
//   single_transformer_blocks.{i}.          (num_single_layers single-stream blocks)
//     norm.linear (3D, D), proj_mlp (M, D), proj_out (D, D + M)
//     attn.to_q, to_k, to_v (D, D), attn.norm_q, norm_k .weight (head_dim)
//   norm_out.linear (2D, D)                 proj_out (p*p*O, D)
// Every Linear is a LoRALinear (torch::nn::Linear's keys), so adapters attach by name later.
//
// Computation (diffusers' formulas; t = sigma * 1000 and g = guidance * 1000, both rounded to the
// compute dtype first, as diffusers does):
//   temb = timestep_embedder(sinusoid(t)) [+ guidance_embedder(sinusoid(g))] + text_embedder(pooled),
//     sinusoid(t) = [cos(t f_i), sin(t f_i)], f_i = exp(-ln(10000) i / 128), i < 128 (float32:
//     flip_sin_to_cos = true, downscale_freq_shift = 0); embedders: linear_1, SiLU, linear_2.
//   img = x_embedder(hidden_states), txt = context_embedder(encoder_hidden_states).
//   RoPE over the ids cat(txt_ids, img_ids): per axis a of width d_a, frequencies
//     theta^(-2k/d_a) (float64), angles pos * freq, cos and sin each repeated twice (interleaved) ->
//     (S, head_dim) float32; a vector's pairs (x_{2k}, x_{2k+1}) rotate by the angle
//     (x * cos + rot(x) * sin in float32, rot(x)_{2k} = -x_{2k+1}, rot(x)_{2k+1} = x_{2k}).
//   Double block: shift, scale, gate (msa), shift, scale, gate (mlp) = norm1.linear(SiLU(temb)) (and
//     norm1_context for txt); LayerNorm without affine eps 1e-6; joint attention over [txt, img] of
//     RMS-normed (float32 statistics), rotated q and k; img += gate * to_out.0(.), txt += gate *
//     to_add_out(.); then LayerNorm-modulated tanh-GELU MLPs ff / ff_context with their gates.
//   Single block over x = [txt, img]: shift, scale, gate = norm.linear(SiLU(temb));
//     h = LN(x) * (1 + scale) + shift; x += gate * proj_out(cat(attn(h), GELU_tanh(proj_mlp(h)))).
//   norm_out: scale, shift = norm_out.linear(SiLU(temb)) (scale first!); LN(img) * (1 + scale) + shift;
//   proj_out. float16 activations are clipped to +-65504 after each block, as diffusers does.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "arcflow/models/lora.h"

namespace arcflow {

// diffusers' FluxTransformer2DModel config (transformer/config.json). Defaults are the class
// defaults, which apply to keys the file leaves out (FLUX.1-dev's has no out_channels and no
// axes_dims_rope).
struct FluxConfig {
  int64_t patch_size = 1;
  int64_t in_channels = 64;
  int64_t out_channels = 0;  // 0: the same as in_channels (diffusers' None)
  int64_t num_layers = 19;
  int64_t num_single_layers = 38;
  int64_t attention_head_dim = 128;
  int64_t num_attention_heads = 24;
  int64_t joint_attention_dim = 4096;
  int64_t pooled_projection_dim = 768;
  bool guidance_embeds = false;
  std::vector<int64_t> axes_dims_rope = {16, 56, 56};

  static constexpr int64_t kTimestepChannels = 256;  // sinusoid width of time_proj
  static constexpr double kRopeTheta = 10000.0;

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }  // D
  int64_t mlp_hidden() const { return 4 * inner_dim(); }                           // M
  int64_t output_channels() const { return out_channels > 0 ? out_channels : in_channels; }
  int64_t proj_out_dim() const { return patch_size * patch_size * output_channels(); }

  // Throws std::invalid_argument naming the key: widths > 0, layer counts >= 0, axes_dims_rope of 3 even entries
  // summing to attention_head_dim.
  void validate() const;
  // diffusers' spelling; out_channels null when 0.
  nlohmann::json to_json() const;
  // From a config.json object: keys starting with "_" are ignored except `_class_name`, which when
  // present must be "FluxTransformer2DModel"; absent keys take the defaults above; unknown keys,
  // wrong types and inconsistent sizes throw std::invalid_argument naming the key.
  static FluxConfig from_json(const nlohmann::json& j);
  // FLUX.1-dev's published config (guidance_embeds true; everything else the class defaults).
  static FluxConfig flux1_dev();
  // A tiny config of the same structure for tests and CPU timings: 2 double + 2 single blocks,
  // 2 heads of 16, text width 32, pooled 16, RoPE 4/6/6.
  static FluxConfig tiny(bool guidance = true, int64_t in_channels = 16);
};

// Checkpoint key -> shape of every tensor the model holds, from the config alone (no allocation):
// what a weights folder is checked against before anything is built.
std::map<std::string, std::vector<int64_t>> flux_state_shapes(const FluxConfig& cfg);
// Sum of their element counts (11,901,408,320 for FLUX.1-dev).
double flux_parameter_count(const FluxConfig& cfg);

// Floating-point operations (multiply + add = 2) of one forward pass over `batch` samples with
// `n_img` image tokens and `n_txt` text tokens (S = n_img + n_txt): the matrix products of the
// embedders (x, context, timestep/guidance/text MLPs), per double block the two 6D modulations,
// q/k/v and output projections of both streams, q k^T and weights v over S tokens, both MLPs; per
// single block the 3D modulation, q/k/v, q k^T, weights v, proj_mlp and proj_out over S tokens;
// norm_out and proj_out. Element-wise work (norms, RoPE, GELU, softmax) is left out.
double flux_forward_flops(const FluxConfig& cfg, int64_t batch, int64_t n_img, int64_t n_txt);

// A lower bound on the peak memory of one forward pass without gradients, in bytes, for weights of
// `elem_bytes` per value (4 float32, 2 BF16/F16): the weights, plus the largest block's live
// activations at `batch` (the residual streams, q/k/v and the MLP hidden state over S tokens, and
// the B x heads x S x S attention scores with their softmax where LibTorch 1.13's attention makes
// them; LibTorch 2's fused attention does not). With `for_backward`, every block's activations
// (kept for the backward pass), or with `checkpoint_blocks` one block's plus every block's input.
// What `sample`, `bench` and `distill` check before building anything.
double flux_forward_memory_bytes(const FluxConfig& cfg, int64_t batch, int64_t n_img, int64_t n_txt,
                                 int64_t elem_bytes, bool for_backward = false, bool checkpoint_blocks = false);

// ---------------------------------------------------------------------------------- pieces

// diffusers' Timesteps(256, flip_sin_to_cos=true, downscale_freq_shift=0) in float32:
// t (B) -> (B, dim) = [cos(t f), sin(t f)], f_i = exp((-ln(10000) * i) / (dim / 2)).
torch::Tensor flux_timestep_features(const torch::Tensor& t, int64_t dim = FluxConfig::kTimestepChannels);

// FluxPosEmbed: ids (S, n_axes) -> cos, sin, each (S, sum(axes_dims)) float32 on ids' device.
std::array<torch::Tensor, 2> flux_rope(const torch::Tensor& ids, const std::vector<int64_t>& axes_dims,
                                       double theta = FluxConfig::kRopeTheta);
// Rotates x (B, S, H, head_dim) by cos/sin (S, head_dim) (computed in float32, returned in x's dtype).
torch::Tensor flux_apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// softmax(q k^T / sqrt(d)) v over q, k, v (B, H, S, d): at::scaled_dot_product_attention where the
// LibTorch has it (2.x), else written out (softmax in float32 for half-precision inputs).
torch::Tensor flux_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// Latent packing as FluxPipeline: (B, C, H, W) -> (B, (H/2)(W/2), 4C), tokens row-major over the
// (H/2, W/2) grid, each token's values ordered (c, py, px). H and W must be even.
torch::Tensor pack_latents(const torch::Tensor& latents);
// The inverse, for a latent of height h and width w (even).
torch::Tensor unpack_latents(const torch::Tensor& tokens, int64_t h, int64_t w);
// Tokens of a packed (h, w) latent: (h / 2) (w / 2).
inline int64_t flux_packed_tokens(int64_t latent_h, int64_t latent_w) { return (latent_h / 2) * (latent_w / 2); }
// RoPE ids of the packed tokens of an (h, w) token grid: (h*w, 3) float32 rows (0, row, col).
torch::Tensor latent_image_ids(int64_t h, int64_t w, torch::Device device = torch::kCPU);
// Text ids: (n_txt, 3) zeros.
torch::Tensor text_ids(int64_t n_txt, torch::Device device = torch::kCPU);

// RMSNorm over the last dimension with a learned weight: statistics in float32, the normalised
// value cast to the weight's dtype when that is half precision (diffusers' RMSNorm, and
// torch.nn.RMSNorm), then times weight.
class FluxRMSNormImpl : public torch::nn::Module {
 public:
  FluxRMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(FluxRMSNorm);

// TimestepEmbedding / PixArtAlphaTextProjection: linear_1, SiLU, linear_2.
class FluxMlpEmbedderImpl : public torch::nn::Module {
 public:
  FluxMlpEmbedderImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  LoRALinear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(FluxMlpEmbedder);

// time_text_embed: CombinedTimestep(Guidance)TextProjEmbeddings.
class FluxTimeTextEmbedImpl : public torch::nn::Module {
 public:
  FluxTimeTextEmbedImpl(int64_t dim, int64_t pooled_dim, bool guidance);
  // t, g: (B) already times 1000 (g undefined without guidance); pooled (B, P) -> temb (B, D).
  torch::Tensor forward(const torch::Tensor& t, const torch::Tensor& g, const torch::Tensor& pooled);
  FluxMlpEmbedder timestep_embedder{nullptr}, guidance_embedder{nullptr}, text_embedder{nullptr};
};
TORCH_MODULE(FluxTimeTextEmbed);

// AdaLayerNormZero (6 chunks), AdaLayerNormZeroSingle (3) and AdaLayerNormContinuous (2): a
// `linear` on SiLU(temb); the caller splits the chunks.
class FluxAdaNormImpl : public torch::nn::Module {
 public:
  FluxAdaNormImpl(int64_t dim, int64_t chunks);
  // (B, chunks * D) modulation.
  torch::Tensor forward(const torch::Tensor& temb) { return linear(torch::silu(temb)); }
  LoRALinear linear{nullptr};
};
TORCH_MODULE(FluxAdaNorm);

// FeedForward(dim, activation "gelu-approximate"): net.0.proj, tanh-GELU, (net.1 dropout), net.2.
class FluxFeedForwardImpl : public torch::nn::Module {
 public:
  FluxFeedForwardImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList net{nullptr};
  LoRALinear proj{nullptr}, out{nullptr};  // aliases of net[0].proj and net[2]
};
TORCH_MODULE(FluxFeedForward);

// FluxAttention: to_q/k/v (+ to_out.0) for the image or joint stream, norm_q/norm_k; with
// `added` the text stream's add_q/k/v_proj, norm_added_q/k and to_add_out (double blocks).
class FluxAttentionImpl : public torch::nn::Module {
 public:
  FluxAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, bool added, bool with_out);
  // Double block: x = image tokens, ctx = text tokens; returns {image out, text out}.
  // Single block: ctx undefined, x = the joint tokens; returns {attention output (no projection)}.
  std::vector<torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& ctx, const torch::Tensor& cos,
                                     const torch::Tensor& sin);
  int64_t heads, head_dim;
  LoRALinear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out_0{nullptr};
  LoRALinear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr}, to_add_out{nullptr};
  FluxRMSNorm norm_q{nullptr}, norm_k{nullptr}, norm_added_q{nullptr}, norm_added_k{nullptr};
  torch::nn::ModuleList to_out{nullptr};
};
TORCH_MODULE(FluxAttention);

// FluxTransformerBlock (double stream).
class FluxDoubleBlockImpl : public torch::nn::Module {
 public:
  FluxDoubleBlockImpl(int64_t dim, int64_t heads, int64_t head_dim);
  // img (B, N, D), txt (B, L, D), temb (B, D) -> {img, txt}.
  std::vector<torch::Tensor> forward(const torch::Tensor& img, const torch::Tensor& txt, const torch::Tensor& temb,
                                     const torch::Tensor& cos, const torch::Tensor& sin);
  FluxAdaNorm norm1{nullptr}, norm1_context{nullptr};
  FluxAttention attn{nullptr};
  FluxFeedForward ff{nullptr}, ff_context{nullptr};
};
TORCH_MODULE(FluxDoubleBlock);

// FluxSingleTransformerBlock over the joint tokens [txt, img].
class FluxSingleBlockImpl : public torch::nn::Module {
 public:
  FluxSingleBlockImpl(int64_t dim, int64_t heads, int64_t head_dim);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb, const torch::Tensor& cos,
                        const torch::Tensor& sin);
  FluxAdaNorm norm{nullptr};
  LoRALinear proj_mlp{nullptr}, proj_out{nullptr};
  FluxAttention attn{nullptr};
};
TORCH_MODULE(FluxSingleBlock);

class FluxTransformerImpl : public torch::nn::Module {
 public:
  // Parameters are created in the current default dtype (models/flux/flux_loader.h builds straight in
  // the compute dtype) with torch::nn::Linear's default initialisation; real use loads weights.
  explicit FluxTransformerImpl(const FluxConfig& cfg);

  // Velocity (B, N_img, p*p*out_channels). hidden_states (B, N_img, in_channels) packed latents;
  // encoder_hidden_states (B, L, joint_attention_dim); pooled (B, pooled_projection_dim); sigma (B)
  // (or a scalar) in [0, 1]; guidance (B) (or a scalar) when the config has guidance_embeds, else
  // undefined; img_ids (N_img, 3); txt_ids (L, 3). The network multiplies sigma and guidance by
  // 1000 itself. Inputs are cast to the model's dtype; the output is in the model's dtype.
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& encoder_hidden_states,
                        const torch::Tensor& pooled, const torch::Tensor& sigma, const torch::Tensor& guidance,
                        const torch::Tensor& img_ids, const torch::Tensor& txt_ids);

  // The image tokens after norm_out, (B, N_img, D): what proj_out reads, so a student head can
  // replace proj_out. When temb_out is given it receives the conditioning embedding temb (B, D).
  torch::Tensor features(const torch::Tensor& hidden_states, const torch::Tensor& encoder_hidden_states,
                         const torch::Tensor& pooled, const torch::Tensor& sigma, const torch::Tensor& guidance,
                         const torch::Tensor& img_ids, const torch::Tensor& txt_ids, torch::Tensor* temb_out = nullptr);

  // The dtype and device of the weights.
  torch::ScalarType dtype() const { return x_embedder->weight.scalar_type(); }
  torch::Device device() const { return x_embedder->weight.device(); }

  FluxConfig config;
  // Activation checkpointing (core/activation_checkpoint.h): in training mode with gradients on,
  // every block's activations are recomputed in backward instead of kept.
  bool checkpoint_blocks = false;
  LoRALinear x_embedder{nullptr}, context_embedder{nullptr};
  FluxTimeTextEmbed time_text_embed{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};         // of FluxDoubleBlock
  torch::nn::ModuleList single_transformer_blocks{nullptr};  // of FluxSingleBlock
  FluxAdaNorm norm_out{nullptr};
  LoRALinear proj_out{nullptr};
};
TORCH_MODULE(FluxTransformer);

}  // namespace arcflow
