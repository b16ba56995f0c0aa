// arcflow/models/flux/flux.h: the config, the shape table, FLOPs and the stateless pieces (timestep
// sinusoid, RoPE, attention, latent packing). The modules are in flux_blocks.cpp.
#include "arcflow/models/flux/flux.h"

#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

namespace arcflow {

// ----------------------------------------------------------------------------------- config

void FluxConfig::validate() const {
  // Sizes in [lo, hi]: the upper bounds are far above any published model (FLUX.1: 19 + 38 blocks,
  // 24 heads of 128, 4096-wide text) and keep a hostile config.json from asking for a table of a
  // billion blocks or a product that overflows before the tensors are compared with it.
  auto in_range = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      throw std::invalid_argument(std::string("FLUX config: '") + name + "' must be " +
                                  (lo == 0 ? ">= 0" : "> 0") + " and at most " + std::to_string(hi) + " (got " +
                                  std::to_string(v) + ")");
  };
  constexpr int64_t kWide = int64_t{1} << 16, kBlocks = 1024;
  in_range("patch_size", patch_size, 1, 64);
  in_range("in_channels", in_channels, 1, kWide);
  in_range("out_channels", out_channels, 0, kWide);  // 0: same as in_channels
  in_range("num_layers", num_layers, 0, kBlocks);
  in_range("num_single_layers", num_single_layers, 0, kBlocks);
  in_range("attention_head_dim", attention_head_dim, 1, 4096);
  in_range("num_attention_heads", num_attention_heads, 1, 4096);
  in_range("joint_attention_dim", joint_attention_dim, 1, kWide);
  in_range("pooled_projection_dim", pooled_projection_dim, 1, kWide);
  if (axes_dims_rope.size() != 3)
    throw std::invalid_argument("FLUX config: 'axes_dims_rope' must have 3 entries (ids are (0, row, col)), got " +
                                std::to_string(axes_dims_rope.size()));
  int64_t sum = 0;
  for (int64_t d : axes_dims_rope) {
    if (d <= 0 || d % 2 != 0)
      throw std::invalid_argument("FLUX config: 'axes_dims_rope' entries must be even and > 0, got " +
                                  std::to_string(d));
    sum += d;
  }
  if (sum != attention_head_dim)
    throw std::invalid_argument("FLUX config: 'axes_dims_rope' sums to " + std::to_string(sum) +
                                ", but 'attention_head_dim' is " + std::to_string(attention_head_dim) +
                                " (RoPE rotates every head dimension)");
}

nlohmann::json FluxConfig::to_json() const {
  nlohmann::json j = {{"_class_name", "FluxTransformer2DModel"},
                      {"patch_size", patch_size},
                      {"in_channels", in_channels},
                      {"num_layers", num_layers},
                      {"num_single_layers", num_single_layers},
                      {"attention_head_dim", attention_head_dim},
                      {"num_attention_heads", num_attention_heads},
                      {"joint_attention_dim", joint_attention_dim},
                      {"pooled_projection_dim", pooled_projection_dim},
                      {"guidance_embeds", guidance_embeds},
                      {"axes_dims_rope", axes_dims_rope}};
  j["out_channels"] = out_channels > 0 ? nlohmann::json(out_channels) : nlohmann::json(nullptr);
  return j;
}

FluxConfig FluxConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("FLUX config: expected a JSON object, got " + j.dump());
  if (j.contains("_class_name")) {
    const auto& c = j["_class_name"];
    if (!c.is_string() || c.get<std::string>() != "FluxTransformer2DModel")
      throw std::invalid_argument("FLUX config: '_class_name' is " + c.dump() +
                                  ", expected \"FluxTransformer2DModel\"");
  }
  static const std::set<std::string> known = {
      "patch_size",          "in_channels",         "out_channels",          "num_layers",
      "num_single_layers",   "attention_head_dim",  "num_attention_heads",   "joint_attention_dim",
      "pooled_projection_dim", "guidance_embeds",   "axes_dims_rope"};
  for (const auto& item : j.items())
    if (item.key().rfind('_', 0) != 0 && known.count(item.key()) == 0)
      throw std::invalid_argument("FLUX config: unknown key '" + item.key() + "'");
  auto integer = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return;
    const auto& v = j[key];
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > (1ull << 40)))
      throw std::invalid_argument(std::string("FLUX config: '") + key + "' must be an integer, got " + v.dump());
    out = v.get<int64_t>();
  };
  FluxConfig c;
  integer("patch_size", c.patch_size);
  integer("in_channels", c.in_channels);
  if (j.contains("out_channels") && !j["out_channels"].is_null()) {
    integer("out_channels", c.out_channels);
    if (c.out_channels <= 0)
      throw std::invalid_argument("FLUX config: 'out_channels' must be > 0 or null, got " + j["out_channels"].dump());
  }
  integer("num_layers", c.num_layers);
  integer("num_single_layers", c.num_single_layers);
  integer("attention_head_dim", c.attention_head_dim);
  integer("num_attention_heads", c.num_attention_heads);
  integer("joint_attention_dim", c.joint_attention_dim);
  integer("pooled_projection_dim", c.pooled_projection_dim);
  if (j.contains("guidance_embeds")) {
    if (!j["guidance_embeds"].is_boolean())
      throw std::invalid_argument("FLUX config: 'guidance_embeds' must be true or false, got " +
                                  j["guidance_embeds"].dump());
    c.guidance_embeds = j["guidance_embeds"].get<bool>();
  }
  if (j.contains("axes_dims_rope")) {
    const auto& a = j["axes_dims_rope"];
    if (!a.is_array()) throw std::invalid_argument("FLUX config: 'axes_dims_rope' must be a list, got " + a.dump());
    c.axes_dims_rope.clear();
    for (const auto& v : a) {
      if (!v.is_number_integer())
        throw std::invalid_argument("FLUX config: 'axes_dims_rope' must hold integers, got " + a.dump());
      c.axes_dims_rope.push_back(v.get<int64_t>());
    }
  }
  c.validate();
  return c;
}

FluxConfig FluxConfig::flux1_dev() {
  FluxConfig c;
  c.guidance_embeds = true;
  return c;
}

FluxConfig FluxConfig::tiny(bool guidance, int64_t in_channels) {
  FluxConfig c;
  c.in_channels = in_channels;
  c.num_layers = 2;
  c.num_single_layers = 2;
  c.attention_head_dim = 16;
  c.num_attention_heads = 2;
  c.joint_attention_dim = 32;
  c.pooled_projection_dim = 16;
  c.guidance_embeds = guidance;
  c.axes_dims_rope = {4, 6, 6};
  return c;
}

// ----------------------------------------------------------------------------------- shapes

std::map<std::string, std::vector<int64_t>> flux_state_shapes(const FluxConfig& cfg) {
  cfg.validate();
  const int64_t D = cfg.inner_dim(), M = cfg.mlp_hidden(), hd = cfg.attention_head_dim;
  std::map<std::string, std::vector<int64_t>> s;
  auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    s[name + ".weight"] = {out, in};
    s[name + ".bias"] = {out};
  };
  linear("x_embedder", cfg.in_channels, D);
  linear("context_embedder", cfg.joint_attention_dim, D);
  linear("time_text_embed.timestep_embedder.linear_1", FluxConfig::kTimestepChannels, D);
  linear("time_text_embed.timestep_embedder.linear_2", D, D);
  if (cfg.guidance_embeds) {
    linear("time_text_embed.guidance_embedder.linear_1", FluxConfig::kTimestepChannels, D);
    linear("time_text_embed.guidance_embedder.linear_2", D, D);
  }
  linear("time_text_embed.text_embedder.linear_1", cfg.pooled_projection_dim, D);
  linear("time_text_embed.text_embedder.linear_2", D, D);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string b = "transformer_blocks." + std::to_string(i) + ".";
    linear(b + "norm1.linear", D, 6 * D);
    linear(b + "norm1_context.linear", D, 6 * D);
    for (const char* n : {"to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"})
      linear(b + "attn." + n, D, D);
    for (const char* n : {"norm_q", "norm_k", "norm_added_q", "norm_added_k"}) s[b + "attn." + n + ".weight"] = {hd};
    for (const char* ff : {"ff", "ff_context"}) {
      linear(b + ff + ".net.0.proj", D, M);
      linear(b + ff + ".net.2", M, D);
    }
  }
  for (int64_t i = 0; i < cfg.num_single_layers; ++i) {
    const std::string b = "single_transformer_blocks." + std::to_string(i) + ".";
    linear(b + "norm.linear", D, 3 * D);
    linear(b + "proj_mlp", D, M);
    linear(b + "proj_out", D + M, D);
    for (const char* n : {"to_q", "to_k", "to_v"}) linear(b + "attn." + n, D, D);
    for (const char* n : {"norm_q", "norm_k"}) s[b + "attn." + n + ".weight"] = {hd};
  }
  linear("norm_out.linear", D, 2 * D);
  linear("proj_out", D, cfg.proj_out_dim());
  return s;
}

double flux_parameter_count(const FluxConfig& cfg) {
  // The shape table above, summed in closed form (no table: callers size requests with it before
  // anything is checked or built; tests compare it with the built module).
  cfg.validate();
  const double D = static_cast<double>(cfg.inner_dim()), M = static_cast<double>(cfg.mlp_hidden());
  const double hd = static_cast<double>(cfg.attention_head_dim), F = static_cast<double>(FluxConfig::kTimestepChannels);
  const auto linear = [](double in, double out) { return out * in + out; };
  const double embed = linear(static_cast<double>(cfg.in_channels), D) +
                       linear(static_cast<double>(cfg.joint_attention_dim), D) +
                       (linear(F, D) + linear(D, D)) * (cfg.guidance_embeds ? 2 : 1) +
                       linear(static_cast<double>(cfg.pooled_projection_dim), D) + linear(D, D);
  const double dbl = 2 * linear(D, 6 * D) + 8 * linear(D, D) + 4 * hd + 2 * (linear(D, M) + linear(M, D));
  const double single = linear(D, 3 * D) + linear(D, M) + linear(D + M, D) + 3 * linear(D, D) + 2 * hd;
  const double out = linear(D, 2 * D) + linear(D, static_cast<double>(cfg.proj_out_dim()));
  return embed + static_cast<double>(cfg.num_layers) * dbl + static_cast<double>(cfg.num_single_layers) * single + out;
}

double flux_forward_flops(const FluxConfig& cfg, int64_t batch, int64_t n_img, int64_t n_txt) {
  const double D = static_cast<double>(cfg.inner_dim()), M = static_cast<double>(cfg.mlp_hidden());
  const double N = static_cast<double>(n_img), L = static_cast<double>(n_txt), S = N + L;
  const double F = static_cast<double>(FluxConfig::kTimestepChannels);
  const double mlp_embed = 2 * F * D + 2 * D * D;
  const double embed = 2 * N * cfg.in_channels * D + 2 * L * cfg.joint_attention_dim * D +
                       mlp_embed * (cfg.guidance_embeds ? 2 : 1) + 2 * cfg.pooled_projection_dim * D + 2 * D * D;
  const double attention = 2 * S * S * D * 2;  // q k^T and weights v, over all heads
  const double dbl = 2 * (2 * D * 6 * D)        // norm1, norm1_context
                     + S * 3 * 2 * D * D         // q, k, v of both streams
                     + S * 2 * D * D             // to_out.0 and to_add_out
                     + attention + S * 2 * 2 * D * M;  // ff and ff_context
  const double single = 2 * D * 3 * D + S * 3 * 2 * D * D + attention + S * 2 * D * M + S * 2 * (D + M) * D;
  const double out = 2 * D * 2 * D + N * 2 * D * static_cast<double>(cfg.proj_out_dim());
  const double per_sample = embed + static_cast<double>(cfg.num_layers) * dbl +
                            static_cast<double>(cfg.num_single_layers) * single + out;
  return per_sample * static_cast<double>(batch);
}

double flux_forward_memory_bytes(const FluxConfig& cfg, int64_t batch, int64_t n_img, int64_t n_txt,
                                 int64_t elem_bytes, bool for_backward, bool checkpoint_blocks) {
  const double B = static_cast<double>(batch), S = static_cast<double>(n_img + n_txt), e = static_cast<double>(elem_bytes);
  const double D = static_cast<double>(cfg.inner_dim()), M = static_cast<double>(cfg.mlp_hidden());
  const double H = static_cast<double>(cfg.num_attention_heads);
  const double weights = flux_parameter_count(cfg) * e;
  // A single block: input and output streams (2D), q, k, v (3D), attention output (D), MLP hidden (M).
  const double streams = B * S * (6 * D + M) * e;
#if TORCH_VERSION_MAJOR >= 2
  (void)H;  // scaled_dot_product_attention does not keep the S x S scores
  const double block = streams;
#else
  const double block = streams + 2 * B * H * S * S * std::max<double>(e, 4);  // scores + softmax (float32 for half types)
#endif
  const double blocks = static_cast<double>(cfg.num_layers + cfg.num_single_layers);
  if (!for_backward) return weights + block;
  if (checkpoint_blocks) return weights + block + blocks * B * S * D * e;
  return weights + blocks * block;
}

// ----------------------------------------------------------------------------------- pieces

torch::Tensor flux_timestep_features(const torch::Tensor& t, int64_t dim) {
  if (dim <= 0 || dim % 2 != 0) throw std::invalid_argument("flux_timestep_features: dim must be even and > 0");
  if (t.dim() != 1) throw std::invalid_argument("flux_timestep_features: timesteps must be 1-D, got " + c10::str(t.sizes()));
  const int64_t half = dim / 2;
  const auto f32 = t.options().dtype(torch::kFloat32);
  // The order of diffusers' get_timestep_embedding, so that float32 rounding agrees with it.
  torch::Tensor exponent = torch::arange(0, half, f32) * (-std::log(10000.0));
  exponent = exponent / static_cast<double>(half);
  const torch::Tensor args = t.to(torch::kFloat32).unsqueeze(1) * torch::exp(exponent).unsqueeze(0);
  return torch::cat({torch::cos(args), torch::sin(args)}, 1);  // flip_sin_to_cos
}

std::array<torch::Tensor, 2> flux_rope(const torch::Tensor& ids, const std::vector<int64_t>& axes_dims, double theta) {
  if (ids.dim() != 2 || ids.size(1) != static_cast<int64_t>(axes_dims.size()))
    throw std::invalid_argument("flux_rope: ids must be (S, " + std::to_string(axes_dims.size()) + "), got " +
                                c10::str(ids.sizes()));
  const torch::Tensor pos = ids.to(torch::kFloat32);
  std::vector<torch::Tensor> cos, sin;
  for (size_t a = 0; a < axes_dims.size(); ++a) {
    const int64_t d = axes_dims[a];
    const auto f64 = ids.options().dtype(torch::kFloat64);
    const torch::Tensor freqs = 1.0 / torch::pow(theta, torch::arange(0, d, 2, f64) / static_cast<double>(d));
    const torch::Tensor angles = torch::outer(pos.select(1, static_cast<int64_t>(a)).to(torch::kFloat64), freqs);
    cos.push_back(angles.cos().repeat_interleave(2, 1).to(torch::kFloat32));
    sin.push_back(angles.sin().repeat_interleave(2, 1).to(torch::kFloat32));
  }
  return {torch::cat(cos, 1), torch::cat(sin, 1)};
}

torch::Tensor flux_apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  // x (B, S, H, d): pairs (x_{2k}, x_{2k+1}) -> rotated (-x_{2k+1}, x_{2k}).
  const torch::Tensor pairs = x.reshape({x.size(0), x.size(1), x.size(2), -1, 2});
  const torch::Tensor rotated = torch::stack({-pairs.select(-1, 1), pairs.select(-1, 0)}, -1).flatten(3);
  const torch::Tensor c = cos.unsqueeze(0).unsqueeze(2), s = sin.unsqueeze(0).unsqueeze(2);  // (1, S, 1, d)
  return (x.to(torch::kFloat32) * c + rotated.to(torch::kFloat32) * s).to(x.scalar_type());
}

torch::Tensor flux_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
  const bool low = q.scalar_type() == torch::kHalf || q.scalar_type() == torch::kBFloat16;
  const torch::Tensor w = low ? scores.softmax(-1, torch::kFloat32).to(q.scalar_type()) : scores.softmax(-1);
  return torch::matmul(w, v);
#endif
}

torch::Tensor pack_latents(const torch::Tensor& latents) {
  if (latents.dim() != 4 || latents.size(2) % 2 != 0 || latents.size(3) % 2 != 0)
    throw std::invalid_argument("pack_latents: expected (B, C, H, W) with H and W even, got " +
                                c10::str(latents.sizes()));
  const int64_t B = latents.size(0), C = latents.size(1), H = latents.size(2), W = latents.size(3);
  return latents.reshape({B, C, H / 2, 2, W / 2, 2})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({B, (H / 2) * (W / 2), C * 4});
}

torch::Tensor unpack_latents(const torch::Tensor& tokens, int64_t h, int64_t w) {
  if (tokens.dim() != 3 || h % 2 != 0 || w % 2 != 0 || h <= 0 || w <= 0 || tokens.size(1) != (h / 2) * (w / 2) ||
      tokens.size(2) % 4 != 0)
    throw std::invalid_argument("unpack_latents: tokens of shape " + c10::str(tokens.sizes()) +
                                " do not fit a latent of height " + std::to_string(h) + " and width " +
                                std::to_string(w) + " (both even, 4C values per token)");
  const int64_t B = tokens.size(0), C = tokens.size(2) / 4;
  return tokens.reshape({B, h / 2, w / 2, C, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, h, w});
}

torch::Tensor latent_image_ids(int64_t h, int64_t w, torch::Device device) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const torch::Tensor rows = torch::arange(h, opts).unsqueeze(1).expand({h, w});
  const torch::Tensor cols = torch::arange(w, opts).unsqueeze(0).expand({h, w});
  return torch::stack({torch::zeros({h, w}, opts), rows, cols}, -1).reshape({h * w, 3});
}

torch::Tensor text_ids(int64_t n_txt, torch::Device device) {
  return torch::zeros({n_txt, 3}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
}

}  // namespace arcflow
