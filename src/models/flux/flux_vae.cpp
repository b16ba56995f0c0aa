// Implementation of arcflow/models/flux/flux_vae.h.
#include "arcflow/models/flux/flux_vae.h"

#include <cmath>
#include <set>
#include <stdexcept>

#include "arcflow/models/flux/flux.h"  // flux_attention

namespace arcflow {

// ----------------------------------------------------------------------------------- config

void FluxVaeConfig::validate() const {
  auto positive = [](const char* key, int64_t v) {
    if (v <= 0)
      throw std::invalid_argument(std::string("VAE config: '") + key + "' must be > 0 (got " + std::to_string(v) + ")");
  };
  // Upper bounds far above published VAEs (FLUX.1: 2 layers per block, 512 channels) that keep a
  // hostile config.json from asking for a table of a billion layers.
  auto at_most = [](const char* key, int64_t v, int64_t hi) {
    if (v > hi)
      throw std::invalid_argument(std::string("VAE config: '") + key + "' must be at most " + std::to_string(hi) +
                                  " (got " + std::to_string(v) + ")");
  };
  positive("in_channels", in_channels);
  positive("out_channels", out_channels);
  positive("layers_per_block", layers_per_block);
  positive("latent_channels", latent_channels);
  positive("norm_num_groups", norm_num_groups);
  at_most("in_channels", in_channels, 1 << 12);
  at_most("out_channels", out_channels, 1 << 12);
  at_most("layers_per_block", layers_per_block, 64);
  at_most("latent_channels", latent_channels, 1 << 12);
  if (block_out_channels.empty() || block_out_channels.size() > 16)
    throw std::invalid_argument("VAE config: 'block_out_channels' must have 1 to 16 entries, got " +
                                std::to_string(block_out_channels.size()));
  for (int64_t c : block_out_channels) {
    positive("block_out_channels", c);
    at_most("block_out_channels", c, 1 << 16);
    if (c % norm_num_groups != 0)
      throw std::invalid_argument("VAE config: 'block_out_channels' entry " + std::to_string(c) +
                                  " is not divisible by 'norm_num_groups' (" + std::to_string(norm_num_groups) + ")");
  }
  if (!std::isfinite(scaling_factor) || scaling_factor == 0)
    throw std::invalid_argument("VAE config: 'scaling_factor' must be finite and non-zero");
  if (!std::isfinite(shift_factor)) throw std::invalid_argument("VAE config: 'shift_factor' must be finite");
}

FluxVaeConfig FluxVaeConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("VAE config: expected a JSON object, got " + j.dump());
  if (j.contains("_class_name")) {
    const auto& c = j["_class_name"];
    if (!c.is_string() || c.get<std::string>() != "AutoencoderKL")
      throw std::invalid_argument("VAE config: '_class_name' is " + c.dump() + ", expected \"AutoencoderKL\"");
  }
  static const std::set<std::string> known = {
      "in_channels",     "out_channels",  "down_block_types", "up_block_types", "block_out_channels",
      "layers_per_block", "act_fn",       "latent_channels",  "norm_num_groups", "sample_size",
      "scaling_factor",  "shift_factor",  "latents_mean",     "latents_std",    "force_upcast",
      "use_quant_conv",  "use_post_quant_conv", "mid_block_add_attention"};
  for (const auto& item : j.items())
    if (item.key().rfind('_', 0) != 0 && known.count(item.key()) == 0)
      throw std::invalid_argument("VAE config: unknown key '" + item.key() + "'");
  auto integer = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return;
    const auto& v = j[key];
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > (1ull << 40)))
      throw std::invalid_argument(std::string("VAE config: '") + key + "' must be an integer, got " + v.dump());
    out = v.get<int64_t>();
  };
  auto boolean = [&](const char* key, bool& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_boolean())
      throw std::invalid_argument(std::string("VAE config: '") + key + "' must be true or false, got " + j[key].dump());
    out = j[key].get<bool>();
  };
  auto number = [&](const char* key, double& out, bool nullable) {
    if (!j.contains(key) || (nullable && j[key].is_null())) return;
    if (!j[key].is_number())
      throw std::invalid_argument(std::string("VAE config: '") + key + "' must be a number, got " + j[key].dump());
    out = j[key].get<double>();
  };
  auto strings = [&](const char* key, size_t default_size) -> std::vector<std::string> {
    if (!j.contains(key)) return std::vector<std::string>(default_size, "");
    const auto& v = j[key];
    std::vector<std::string> out;
    if (!v.is_array()) throw std::invalid_argument(std::string("VAE config: '") + key + "' must be a list, got " + v.dump());
    for (const auto& s : v) {
      if (!s.is_string())
        throw std::invalid_argument(std::string("VAE config: '") + key + "' must hold strings, got " + v.dump());
      out.push_back(s.get<std::string>());
    }
    return out;
  };
  FluxVaeConfig c;
  integer("in_channels", c.in_channels);
  integer("out_channels", c.out_channels);
  integer("layers_per_block", c.layers_per_block);
  integer("latent_channels", c.latent_channels);
  integer("norm_num_groups", c.norm_num_groups);
  if (j.contains("block_out_channels")) {
    const auto& v = j["block_out_channels"];
    if (!v.is_array()) throw std::invalid_argument("VAE config: 'block_out_channels' must be a list, got " + v.dump());
    c.block_out_channels.clear();
    for (const auto& x : v) {
      if (!x.is_number_integer())
        throw std::invalid_argument("VAE config: 'block_out_channels' must hold integers, got " + v.dump());
      c.block_out_channels.push_back(x.get<int64_t>());
    }
  }
  number("scaling_factor", c.scaling_factor, false);
  number("shift_factor", c.shift_factor, true);
  boolean("use_post_quant_conv", c.use_post_quant_conv);
  boolean("mid_block_add_attention", c.mid_block_add_attention);
  bool unused = false;
  boolean("use_quant_conv", unused);
  boolean("force_upcast", unused);
  if (j.contains("act_fn") && !(j["act_fn"].is_string() && j["act_fn"].get<std::string>() == "silu"))
    throw std::invalid_argument("VAE config: 'act_fn' " + j["act_fn"].dump() + " is not supported (only \"silu\")");
  const size_t n = c.block_out_channels.size();
  const std::vector<std::string> up = j.contains("up_block_types") ? strings("up_block_types", 0)
                                                                   : std::vector<std::string>{"UpDecoderBlock2D"};
  if (up.size() != n)
    throw std::invalid_argument("VAE config: 'up_block_types' has " + std::to_string(up.size()) +
                                " entries but 'block_out_channels' has " + std::to_string(n));
  for (const auto& t : up)
    if (t != "UpDecoderBlock2D")
      throw std::invalid_argument("VAE config: 'up_block_types' entry \"" + t + "\" is not supported (only UpDecoderBlock2D)");
  if (j.contains("down_block_types")) {
    const auto down = strings("down_block_types", 0);
    if (down.size() != n)
      throw std::invalid_argument("VAE config: 'down_block_types' has " + std::to_string(down.size()) +
                                  " entries but 'block_out_channels' has " + std::to_string(n));
  }
  for (const char* key : {"latents_mean", "latents_std"})
    if (j.contains(key) && !j[key].is_null() && !j[key].is_array())
      throw std::invalid_argument(std::string("VAE config: '") + key + "' must be null or a list");
  if (j.contains("sample_size") && !j["sample_size"].is_number_integer() && !j["sample_size"].is_array())
    throw std::invalid_argument("VAE config: 'sample_size' must be an integer or a list");
  c.validate();
  return c;
}

FluxVaeConfig FluxVaeConfig::flux1() {
  FluxVaeConfig c;
  c.block_out_channels = {128, 256, 512, 512};
  c.layers_per_block = 2;
  c.latent_channels = 16;
  c.norm_num_groups = 32;
  c.scaling_factor = 0.3611;
  c.shift_factor = 0.1159;
  c.use_post_quant_conv = false;
  return c;
}

bool is_vae_encoder_key(const std::string& key) {
  return key.rfind("encoder.", 0) == 0 || key.rfind("quant_conv.", 0) == 0;
}

std::map<std::string, std::vector<int64_t>> flux_vae_state_shapes(const FluxVaeConfig& cfg) {
  cfg.validate();
  std::map<std::string, std::vector<int64_t>> s;
  auto conv = [&](const std::string& name, int64_t in, int64_t out, int64_t k) {
    s[name + ".weight"] = {out, in, k, k};
    s[name + ".bias"] = {out};
  };
  auto vec = [&](const std::string& name, int64_t c) {
    s[name + ".weight"] = {c};
    s[name + ".bias"] = {c};
  };
  auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    s[name + ".weight"] = {out, in};
    s[name + ".bias"] = {out};
  };
  auto resnet = [&](const std::string& name, int64_t in, int64_t out) {
    vec(name + ".norm1", in);
    conv(name + ".conv1", in, out, 3);
    vec(name + ".norm2", out);
    conv(name + ".conv2", out, out, 3);
    if (in != out) conv(name + ".conv_shortcut", in, out, 1);
  };
  const int64_t Z = cfg.latent_channels, n = static_cast<int64_t>(cfg.block_out_channels.size());
  const int64_t C = cfg.block_out_channels.back();
  if (cfg.use_post_quant_conv) conv("post_quant_conv", Z, Z, 1);
  conv("decoder.conv_in", Z, C, 3);
  resnet("decoder.mid_block.resnets.0", C, C);
  resnet("decoder.mid_block.resnets.1", C, C);
  if (cfg.mid_block_add_attention) {
    vec("decoder.mid_block.attentions.0.group_norm", C);
    for (const char* p : {"to_q", "to_k", "to_v", "to_out.0"}) linear(std::string("decoder.mid_block.attentions.0.") + p, C, C);
  }
  int64_t prev = C;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out = cfg.block_out_channels[static_cast<size_t>(n - 1 - i)];
    const std::string b = "decoder.up_blocks." + std::to_string(i);
    for (int64_t r = 0; r <= cfg.layers_per_block; ++r) resnet(b + ".resnets." + std::to_string(r), r == 0 ? prev : out, out);
    if (i < n - 1) conv(b + ".upsamplers.0.conv", out, out, 3);
    prev = out;
  }
  vec("decoder.conv_norm_out", cfg.block_out_channels.front());
  conv("decoder.conv_out", cfg.block_out_channels.front(), cfg.out_channels, 3);
  return s;
}

// ----------------------------------------------------------------------------------- modules

namespace {

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(1e-6).affine(true));
}

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(1).padding(k / 2).bias(true));
}

// Upsample2D's container: a module whose only child is `conv`.
class UpsamplerImpl : public torch::nn::Module {
 public:
  explicit UpsamplerImpl(int64_t channels) { conv_ = register_module("conv", conv(channels, channels, 3)); }
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsampler);

}  // namespace

VaeResnetBlockImpl::VaeResnetBlockImpl(int64_t in, int64_t out, int64_t groups) {
  norm1 = register_module("norm1", group_norm(groups, in));
  conv1 = register_module("conv1", conv(in, out, 3));
  norm2 = register_module("norm2", group_norm(groups, out));
  conv2 = register_module("conv2", conv(out, out, 3));
  if (in != out) conv_shortcut = register_module("conv_shortcut", conv(in, out, 1));
}

torch::Tensor VaeResnetBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv1(torch::silu(norm1(x)));
  h = conv2(torch::silu(norm2(h)));
  return (conv_shortcut ? conv_shortcut(x) : x) + h;
}

VaeAttentionImpl::VaeAttentionImpl(int64_t channels, int64_t groups) {
  group_norm = register_module("group_norm", arcflow::group_norm(groups, channels));
  to_q = register_module("to_q", LoRALinear(channels, channels));
  to_k = register_module("to_k", LoRALinear(channels, channels));
  to_v = register_module("to_v", LoRALinear(channels, channels));
  to_out_0 = LoRALinear(channels, channels);
  to_out = register_module("to_out", torch::nn::ModuleList(to_out_0));
}

torch::Tensor VaeAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const torch::Tensor h = group_norm(x).reshape({B, C, H * W}).transpose(1, 2);  // (B, HW, C)
  // One head of width C: (B, 1, HW, C).
  const torch::Tensor o = flux_attention(to_q(h).unsqueeze(1), to_k(h).unsqueeze(1), to_v(h).unsqueeze(1)).squeeze(1);
  return to_out_0(o.to(h.scalar_type())).transpose(1, 2).reshape({B, C, H, W}) + x;
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups, bool attention) {
  resnets = register_module("resnets", torch::nn::ModuleList(VaeResnetBlock(channels, channels, groups),
                                                              VaeResnetBlock(channels, channels, groups)));
  attentions = register_module("attentions", torch::nn::ModuleList());
  if (attention) attentions->push_back(VaeAttention(channels, groups));
}

torch::Tensor VaeMidBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = resnets[0]->as<VaeResnetBlockImpl>()->forward(x);
  if (!attentions->is_empty()) h = attentions[0]->as<VaeAttentionImpl>()->forward(h);
  return resnets[1]->as<VaeResnetBlockImpl>()->forward(h);
}

VaeUpBlockImpl::VaeUpBlockImpl(int64_t in, int64_t out, int64_t num_resnets, int64_t groups, bool upsample) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t r = 0; r < num_resnets; ++r) resnets->push_back(VaeResnetBlock(r == 0 ? in : out, out, groups));
  if (upsample) {
    Upsampler u(out);
    upsample_conv = u->conv_;
    upsamplers = register_module("upsamplers", torch::nn::ModuleList(u));
  }
}

torch::Tensor VaeUpBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (const auto& r : *resnets) h = r->as<VaeResnetBlockImpl>()->forward(h);
  if (upsample_conv) h = upsample_conv(torch::upsample_nearest2d(h, {2 * h.size(2), 2 * h.size(3)}));
  return h;
}

VaeDecoderNetImpl::VaeDecoderNetImpl(const FluxVaeConfig& cfg) {
  const auto& ch = cfg.block_out_channels;
  const int64_t n = static_cast<int64_t>(ch.size()), G = cfg.norm_num_groups;
  conv_in = register_module("conv_in", conv(cfg.latent_channels, ch.back(), 3));
  mid_block = register_module("mid_block", VaeMidBlock(ch.back(), G, cfg.mid_block_add_attention));
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  int64_t prev = ch.back();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out = ch[static_cast<size_t>(n - 1 - i)];
    up_blocks->push_back(VaeUpBlock(prev, out, cfg.layers_per_block + 1, G, i < n - 1));
    prev = out;
  }
  conv_norm_out = register_module("conv_norm_out", group_norm(G, ch.front()));
  conv_out = register_module("conv_out", conv(ch.front(), cfg.out_channels, 3));
}

torch::Tensor VaeDecoderNetImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_block(conv_in(z));
  for (const auto& b : *up_blocks) h = b->as<VaeUpBlockImpl>()->forward(h);
  return conv_out(torch::silu(conv_norm_out(h)));
}

FluxVaeDecoderImpl::FluxVaeDecoderImpl(const FluxVaeConfig& cfg) : config(cfg) {
  cfg.validate();
  if (cfg.use_post_quant_conv)
    post_quant_conv = register_module("post_quant_conv", conv(cfg.latent_channels, cfg.latent_channels, 1));
  decoder = register_module("decoder", VaeDecoderNet(cfg));
}

torch::Tensor FluxVaeDecoderImpl::forward(const torch::Tensor& z) {
  if (z.dim() != 4 || z.size(1) != config.latent_channels)
    throw std::invalid_argument("VAE decoder: latents must be (B, " + std::to_string(config.latent_channels) +
                                ", H, W), got " + c10::str(z.sizes()));
  torch::Tensor h = z.to(device(), dtype());
  if (post_quant_conv) h = post_quant_conv(h);
  return decoder(h);
}

torch::Tensor FluxVaeDecoderImpl::decode(const torch::Tensor& latents) {
  const torch::Tensor z = latents.to(device(), dtype());
  return forward(z / config.scaling_factor + config.shift_factor);
}

}  // namespace arcflow
