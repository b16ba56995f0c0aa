// Implementation of arcflow/models/flux/flux_network.h.
#include "arcflow/models/flux/flux_network.h"

#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/models/param_init.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/weights.h"

namespace arcflow {
namespace {

std::string shape_str(const torch::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

FluxNetwork::FluxNetwork(FluxTransformer t, int64_t latent_height, int64_t latent_width)
    : transformer(std::move(t)), h_(0), w_(0) {
  if (transformer->config.in_channels % 4 != 0)
    throw std::invalid_argument("FLUX: in_channels " + std::to_string(transformer->config.in_channels) +
                                " is not 4 x latent channels (2x2 packing)");
  if (transformer->config.patch_size != 1)
    throw std::invalid_argument("FLUX: patch_size " + std::to_string(transformer->config.patch_size) +
                                " is not supported (FLUX.1 uses 1; the 2x2 packing is the pipeline's)");
  set_latent_size(latent_height, latent_width);
}

void FluxNetwork::set_latent_size(int64_t h, int64_t w) {
  if (h <= 0 || w <= 0 || h % 2 != 0 || w % 2 != 0)
    throw std::invalid_argument("FLUX: the latent must have even height and width > 0, got " + std::to_string(h) +
                                " x " + std::to_string(w));
  h_ = h;
  w_ = w;
}

void FluxNetwork::check_condition(const Condition& c, int64_t batch) const {
  if (c.has("labels")) return check_class_condition(c, batch);
  const FluxConfig& cfg = transformer->config;
  const auto need = [&](const char* key) {
    if (!c.has(key))
      throw std::invalid_argument(std::string("FLUX: the condition lacks '") + key +
                                  "' (prompt_embeds, pooled_prompt_embeds" +
                                  (cfg.guidance_embeds ? ", guidance" : "") + " are required)");
    return c.at(key);
  };
  const torch::Tensor p = need("prompt_embeds"), q = need("pooled_prompt_embeds");
  if (p.dim() != 3 || p.size(0) != batch || p.size(2) != cfg.joint_attention_dim)
    throw std::invalid_argument("FLUX: prompt_embeds must be (" + std::to_string(batch) + ", L, " +
                                std::to_string(cfg.joint_attention_dim) + "), got " + shape_str(p));
  if (q.dim() != 2 || q.size(0) != batch || q.size(1) != cfg.pooled_projection_dim)
    throw std::invalid_argument("FLUX: pooled_prompt_embeds must be (" + std::to_string(batch) + ", " +
                                std::to_string(cfg.pooled_projection_dim) + "), got " + shape_str(q));
  if (cfg.guidance_embeds) {
    const torch::Tensor g = need("guidance");
    if (g.dim() != 1 || g.size(0) != batch)
      throw std::invalid_argument("FLUX: guidance must be (" + std::to_string(batch) + "), got " + shape_str(g));
  } else if (c.has("guidance")) {
    throw std::invalid_argument("FLUX: this model has no guidance embedding (a schnell-like config); "
                                "the condition must not carry 'guidance'");
  }
  for (const auto& [key, t] : c.tensors())
    if (key != "prompt_embeds" && key != "pooled_prompt_embeds" && key != "guidance")
      throw std::invalid_argument("FLUX: unknown condition key '" + key + "'");
}

FluxNetwork::Inputs FluxNetwork::inputs(const torch::Tensor& x, const Condition& c_in) const {
  if (x.dim() != 4 || x.size(1) != latent_channels() || x.size(2) % 2 != 0 || x.size(3) % 2 != 0)
    throw std::invalid_argument("FLUX: x must be (B, " + std::to_string(latent_channels()) +
                                ", h, w) with h and w even, got " + shape_str(x));
  check_condition(c_in, x.size(0));
  const Condition c = c_in.has("labels") ? class_prompt_condition(c_in) : c_in;
  const torch::Device dev = device();
  Inputs in;
  in.tokens = pack_latents(x);
  in.prompt = c.at("prompt_embeds").to(dev);
  in.pooled = c.at("pooled_prompt_embeds").to(dev);
  if (transformer->config.guidance_embeds) in.guidance = c.at("guidance").to(dev, torch::kFloat32);
  in.img_ids = latent_image_ids(x.size(2) / 2, x.size(3) / 2, dev);
  in.txt_ids = text_ids(in.prompt.size(1), dev);
  return in;
}

torch::Tensor FluxNetwork::velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
  const Inputs in = inputs(x, c);
  const torch::Tensor v =
      transformer->forward(in.tokens, in.prompt, in.pooled, sigma, in.guidance, in.img_ids, in.txt_ids);
  return unpack_latents(v, x.size(2), x.size(3)).to(x.scalar_type());
}

void FluxNetwork::set_prompt_pool(const FluxPromptEmbeddings& e, double guidance) {
  const FluxConfig& cfg = transformer->config;
  if (e.size() < 1 || e.prompt_embeds.dim() != 3 || e.prompt_embeds.size(2) != cfg.joint_attention_dim)
    throw std::invalid_argument("FLUX prompt pool: prompt_embeds must be (N >= 1, L, " +
                                std::to_string(cfg.joint_attention_dim) + ")");
  if (e.pooled_prompt_embeds.dim() != 2 || e.pooled_prompt_embeds.size(0) != e.size() ||
      e.pooled_prompt_embeds.size(1) != cfg.pooled_projection_dim)
    throw std::invalid_argument("FLUX prompt pool: pooled_prompt_embeds must be (" + std::to_string(e.size()) + ", " +
                                std::to_string(cfg.pooled_projection_dim) + ")");
  pool_ = e;
  pool_guidance_ = guidance;
  text_tokens_ = e.prompt_embeds.size(1);
}

Condition FluxNetwork::random_condition(int64_t batch, at::Generator& gen) const {
  if (pool_.size() == 0 && classes_.size() > 0) return Network::random_condition(batch, gen);
  if (pool_.size() == 0)
    throw std::invalid_argument("FLUX: no prompts to distil from (pass --prompts FILE: pre-encoded prompts)");
  const torch::Tensor idx = torch::randint(pool_.size(), {batch}, gen, torch::kLong);
  std::vector<int64_t> rows(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + batch);
  return flux_condition(pool_, rows, transformer->config.guidance_embeds, pool_guidance_);
}

NetworkPtr FluxNetwork::copy_network() {
  FluxTransformer m{nullptr};
  {
    DefaultDtypeGuard dtype(transformer->dtype());
    ParamInitGuard uninitialised(device());
    m = FluxTransformer(transformer->config);
  }
  copy_state(*transformer, *m);
  m->train(transformer->is_training());
  auto net = std::make_shared<FluxNetwork>(m, h_, w_);
  net->text_tokens_ = text_tokens_;
  net->pool_ = pool_;
  net->pool_guidance_ = pool_guidance_;
  net->classes_ = classes_;
  return net;
}

HeadInput FluxNetwork::head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
  const Inputs in = inputs(x, c);
  HeadInput out;
  out.tokens = transformer->features(in.tokens, in.prompt, in.pooled, sigma, in.guidance, in.img_ids, in.txt_ids,
                                     &out.embedding);
  // Student heads are float32 (ARCFLOW.md section 7: the policy in float32 over a BF16 network).
  out.tokens = out.tokens.to(torch::kFloat32);
  out.embedding = out.embedding.to(torch::kFloat32);
  return out;
}

HeadLayout FluxNetwork::head_layout() const {
  HeadLayout l;
  l.feature_dim = transformer->config.inner_dim();
  l.embed_dim = transformer->config.inner_dim();
  l.pixels = 4;  // a token is a 2x2 patch of latent pixels
  l.channels = latent_channels();
  // FLUX orders a token's values (value, py, px) as proj_out does: per component k, `per` values for
  // each of the 4 pixels, value-major, so that a head initialised from proj_out reads like it.
  const int64_t h = h_, w = w_;
  l.to_sample = [h, w](const torch::Tensor& tokens, int64_t K, int64_t per) {
    const int64_t B = tokens.size(0), N = tokens.size(1);
    const torch::Tensor by_k = tokens.reshape({B, N, K, 4 * per}).permute({0, 2, 1, 3}).reshape({B * K, N, 4 * per});
    return unpack_latents(by_k, h, w).reshape({B, K, per, h, w});
  };
  return l;
}

std::vector<std::string> FluxNetwork::default_lora_targets() const {
  return {"single_transformer_blocks.*.proj_mlp",  "single_transformer_blocks.*.proj_out",
          "transformer_blocks.*.ff.net.0.proj",    "transformer_blocks.*.ff.net.2",
          "transformer_blocks.*.ff_context.net.0.proj", "transformer_blocks.*.ff_context.net.2",
          "time_text_embed.timestep_embedder.linear_1", "time_text_embed.timestep_embedder.linear_2"};
}

double FluxNetwork::forward_memory_bytes(int64_t batch, bool for_backward) const {
  const torch::ScalarType dtype = transformer->parameters().empty() ? torch::kFloat32
                                                                     : transformer->parameters().front().scalar_type();
  return flux_forward_memory_bytes(transformer->config, batch, image_tokens(), text_tokens_, c10::elementSize(dtype),
                                   for_backward, transformer->checkpoint_blocks);
}

double FluxNetwork::forward_flops(int64_t batch) const {
  return flux_forward_flops(transformer->config, batch, image_tokens(), text_tokens_);
}

// ----------------------------------------------------------------------------------- loading

GuidanceKind FluxNetwork::guidance_kind() const {
  if (has_null_condition()) return GuidanceKind::classifier_free;
  return transformer->config.guidance_embeds ? GuidanceKind::distilled : GuidanceKind::none;
}

NetworkPtr load_flux_folder(const std::string& dir, torch::Device device, torch::ScalarType dtype) {
  return std::make_shared<FluxNetwork>(load_flux_transformer(transformer_folder(dir), dtype, device));
}

NetworkPtr load_flux_network(const io::SafetensorsFile& f, const std::string& path, torch::Device device) {
  const nlohmann::json j = described_config(f, path, "flux");
  FluxConfig cfg;
  try {
    cfg = FluxConfig::from_json(j);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": config: " + e.what());
  }
  check_state_size(f, path, flux_parameter_count(cfg));
  FluxTransformer m{nullptr};
  {
    ParamInitGuard uninitialised(torch::kCPU);
    m = FluxTransformer(cfg);
  }
  load_state(*m, f.tensors, path);
  m->to(device);
  auto net = std::make_shared<FluxNetwork>(m);
  net->read_extra_metadata(f.metadata, path);
  return net;
}

NetworkPtr create_flux_network(const nlohmann::json& config) {
  return std::make_shared<FluxNetwork>(FluxTransformer(FluxConfig::from_json(config)));
}

NetworkPtr random_flux_network(const FluxConfig& cfg, torch::Device device, torch::ScalarType dtype, uint64_t seed,
                               double std) {
  cfg.validate();
  FluxTransformer m{nullptr};
  {
    DefaultDtypeGuard scope(dtype);
    ParamInitGuard uninitialised(device);
    m = FluxTransformer(cfg);
  }
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : m->named_parameters(true)) {
    const std::string& k = p.key();
    torch::Tensor t = p.value();
    t.set_requires_grad(false);
    if (k.size() >= 5 && k.compare(k.size() - 5, 5, ".bias") == 0) {
      t.zero_();
    } else if (t.dim() == 1) {
      t.fill_(1.0);  // RMSNorm weights
    } else if (device.is_cpu()) {
      t.copy_(torch::randn(t.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32)) * std);
    } else {
      t.normal_(0.0, std);  // on the accelerator's own generator: no host copy of 12B values
    }
  }
  m->eval();
  return std::make_shared<FluxNetwork>(m);
}

Condition flux_condition(const FluxPromptEmbeddings& e, const std::vector<int64_t>& rows, bool with_guidance,
                         double guidance) {
  const torch::Tensor idx = torch::tensor(rows, torch::kLong);
  Condition c;
  c.set("prompt_embeds", e.prompt_embeds.index_select(0, idx));
  c.set("pooled_prompt_embeds", e.pooled_prompt_embeds.index_select(0, idx));
  if (with_guidance)
    c.set("guidance", torch::full({static_cast<int64_t>(rows.size())}, guidance, torch::kFloat32));
  return c;
}

}  // namespace arcflow
