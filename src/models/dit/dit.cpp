// Implementation of arcflow/models/dit/dit.h (layout: ARCFLOW.md section 5).
#include "arcflow/models/dit/dit.h"

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/embedding.h"
#include "arcflow/models/weights.h"

namespace arcflow {

// ----------------------------------------------------------------------------------- config

void DiTConfig::validate() const {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) throw std::invalid_argument(std::string("DiT config: ") + name + " must be > 0 (got " + std::to_string(v) + ")");
  };
  positive("in_channels", in_channels);
  positive("image_size", image_size);
  positive("patch", patch);
  positive("width", width);
  positive("depth", depth);
  positive("heads", heads);
  positive("num_classes", num_classes);
  if (!(mlp_ratio > 0) || !std::isfinite(mlp_ratio) || mlp_hidden() < 1)
    throw std::invalid_argument("DiT config: mlp_ratio must be > 0 with int(width * mlp_ratio) >= 1 (got " +
                                std::to_string(mlp_ratio) + ")");
  if (image_size % patch != 0)
    throw std::invalid_argument("DiT config: image_size (" + std::to_string(image_size) +
                                ") must be a multiple of patch (" + std::to_string(patch) + ")");
  if (width % heads != 0)
    throw std::invalid_argument("DiT config: width (" + std::to_string(width) + ") must be a multiple of heads (" +
                                std::to_string(heads) + ")");
}

double DiTConfig::state_size() const {
  const double D = static_cast<double>(width), H = static_cast<double>(mlp_hidden()),
               T = static_cast<double>(token_dim()), N = static_cast<double>(num_tokens());
  const double F = static_cast<double>(TimestepEmbedderImpl::kFrequencyDim);
  const double embed = (T + 1) * D + N * D + (F + 1) * D + (D + 1) * D + static_cast<double>(num_classes + 1) * D;
  const double block = (D + 1) * 6 * D + (D + 1) * 3 * D + (D + 1) * D + (D + 1) * H + (H + 1) * D;
  const double out = (D + 1) * 2 * D + (D + 1) * T;
  return embed + static_cast<double>(depth) * block + out;
}

nlohmann::json DiTConfig::to_json() const {
  return {{"in_channels", in_channels}, {"image_size", image_size}, {"patch", patch},
          {"width", width},             {"depth", depth},           {"heads", heads},
          {"mlp_ratio", mlp_ratio},     {"num_classes", num_classes}};
}

DiTConfig DiTConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("DiT config: expected a JSON object, got " + j.dump());
  static const std::set<std::string> known = {"in_channels", "image_size", "patch",     "width",
                                              "depth",       "heads",      "mlp_ratio", "num_classes"};
  for (const auto& item : j.items())
    if (known.count(item.key()) == 0) throw std::invalid_argument("DiT config: unknown field '" + item.key() + "'");
  auto field = [&](const char* name) -> const nlohmann::json& {
    if (!j.contains(name)) throw std::invalid_argument(std::string("DiT config: missing field '") + name + "'");
    return j.at(name);
  };
  auto integer = [&](const char* name) {
    const nlohmann::json& v = field(name);
    if (!v.is_number_integer())
      throw std::invalid_argument(std::string("DiT config: field '") + name + "' must be an integer, got " + v.dump());
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw std::invalid_argument(std::string("DiT config: field '") + name + "' is too large");
    return v.get<int64_t>();
  };
  DiTConfig c;
  c.in_channels = integer("in_channels");
  c.image_size = integer("image_size");
  c.patch = integer("patch");
  c.width = integer("width");
  c.depth = integer("depth");
  c.heads = integer("heads");
  c.num_classes = integer("num_classes");
  const nlohmann::json& r = field("mlp_ratio");
  if (!r.is_number()) throw std::invalid_argument("DiT config: field 'mlp_ratio' must be a number, got " + r.dump());
  c.mlp_ratio = r.get<double>();
  c.validate();
  return c;
}

// ----------------------------------------------------------------------------------- pieces

torch::Tensor dit_layer_norm(const torch::Tensor& x) {
  return torch::layer_norm(x, {x.size(-1)}, /*weight=*/{}, /*bias=*/{}, /*eps=*/1e-6);
}

namespace {

// x * (1 + scale) + shift with per-sample (B, D) modulation broadcast over the tokens.
torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

void xavier_zero(LoRALinear& l) {
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(l->weight);
  l->bias.zero_();
}

void zero(LoRALinear& l) {
  torch::NoGradGuard no_grad;
  l->weight.zero_();
  l->bias.zero_();
}

// The fixed 2-D sin-cos table of the reference DiT (MAE's get_2d_sincos_pos_embed): for token
// (row i, column j) the first D/2 features are the 1-D table of j, the last D/2 those of i; the
// 1-D table of position q with d features is [sin(q w_k), cos(q w_k)], w_k = 10000^(-k / (d/2)).
torch::Tensor sincos_pos_embed(int64_t width, int64_t grid) {
  const int64_t quarter = width / 4;
  const torch::Tensor omega = torch::pow(10000.0, -torch::arange(quarter, torch::kFloat64) / quarter);
  const torch::Tensor pos = torch::arange(grid, torch::kFloat64);
  const torch::Tensor args = pos.unsqueeze(1) * omega.unsqueeze(0);       // (grid, D/4)
  const torch::Tensor table = torch::cat({args.sin(), args.cos()}, 1);    // (grid, D/2)
  const torch::Tensor cols = table.unsqueeze(0).expand({grid, grid, width / 2});  // [i][j] -> table[j]
  const torch::Tensor rows = table.unsqueeze(1).expand({grid, grid, width / 2});  // [i][j] -> table[i]
  return torch::cat({cols, rows}, 2).reshape({1, grid * grid, width}).to(torch::kFloat32);
}

}  // namespace

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t width) {
  linear_1 = register_module("linear_1", LoRALinear(kFrequencyDim, width));
  linear_2 = register_module("linear_2", LoRALinear(width, width));
  torch::NoGradGuard no_grad;
  for (LoRALinear* l : {&linear_1, &linear_2}) {
    (*l)->weight.normal_(0.0, 0.02);
    (*l)->bias.zero_();
  }
}

torch::Tensor TimestepEmbedderImpl::forward(const torch::Tensor& t) {
  const torch::Tensor f = timestep_embedding(t, kFrequencyDim).to(linear_1->weight.dtype());
  return linear_2(torch::silu(linear_1(f)));
}

AttentionImpl::AttentionImpl(int64_t width, int64_t heads_) : heads(heads_) {
  qkv = register_module("qkv", LoRALinear(width, 3 * width));
  proj = register_module("proj", LoRALinear(width, width));
  xavier_zero(qkv);
  xavier_zero(proj);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2), hd = D / heads;
  // (B, N, 3D) -> (3, B, heads, N, hd): chunks q, k, v of D each, every chunk split into heads.
  const torch::Tensor parts = qkv(x).reshape({B, N, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  const torch::Tensor q = parts[0], k = parts[1], v = parts[2];
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  // Softmax in float32 for half-precision inputs.
  const bool low = scores.scalar_type() == torch::kHalf || scores.scalar_type() == torch::kBFloat16;
  const torch::Tensor weights = low ? scores.softmax(-1, torch::kFloat32).to(scores.scalar_type()) : scores.softmax(-1);
  const torch::Tensor out = torch::matmul(weights, v).transpose(1, 2).reshape({B, N, D});
  return proj(out);
}

MlpImpl::MlpImpl(int64_t width, int64_t hidden) {
  fc1 = register_module("fc1", LoRALinear(width, hidden));
  fc2 = register_module("fc2", LoRALinear(hidden, width));
  xavier_zero(fc1);
  xavier_zero(fc2);
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x), "tanh")); }

DiTBlockImpl::DiTBlockImpl(int64_t width, int64_t heads, int64_t mlp_hidden) {
  modulation = LoRALinear(width, 6 * width);
  zero(modulation);  // adaLN-Zero
  // Sequential names its children "0" (SiLU) and "1" (the Linear): keys adaLN_modulation.1.*.
  adaLN_modulation = register_module("adaLN_modulation", torch::nn::Sequential(torch::nn::SiLU(), modulation));
  attn = register_module("attn", Attention(width, heads));
  mlp = register_module("mlp", Mlp(width, mlp_hidden));
}

torch::Tensor DiTBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& c) {
  // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  const std::vector<torch::Tensor> m = adaLN_modulation->forward(c).chunk(6, 1);
  const torch::Tensor h = x + m[2].unsqueeze(1) * attn(modulate(dit_layer_norm(x), m[0], m[1]));
  return h + m[5].unsqueeze(1) * mlp(modulate(dit_layer_norm(h), m[3], m[4]));
}

FinalNormImpl::FinalNormImpl(int64_t width) {
  linear = register_module("linear", LoRALinear(width, 2 * width));
  zero(linear);
}

torch::Tensor FinalNormImpl::forward(const torch::Tensor& x, const torch::Tensor& c) {
  const std::vector<torch::Tensor> m = linear(torch::silu(c)).chunk(2, 1);  // shift, scale
  return modulate(dit_layer_norm(x), m[0], m[1]);
}

// ----------------------------------------------------------------------------------- DiT

DiTImpl::DiTImpl(const DiTConfig& cfg) : config(cfg) {
  cfg.validate();
  const int64_t D = cfg.width, p = cfg.patch;
  x_embedder = register_module(
      "x_embedder", torch::nn::Conv2d(torch::nn::Conv2dOptions(cfg.in_channels, D, p).stride(p).bias(true)));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, cfg.num_tokens(), D}));
  t_embedder = register_module("t_embedder", TimestepEmbedder(D));
  y_embedder = register_module("y_embedder", torch::nn::Embedding(cfg.num_classes + 1, D));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(DiTBlock(D, cfg.heads, cfg.mlp_hidden()));
  norm_out = register_module("norm_out", FinalNorm(D));
  proj_out = register_module("proj_out", LoRALinear(D, cfg.token_dim()));
  zero(proj_out);  // adaLN-Zero

  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(x_embedder->weight.view({D, -1}));
  x_embedder->bias.zero_();
  y_embedder->weight.normal_(0.0, 0.02);
  if (D % 4 == 0)
    pos_embed.copy_(sincos_pos_embed(D, cfg.grid()));
  else
    pos_embed.normal_(0.0, 0.02);
}

torch::Tensor DiTImpl::embed_patches(const torch::Tensor& x) {
  return x_embedder(x).flatten(2).transpose(1, 2);  // (B, D, gh, gw) -> (B, gh*gw, D), row-major
}

torch::Tensor DiTImpl::conditioning(const torch::Tensor& sigma, const torch::Tensor& y, int64_t batch) {
  torch::Tensor s = sigma.dim() == 0 ? sigma.expand({batch}) : sigma;
  if (s.dim() != 1 || s.size(0) != batch)
    throw std::invalid_argument("DiT: sigma must have shape (" + std::to_string(batch) + "), got " + c10::str(sigma.sizes()));
  if (y.dim() != 1 || y.size(0) != batch || y.scalar_type() != torch::kInt64)
    throw std::invalid_argument("DiT: y must be int64 of shape (" + std::to_string(batch) + "), got " +
                                c10::str(y.sizes()) + " " + c10::toString(y.scalar_type()));
  return t_embedder(s * 1000.0) + y_embedder(y);
}

torch::Tensor DiTImpl::features(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y,
                                torch::Tensor* c_out) {
  if (x.dim() != 4 || x.size(1) != config.in_channels || x.size(2) != config.image_size ||
      x.size(3) != config.image_size)
    throw std::invalid_argument("DiT: x must have shape (B, " + std::to_string(config.in_channels) + ", " +
                                std::to_string(config.image_size) + ", " + std::to_string(config.image_size) +
                                "), got " + c10::str(x.sizes()));
  torch::Tensor h = embed_patches(x) + pos_embed;
  const torch::Tensor c = conditioning(sigma, y, x.size(0));
  for (const auto& block : *blocks) h = block->as<DiTBlockImpl>()->forward(h, c);
  if (c_out != nullptr) *c_out = c;
  return norm_out(h, c);
}

torch::Tensor DiTImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y) {
  return patchify_tokens_to_image(proj_out(features(x, sigma, y)), config.patch, config.in_channels,
                                  config.image_size);
}

// ----------------------------------------------------------------------------------- helpers

torch::Tensor patchify_tokens_to_image(const torch::Tensor& tokens, int64_t patch, int64_t channels,
                                       int64_t image_size) {
  const int64_t g = image_size / patch;
  if (tokens.dim() != 3 || image_size % patch != 0 || tokens.size(1) != g * g ||
      tokens.size(2) != patch * patch * channels)
    throw std::invalid_argument("unpatchify: tokens of shape " + c10::str(tokens.sizes()) + " do not fit patch " +
                                std::to_string(patch) + ", " + std::to_string(channels) + " channels, image size " +
                                std::to_string(image_size));
  const int64_t B = tokens.size(0);
  // (B, gy, gx, py, px, c) -> (B, c, gy, py, gx, px)
  return tokens.reshape({B, g, g, patch, patch, channels})
      .permute({0, 5, 1, 3, 2, 4})
      .reshape({B, channels, image_size, image_size});
}

torch::Tensor patchify_image_to_tokens(const torch::Tensor& image, int64_t patch) {
  if (image.dim() != 4 || image.size(2) != image.size(3) || image.size(2) % patch != 0)
    throw std::invalid_argument("patchify: image of shape " + c10::str(image.sizes()) +
                                " is not square with a size divisible by " + std::to_string(patch));
  const int64_t B = image.size(0), C = image.size(1), g = image.size(2) / patch;
  // (B, c, gy, py, gx, px) -> (B, gy, gx, py, px, c)
  return image.reshape({B, C, g, patch, g, patch}).permute({0, 2, 4, 3, 5, 1}).reshape({B, g * g, patch * patch * C});
}

double dit_forward_flops(const DiTConfig& c, int64_t batch) {
  const double N = static_cast<double>(c.num_tokens()), D = static_cast<double>(c.width);
  const double M = static_cast<double>(c.mlp_hidden()), P = static_cast<double>(c.token_dim());
  const double per_token_block = 2 * D * 3 * D + 2 * N * D * 2 + 2 * D * D + 2 * D * M * 2;
  const double per_image_block = 2 * D * 6 * D;  // adaLN modulation
  const double embed = N * 2 * P * D, head = N * 2 * D * P + 2 * D * 2 * D;
  const double temb = 2 * 256 * D + 2 * D * D;
  const double per_image = embed + static_cast<double>(c.depth) * (N * per_token_block + per_image_block) + head + temb;
  return per_image * static_cast<double>(batch);
}

// ----------------------------------------------------------------------------------- files

void save_dit(DiT& m, const std::string& path) {
  for (const auto& item : m->named_modules("", false))
    if (auto* l = item.value()->as<LoRALinearImpl>(); l != nullptr && l->has_lora())
      throw std::invalid_argument("save_dit " + path + ": layer '" + item.key() +
                                  "' carries a LoRA adapter; save adapters separately");
  save_described(*m, path, "dit", m->config.to_json());
}

DiT load_dit(const std::string& path, torch::Device device) {
  return DiT(std::static_pointer_cast<DiTImpl>(load_dit_network(io::load_safetensors(path), path, device)));
}

}  // namespace arcflow

// ----------------------------------------------------------------------------------- Network

namespace arcflow {

namespace {
const torch::Tensor& labels_of(const Condition& c) { return c.at("labels"); }
}  // namespace

torch::Tensor DiTImpl::velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
  if (c.empty()) return forward(x, sigma, torch::full({x.size(0)}, config.num_classes, torch::kLong).to(x.device()));
  return forward(x, sigma, labels_of(c).to(x.device()));
}

std::vector<int64_t> DiTImpl::sample_shape() const {
  return {config.in_channels, config.image_size, config.image_size};
}

void DiTImpl::check_condition(const Condition& c, int64_t batch) const {
  if (c.empty()) return;
  const torch::Tensor& y = labels_of(c);
  if (y.dim() != 1 || y.size(0) != batch || y.scalar_type() != torch::kLong)
    throw std::invalid_argument("DiT: labels must be (" + std::to_string(batch) + ") int64, got " +
                                c10::str(y.sizes()) + " " + std::string(c10::toString(y.scalar_type())));
  if (batch > 0 && (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() > config.num_classes))
    throw std::invalid_argument("DiT: labels must lie in 0.." + std::to_string(config.num_classes) + " (" +
                                std::to_string(config.num_classes) + " = null class)");
}

NetworkPtr DiTImpl::copy_network() {
  auto m = std::make_shared<DiTImpl>(config);
  copy_state(*this, *m);
  m->to(device());
  return m;
}

HeadInput DiTImpl::head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
  const torch::Tensor y = c.empty() ? torch::full({x.size(0)}, config.num_classes, torch::kLong).to(x.device())
                                    : labels_of(c).to(x.device());
  HeadInput in;
  in.tokens = features(x, sigma, y, &in.embedding);
  return in;
}

HeadLayout DiTImpl::head_layout() const {
  HeadLayout l;
  l.feature_dim = config.width;
  l.embed_dim = config.width;
  l.pixels = config.patch * config.patch;
  l.channels = config.in_channels;
  const DiTConfig t = config;
  // (B, N, K * per_token) ordered (k, py, px, value) -> (B, K, per, H, W).
  l.to_sample = [t](const torch::Tensor& tokens, int64_t K, int64_t per) {
    const int64_t B = tokens.size(0), N = tokens.size(1);
    const int64_t per_token = tokens.size(2) / K;
    const torch::Tensor by_k = tokens.reshape({B, N, K, per_token}).permute({0, 2, 1, 3}).reshape({B * K, N, per_token});
    return patchify_tokens_to_image(by_k, t.patch, per, t.image_size).reshape({B, K, per, t.image_size, t.image_size});
  };
  return l;
}

std::vector<std::string> DiTImpl::default_lora_targets() const {
  return {"blocks.*.mlp.fc1", "blocks.*.mlp.fc2", "t_embedder.linear_1", "t_embedder.linear_2"};
}

Condition DiTImpl::null_condition(const Condition& c) const {
  return Condition::labels(torch::full_like(labels_of(c), config.num_classes));
}

double DiTImpl::forward_flops(int64_t batch) const { return dit_forward_flops(config, batch); }

double DiTImpl::forward_memory_bytes(int64_t batch, bool for_backward) const {
  const double B = static_cast<double>(batch), N = static_cast<double>(config.num_tokens());
  const double D = static_cast<double>(config.width), M = static_cast<double>(config.mlp_hidden());
  const double H = static_cast<double>(config.heads);
  // float32: a block's streams (in, out, q, k, v, attention out: 6D; MLP hidden: M) and its
  // attention scores with their softmax (H x N x N).
  const double block = 4 * B * (N * (6 * D + M) + 2 * H * N * N);
  return 4 * config.state_size() + block * (for_backward ? static_cast<double>(config.depth) : 1.0);
}

NetworkPtr load_dit_network(const io::SafetensorsFile& f, const std::string& path, torch::Device device) {
  auto m = std::make_shared<DiTImpl>(read_described_config<DiTConfig>(f, path, "dit", /*kind_optional=*/true));
  load_state(*m, f.tensors, path);
  m->to(device);
  return m;
}

NetworkPtr create_dit_network(const nlohmann::json& config) {
  return std::make_shared<DiTImpl>(DiTConfig::from_json(config));
}

std::string DiTImpl::summary() const {
  return "DiT: width " + std::to_string(config.width) + ", depth " + std::to_string(config.depth) + ", heads " +
         std::to_string(config.heads) + ", patch " + std::to_string(config.patch) + ", " +
         std::to_string(config.num_tokens()) + " tokens";
}

nlohmann::json dit_image_teacher_config(const nlohmann::json& config) { return DiTConfig::from_json(config).to_json(); }

NetworkPtr create_dit_image_teacher(const nlohmann::json& config, const std::vector<int64_t>& image_shape) {
  const DiTConfig m = DiTConfig::from_json(config);
  if (image_shape != std::vector<int64_t>{m.in_channels, m.image_size, m.image_size}) {
    std::string got;
    for (int64_t d : image_shape) got += ", " + std::to_string(d);
    throw std::invalid_argument("teacher training: images must be (N, " + std::to_string(m.in_channels) + ", " +
                                std::to_string(m.image_size) + ", " + std::to_string(m.image_size) + "), got (N" +
                                got + ")");
  }
  return DiT(m).ptr();
}

}  // namespace arcflow
