#include "arcflow/models/dit_student.h"

#include <cmath>
#include <stdexcept>

#include "arcflow/models/toy_mlp.h"  // init_mixture_head
#include "arcflow/models/weights.h"

namespace arcflow {

namespace {
const char* const kBase = "base.";

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
}  // namespace

void DiTStudentConfig::validate() const {
  if (K < 1) throw std::invalid_argument("student config: K must be >= 1");
  if (lora.rank < 1) throw std::invalid_argument("student config: lora rank must be >= 1");
  if (!(lora.alpha > 0)) throw std::invalid_argument("student config: lora alpha must be > 0");
  if (lora.dropout < 0 || lora.dropout >= 1) throw std::invalid_argument("student config: lora dropout must be in [0, 1)");
  if (head_bias_noise < 0) throw std::invalid_argument("student config: head_bias_noise must be >= 0");
  if (!(min_gamma > 0) || !(max_gamma >= min_gamma))
    throw std::invalid_argument("student config: need 0 < min_gamma <= max_gamma");
}

nlohmann::json DiTStudentConfig::to_json() const {
  return {{"K", K},
          {"lora_rank", lora.rank},
          {"lora_alpha", lora.alpha},
          {"lora_dropout", lora.dropout},
          {"lora_targets", lora.targets},
          {"train_norm_out", train_norm_out},
          {"head_bias_noise", head_bias_noise},
          {"min_gamma", min_gamma},
          {"max_gamma", max_gamma}};
}

DiTStudentConfig DiTStudentConfig::from_json(const nlohmann::json& j) {
  DiTStudentConfig c;
  try {
    c.K = j.at("K").get<int64_t>();
    c.lora.rank = j.at("lora_rank").get<int>();
    c.lora.alpha = j.at("lora_alpha").get<double>();
    c.lora.dropout = j.at("lora_dropout").get<double>();
    c.lora.targets = j.at("lora_targets").get<std::vector<std::string>>();
    c.train_norm_out = j.at("train_norm_out").get<bool>();
    c.head_bias_noise = j.at("head_bias_noise").get<double>();
    c.min_gamma = j.at("min_gamma").get<double>();
    c.max_gamma = j.at("max_gamma").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("student config: ") + e.what());
  }
  c.validate();
  return c;
}

DiTStudentImpl::DiTStudentImpl(DiT teacher, const DiTStudentConfig& cfg) : config(cfg) {
  cfg.validate();
  const DiTConfig& t = teacher->config;
  base = register_module("base", DiT(t));
  copy_state(*teacher, *base);
  freeze(*base);
  apply_lora(*base, cfg.lora);
  if (cfg.train_norm_out)
    for (auto& p : base->norm_out->parameters()) p.set_requires_grad(true);
  const int64_t D = t.width, P = t.patch * t.patch;
  proj_out_means = register_module("proj_out_means", torch::nn::Linear(D, cfg.K * t.token_dim()));
  proj_out_logweights = register_module("proj_out_logweights", torch::nn::Linear(D, cfg.K * P));
  if (cfg.K > 1) proj_out_log_gammas = register_module("proj_out_log_gammas", torch::nn::Linear(D, (cfg.K - 1) * P));
  init_mixture_head(base->proj_out->weight, base->proj_out->bias, cfg.K, cfg.head_bias_noise, cfg.min_gamma,
                    cfg.max_gamma, proj_out_means, proj_out_logweights, proj_out_log_gammas);
  to(teacher->proj_out->weight.device());
}

// Head outputs per token, (B, N, K * per), ordered (k, py, px, c) with `channels` values per pixel
// -> (B, K, channels, H, W).
static torch::Tensor head_to_images(const torch::Tensor& tokens, int64_t K, int64_t channels, const DiTConfig& t) {
  const int64_t B = tokens.size(0), N = tokens.size(1);
  const int64_t per = tokens.size(2) / K;
  const torch::Tensor by_k = tokens.reshape({B, N, K, per}).permute({0, 2, 1, 3}).reshape({B * K, N, per});
  return patchify_tokens_to_image(by_k, t.patch, channels, t.image_size)
      .reshape({B, K, channels, t.image_size, t.image_size});
}

Policy DiTStudentImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y) {
  const DiTConfig& t = base->config;
  const torch::Tensor h = base->features(x, sigma, y);  // (B, N, D)
  const int64_t K = config.K;
  const torch::Tensor means = head_to_images(proj_out_means(h), K, t.in_channels, t);
  const torch::Tensor logweights = head_to_images(proj_out_logweights(h), K, 1, t);
  torch::Tensor log_gammas;
  if (K > 1) log_gammas = head_to_images(proj_out_log_gammas(h), K - 1, 1, t);
  torch::Tensor s = sigma;
  if (s.dim() == 0) s = s.expand({x.size(0)});
  return make_policy(means, logweights, log_gammas, s.to(x.dtype()));
}

std::vector<torch::Tensor> DiTStudentImpl::main_parameters() {
  std::vector<torch::Tensor> out = lora_parameters(*base);
  if (config.train_norm_out)
    for (auto& p : base->norm_out->parameters()) out.push_back(p);
  for (auto* m : {&proj_out_means, &proj_out_logweights})
    for (auto& p : (*m)->parameters()) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> DiTStudentImpl::log_gamma_parameters() {
  if (proj_out_log_gammas.is_empty()) return {};
  return proj_out_log_gammas->parameters();
}

int64_t DiTStudentImpl::trainable_count() {
  int64_t n = 0;
  for (const auto& p : main_parameters()) n += p.numel();
  for (const auto& p : log_gamma_parameters()) n += p.numel();
  return n;
}

int64_t DiTStudentImpl::total_count() { return count_parameters(*this); }

io::TensorMap DiTStudentImpl::adapter_tensors() {
  io::TensorMap out;
  for (const auto& [k, v] : state_dict(*this)) {
    const bool lora = ends_with(k, ".lora_A.weight") || ends_with(k, ".lora_B.weight");
    const bool norm = config.train_norm_out && starts_with(k, "base.norm_out.");
    if (starts_with(k, kBase) && (lora || norm)) out[k.substr(5)] = v;
    else if (starts_with(k, "proj_out_")) out[k] = v;
  }
  return out;
}

void DiTStudentImpl::load_adapter_tensors(const io::TensorMap& t, const std::string& source) {
  const io::TensorMap want = adapter_tensors();
  for (const auto& [k, v] : t)
    if (want.count(k) == 0) throw std::runtime_error(source + ": unexpected tensor '" + k + "' for this student");
  io::TensorMap full = state_dict(*this);
  for (const auto& [k, v] : want) {
    const auto it = t.find(k);
    if (it == t.end()) throw std::runtime_error(source + ": missing tensor '" + k + "'");
    full[starts_with(k, "proj_out_") ? k : kBase + k] = it->second;
  }
  load_state(*this, full, source);
}

void save_adapter(DiTStudent& s, const std::string& path, const io::Metadata& extra) {
  io::Metadata meta = extra;
  meta["model"] = "arcflow-adapter";
  meta["config"] = s->config.to_json().dump();
  meta["teacher_config"] = s->base->config.to_json().dump();
  meta["lora_rank"] = std::to_string(s->config.lora.rank);
  meta["lora_alpha"] = std::to_string(s->config.lora.alpha);
  io::save_safetensors(path, s->adapter_tensors(), meta);
}

DiTStudent load_adapter(DiT teacher, const std::string& path, io::Metadata* metadata) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  const auto model = f.metadata.find("model");
  if (model == f.metadata.end() || model->second != "arcflow-adapter")
    throw std::runtime_error(path + ": not an arcflow adapter (metadata \"model\" is not \"arcflow-adapter\")");
  torch::NoGradGuard g;
  DiTStudent s{nullptr};
  try {  // every error below is prefixed with the file's path once, here
    const DiTStudentConfig cfg = DiTStudentConfig::from_json(nlohmann::json::parse(f.metadata.at("config")));
    const nlohmann::json tc = nlohmann::json::parse(f.metadata.at("teacher_config"));
    if (tc != teacher->config.to_json())
      throw std::invalid_argument("made for a teacher with config " + tc.dump() + ", this teacher has " +
                                  teacher->config.to_json().dump());
    // K and the LoRA rank size what gets built: check them against the file's tensors first, so a
    // config that promises more than the file holds is refused instead of allocated.
    const DiTConfig& t = teacher->config;
    const auto means = f.tensors.find("proj_out_means.weight");
    if (means == f.tensors.end() || means->second.dim() != 2 || means->second.size(0) != cfg.K * t.token_dim() ||
        means->second.size(1) != t.width)
      throw std::invalid_argument("tensor 'proj_out_means.weight' is missing or not (" +
                                  std::to_string(cfg.K * t.token_dim()) + ", " + std::to_string(t.width) +
                                  ") as K = " + std::to_string(cfg.K) + " in the config says");
    bool has_lora = false;
    for (const auto& [name, x] : f.tensors) {
      if (!ends_with(name, ".lora_A.weight")) continue;
      has_lora = true;
      if (x.dim() != 2 || x.size(0) != cfg.lora.rank)
        throw std::invalid_argument("tensor '" + name + "' does not have " + std::to_string(cfg.lora.rank) +
                                    " rows as the LoRA rank in the config says");
    }
    if (!has_lora && !cfg.lora.targets.empty())
      throw std::invalid_argument("the config names LoRA targets but the file holds no LoRA tensors");
    s = DiTStudent(teacher, cfg);  // a LoRA target matching no layer of this teacher throws here
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  s->load_adapter_tensors(f.tensors, path);
  if (metadata != nullptr) *metadata = f.metadata;
  return s;
}

}  // namespace arcflow
