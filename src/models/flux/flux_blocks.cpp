// arcflow/models/flux/flux.h: the modules of the FLUX transformer (names = diffusers' checkpoint keys).
#include <stdexcept>

#include "arcflow/models/flux/flux.h"
#include "arcflow/core/activation_checkpoint.h"
#include "arcflow/models/param_init.h"

namespace arcflow {
namespace {

bool is_half(torch::ScalarType t) { return t == torch::kHalf || t == torch::kBFloat16; }

// LayerNorm over the last dimension without affine parameters, eps 1e-6.
torch::Tensor layer_norm(const torch::Tensor& x) {
  return torch::layer_norm(x, {x.size(-1)}, /*weight=*/{}, /*bias=*/{}, /*eps=*/1e-6);
}

// x * (1 + scale) + shift with (B, D) modulation broadcast over the tokens.
torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

// diffusers clips float16 activations to the float16 range after each block.
torch::Tensor clip_fp16(const torch::Tensor& x) {
  return x.scalar_type() == torch::kHalf ? x.clamp(-65504.0, 65504.0) : x;
}

// net.0 of FeedForward: diffusers' GELU module, whose Linear is called `proj`.
class GeluProjImpl : public torch::nn::Module {
 public:
  GeluProjImpl(int64_t in, int64_t out) { proj = register_module("proj", LoRALinear(in, out)); }
  torch::Tensor forward(const torch::Tensor& x) { return torch::gelu(proj(x), "tanh"); }
  LoRALinear proj{nullptr};
};
TORCH_MODULE(GeluProj);

// Broadcasts a scalar or checks a (B) tensor of per-sample values.
torch::Tensor per_sample(const torch::Tensor& v, int64_t batch, const char* what) {
  const torch::Tensor s = v.dim() == 0 ? v.expand({batch}) : v;
  if (s.dim() != 1 || s.size(0) != batch)
    throw std::invalid_argument(std::string("FLUX transformer: ") + what + " must have shape (" +
                                std::to_string(batch) + ") or be a scalar, got " + c10::str(v.sizes()));
  return s;
}

}  // namespace

FluxRMSNormImpl::FluxRMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, ParamInitGuard::options()));
}

torch::Tensor FluxRMSNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor variance = x.to(torch::kFloat32).pow(2).mean(-1, /*keepdim=*/true);
  torch::Tensor y = x * torch::rsqrt(variance + eps);  // promotes to float32
  if (is_half(weight.scalar_type())) y = y.to(weight.scalar_type());
  return y * weight;
}

FluxMlpEmbedderImpl::FluxMlpEmbedderImpl(int64_t in, int64_t out) {
  linear_1 = register_module("linear_1", LoRALinear(in, out));
  linear_2 = register_module("linear_2", LoRALinear(out, out));
}

torch::Tensor FluxMlpEmbedderImpl::forward(const torch::Tensor& x) { return linear_2(torch::silu(linear_1(x))); }

FluxTimeTextEmbedImpl::FluxTimeTextEmbedImpl(int64_t dim, int64_t pooled_dim, bool guidance) {
  timestep_embedder = register_module("timestep_embedder", FluxMlpEmbedder(FluxConfig::kTimestepChannels, dim));
  if (guidance)
    guidance_embedder = register_module("guidance_embedder", FluxMlpEmbedder(FluxConfig::kTimestepChannels, dim));
  text_embedder = register_module("text_embedder", FluxMlpEmbedder(pooled_dim, dim));
}

torch::Tensor FluxTimeTextEmbedImpl::forward(const torch::Tensor& t, const torch::Tensor& g,
                                             const torch::Tensor& pooled) {
  const auto dtype = pooled.scalar_type();
  torch::Tensor temb = timestep_embedder(flux_timestep_features(t).to(dtype));
  if (guidance_embedder) temb = temb + guidance_embedder(flux_timestep_features(g).to(dtype));
  return temb + text_embedder(pooled);
}

FluxAdaNormImpl::FluxAdaNormImpl(int64_t dim, int64_t chunks) {
  linear = register_module("linear", LoRALinear(dim, chunks * dim));
}

FluxFeedForwardImpl::FluxFeedForwardImpl(int64_t dim, int64_t hidden) {
  GeluProj act(dim, hidden);
  proj = act->proj;
  out = LoRALinear(hidden, dim);
  // Children "0" (GELU with proj), "1" (dropout: no parameters), "2" (Linear): keys net.0.proj.*, net.2.*.
  net = register_module("net", torch::nn::ModuleList(act, torch::nn::Identity(), out));
}

torch::Tensor FluxFeedForwardImpl::forward(const torch::Tensor& x) { return out(torch::gelu(proj(x), "tanh")); }

FluxAttentionImpl::FluxAttentionImpl(int64_t dim, int64_t heads_, int64_t head_dim_, bool added, bool with_out)
    : heads(heads_), head_dim(head_dim_) {
  const int64_t inner = heads * head_dim;
  norm_q = register_module("norm_q", FluxRMSNorm(head_dim, 1e-6));
  norm_k = register_module("norm_k", FluxRMSNorm(head_dim, 1e-6));
  to_q = register_module("to_q", LoRALinear(dim, inner));
  to_k = register_module("to_k", LoRALinear(dim, inner));
  to_v = register_module("to_v", LoRALinear(dim, inner));
  if (with_out) {
    to_out_0 = LoRALinear(inner, dim);
    to_out = register_module("to_out", torch::nn::ModuleList(to_out_0));  // to_out.1 is a dropout
  }
  if (added) {
    norm_added_q = register_module("norm_added_q", FluxRMSNorm(head_dim, 1e-6));
    norm_added_k = register_module("norm_added_k", FluxRMSNorm(head_dim, 1e-6));
    add_q_proj = register_module("add_q_proj", LoRALinear(dim, inner));
    add_k_proj = register_module("add_k_proj", LoRALinear(dim, inner));
    add_v_proj = register_module("add_v_proj", LoRALinear(dim, inner));
    to_add_out = register_module("to_add_out", LoRALinear(inner, dim));
  }
}

std::vector<torch::Tensor> FluxAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& ctx,
                                                      const torch::Tensor& cos, const torch::Tensor& sin) {
  auto split = [&](const torch::Tensor& t) { return t.unflatten(-1, {heads, head_dim}); };  // (B, S, H, d)
  torch::Tensor q = norm_q(split(to_q(x))), k = norm_k(split(to_k(x))), v = split(to_v(x));
  const bool joint = ctx.defined();
  if (joint) {  // text tokens first
    q = torch::cat({norm_added_q(split(add_q_proj(ctx))), q}, 1);
    k = torch::cat({norm_added_k(split(add_k_proj(ctx))), k}, 1);
    v = torch::cat({split(add_v_proj(ctx)), v}, 1);
  }
  q = flux_apply_rope(q, cos, sin);
  k = flux_apply_rope(k, cos, sin);
  torch::Tensor o = flux_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));  // (B, H, S, d)
  o = o.transpose(1, 2).flatten(2, 3).to(q.scalar_type());
  if (!joint) return {o};
  const int64_t L = ctx.size(1);
  return {to_out_0(o.narrow(1, L, o.size(1) - L).contiguous()), to_add_out(o.narrow(1, 0, L).contiguous())};
}

FluxDoubleBlockImpl::FluxDoubleBlockImpl(int64_t dim, int64_t heads, int64_t head_dim) {
  norm1 = register_module("norm1", FluxAdaNorm(dim, 6));
  norm1_context = register_module("norm1_context", FluxAdaNorm(dim, 6));
  attn = register_module("attn", FluxAttention(dim, heads, head_dim, /*added=*/true, /*with_out=*/true));
  ff = register_module("ff", FluxFeedForward(dim, 4 * dim));
  ff_context = register_module("ff_context", FluxFeedForward(dim, 4 * dim));
}

std::vector<torch::Tensor> FluxDoubleBlockImpl::forward(const torch::Tensor& img, const torch::Tensor& txt,
                                                        const torch::Tensor& temb, const torch::Tensor& cos,
                                                        const torch::Tensor& sin) {
  // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  const std::vector<torch::Tensor> m = norm1(temb).chunk(6, 1);
  const std::vector<torch::Tensor> c = norm1_context(temb).chunk(6, 1);
  const std::vector<torch::Tensor> a =
      attn(modulate(layer_norm(img), m[0], m[1]), modulate(layer_norm(txt), c[0], c[1]), cos, sin);
  torch::Tensor x = img + m[2].unsqueeze(1) * a[0];
  x = x + m[5].unsqueeze(1) * ff(modulate(layer_norm(x), m[3], m[4]));
  torch::Tensor t = txt + c[2].unsqueeze(1) * a[1];
  t = t + c[5].unsqueeze(1) * ff_context(modulate(layer_norm(t), c[3], c[4]));
  return {x, clip_fp16(t)};
}

FluxSingleBlockImpl::FluxSingleBlockImpl(int64_t dim, int64_t heads, int64_t head_dim) {
  norm = register_module("norm", FluxAdaNorm(dim, 3));
  proj_mlp = register_module("proj_mlp", LoRALinear(dim, 4 * dim));
  proj_out = register_module("proj_out", LoRALinear(dim + 4 * dim, dim));
  attn = register_module("attn", FluxAttention(dim, heads, head_dim, /*added=*/false, /*with_out=*/false));
}

torch::Tensor FluxSingleBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb, const torch::Tensor& cos,
                                           const torch::Tensor& sin) {
  const std::vector<torch::Tensor> m = norm(temb).chunk(3, 1);  // shift, scale, gate
  const torch::Tensor h = modulate(layer_norm(x), m[0], m[1]);
  const torch::Tensor mlp = torch::gelu(proj_mlp(h), "tanh");
  const torch::Tensor a = attn(h, torch::Tensor(), cos, sin)[0];
  return clip_fp16(x + m[2].unsqueeze(1) * proj_out(torch::cat({a, mlp}, 2)));
}

FluxTransformerImpl::FluxTransformerImpl(const FluxConfig& cfg) : config(cfg) {
  cfg.validate();
  const int64_t D = cfg.inner_dim();
  time_text_embed = register_module("time_text_embed", FluxTimeTextEmbed(D, cfg.pooled_projection_dim, cfg.guidance_embeds));
  context_embedder = register_module("context_embedder", LoRALinear(cfg.joint_attention_dim, D));
  x_embedder = register_module("x_embedder", LoRALinear(cfg.in_channels, D));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_layers; ++i)
    transformer_blocks->push_back(FluxDoubleBlock(D, cfg.num_attention_heads, cfg.attention_head_dim));
  single_transformer_blocks = register_module("single_transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_single_layers; ++i)
    single_transformer_blocks->push_back(FluxSingleBlock(D, cfg.num_attention_heads, cfg.attention_head_dim));
  norm_out = register_module("norm_out", FluxAdaNorm(D, 2));
  proj_out = register_module("proj_out", LoRALinear(D, cfg.proj_out_dim()));
}

torch::Tensor FluxTransformerImpl::features(const torch::Tensor& hidden_states,
                                            const torch::Tensor& encoder_hidden_states, const torch::Tensor& pooled,
                                            const torch::Tensor& sigma, const torch::Tensor& guidance,
                                            const torch::Tensor& img_ids, const torch::Tensor& txt_ids,
                                            torch::Tensor* temb_out) {
  const FluxConfig& c = config;
  const auto dt = dtype();
  const auto dev = device();
  if (hidden_states.dim() != 3 || hidden_states.size(2) != c.in_channels)
    throw std::invalid_argument("FLUX transformer: hidden_states must be (B, N, " + std::to_string(c.in_channels) +
                                "), got " + c10::str(hidden_states.sizes()));
  const int64_t B = hidden_states.size(0), N = hidden_states.size(1);
  if (encoder_hidden_states.dim() != 3 || encoder_hidden_states.size(0) != B ||
      encoder_hidden_states.size(2) != c.joint_attention_dim)
    throw std::invalid_argument("FLUX transformer: encoder_hidden_states must be (" + std::to_string(B) + ", L, " +
                                std::to_string(c.joint_attention_dim) + "), got " +
                                c10::str(encoder_hidden_states.sizes()));
  const int64_t L = encoder_hidden_states.size(1);
  if (pooled.dim() != 2 || pooled.size(0) != B || pooled.size(1) != c.pooled_projection_dim)
    throw std::invalid_argument("FLUX transformer: pooled must be (" + std::to_string(B) + ", " +
                                std::to_string(c.pooled_projection_dim) + "), got " + c10::str(pooled.sizes()));
  if (img_ids.dim() != 2 || img_ids.size(0) != N || img_ids.size(1) != 3 || txt_ids.dim() != 2 ||
      txt_ids.size(0) != L || txt_ids.size(1) != 3)
    throw std::invalid_argument("FLUX transformer: img_ids must be (" + std::to_string(N) + ", 3) and txt_ids (" +
                                std::to_string(L) + ", 3), got " + c10::str(img_ids.sizes()) + " and " +
                                c10::str(txt_ids.sizes()));
  if (c.guidance_embeds != guidance.defined())
    throw std::invalid_argument(c.guidance_embeds
                                    ? "FLUX transformer: this model has guidance_embeds: pass a guidance value"
                                    : "FLUX transformer: this model has no guidance embedding: pass no guidance");

  torch::Tensor img = x_embedder(hidden_states.to(dev, dt));
  // As diffusers: the timestep (and guidance) is rounded to the compute dtype, then times 1000.
  const torch::Tensor t = per_sample(sigma, B, "sigma").to(dev, dt) * 1000;
  const torch::Tensor g = guidance.defined() ? per_sample(guidance, B, "guidance").to(dev, dt) * 1000 : torch::Tensor();
  const torch::Tensor temb = time_text_embed(t, g, pooled.to(dev, dt));
  torch::Tensor txt = context_embedder(encoder_hidden_states.to(dev, dt));
  const auto rope = flux_rope(torch::cat({txt_ids.to(dev), img_ids.to(dev)}, 0), c.axes_dims_rope);

  const bool recompute = checkpoint_blocks && is_training() && torch::GradMode::is_enabled();
  for (const auto& block : *transformer_blocks) {
    auto* b = block->as<FluxDoubleBlockImpl>();
    const BlockFn fn = [b, rope](const std::vector<torch::Tensor>& in) {
      return b->forward(in[0], in[1], in[2], rope[0], rope[1]);
    };
    const auto out = recompute ? checkpointed(fn, {img, txt, temb}) : fn({img, txt, temb});
    img = out[0];
    txt = out[1];
  }
  torch::Tensor x = torch::cat({txt, img}, 1);
  for (const auto& block : *single_transformer_blocks) {
    auto* b = block->as<FluxSingleBlockImpl>();
    const BlockFn fn = [b, rope](const std::vector<torch::Tensor>& in) {
      return std::vector<torch::Tensor>{b->forward(in[0], in[1], rope[0], rope[1])};
    };
    x = (recompute ? checkpointed(fn, {x, temb}) : fn({x, temb}))[0];
  }
  img = x.narrow(1, L, N);

  const std::vector<torch::Tensor> m = norm_out(temb).chunk(2, 1);  // scale, shift (this order)
  if (temb_out != nullptr) *temb_out = temb;
  return modulate(layer_norm(img), m[1], m[0]);
}

torch::Tensor FluxTransformerImpl::forward(const torch::Tensor& hidden_states,
                                           const torch::Tensor& encoder_hidden_states, const torch::Tensor& pooled,
                                           const torch::Tensor& sigma, const torch::Tensor& guidance,
                                           const torch::Tensor& img_ids, const torch::Tensor& txt_ids) {
  return proj_out(features(hidden_states, encoder_hidden_states, pooled, sigma, guidance, img_ids, txt_ids));
}

}  // namespace arcflow
