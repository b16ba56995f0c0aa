#include "arcflow/models/student.h"

#include "arcflow/models/reference_adapter.h"

#include <sys/stat.h>

#include <stdexcept>

#include "arcflow/models/weights.h"

namespace arcflow {

namespace {
const std::string kBase = "base.";

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
bool is_lora_key(const std::string& k) { return ends_with(k, ".lora_A.weight") || ends_with(k, ".lora_B.weight"); }
}  // namespace

void StudentConfig::validate() const {
  find_policy_head(policy);  // names the known policies
  if (K < 1) throw std::invalid_argument("student config: K must be >= 1");
  if (lora.rank < 1) throw std::invalid_argument("student config: lora rank must be >= 1");
  if (!(lora.alpha > 0)) throw std::invalid_argument("student config: lora alpha must be > 0");
  if (lora.dropout < 0 || lora.dropout >= 1) throw std::invalid_argument("student config: lora dropout must be in [0, 1)");
  if (head_bias_noise < 0) throw std::invalid_argument("student config: head_bias_noise must be >= 0");
  if (!(min_gamma > 0) || !(max_gamma >= min_gamma))
    throw std::invalid_argument("student config: need 0 < min_gamma <= max_gamma");
  if (logstd_hidden < 0 || logstd_hidden > 65536)
    throw std::invalid_argument("student config: logstd_hidden must be in [0, 65536], got " + std::to_string(logstd_hidden));
}

nlohmann::json StudentConfig::to_json() const {
  nlohmann::json j = {{"K", K},
                      {"lora_rank", lora.rank},
                      {"lora_alpha", lora.alpha},
                      {"lora_dropout", lora.dropout},
                      {"lora_targets", lora.targets},
                      {"train_norm_out", train_norm_out},
                      {"head_bias_noise", head_bias_noise},
                      {"head_bias_noise_per_token", head_bias_noise_per_token},
                      {"min_gamma", min_gamma},
                      {"max_gamma", max_gamma}};
  if (policy != "arcflow") j["policy"] = policy;
  if (policy == "gmflow") j["logstd_hidden"] = logstd_hidden;
  return j;
}

StudentConfig StudentConfig::from_json(const nlohmann::json& j) {
  StudentConfig c;
  try {
    c.policy = j.contains("policy") ? j.at("policy").get<std::string>() : "arcflow";
    c.K = j.at("K").get<int64_t>();
    c.lora.rank = j.at("lora_rank").get<int>();
    c.lora.alpha = j.at("lora_alpha").get<double>();
    c.lora.dropout = j.at("lora_dropout").get<double>();
    c.lora.targets = j.at("lora_targets").get<std::vector<std::string>>();
    c.train_norm_out = j.at("train_norm_out").get<bool>();
    c.head_bias_noise = j.at("head_bias_noise").get<double>();
    c.min_gamma = j.at("min_gamma").get<double>();
    c.max_gamma = j.at("max_gamma").get<double>();
    // Fields newer than some files: absent means what those files were made with.
    c.head_bias_noise_per_token = j.value("head_bias_noise_per_token", false);
    c.logstd_hidden = j.value("logstd_hidden", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("student config: ") + e.what());
  }
  c.validate();
  return c;
}

LoRAStudentImpl::LoRAStudentImpl(const NetworkPtr& teacher, StudentConfig cfg) : config(std::move(cfg)) {
  config.validate();
  if (config.lora.targets.empty()) config.lora.targets = teacher->default_lora_targets();
  base = teacher->copy_network();
  register_module("base", base->module().shared_from_this());
  freeze(base->module());
  apply_lora(base->module(), config.lora);
  if (config.train_norm_out) {
    const std::string norm = base->final_norm_module();
    if (norm.empty()) throw std::invalid_argument("model '" + base->kind() + "' has no final norm to train");
    for (auto& item : base->module().named_modules("", false))
      if (item.key() == norm) {
        // Trained in float32 over a half-precision base (its layers cast their inputs).
        const auto dt = item.value()->parameters().front().scalar_type();
        if (dt == torch::kBFloat16 || dt == torch::kHalf) item.value()->to(torch::kFloat32);
      }
    for (auto& p : base->module().named_parameters())
      if (starts_with(p.key(), norm + ".")) p.value().set_requires_grad(true);
  }
  head_ = find_policy_head(config.policy).make(*this, base->head_layout(), config.head(), base->output_layer());
  to(teacher->device());
}

PolicyPtr LoRAStudentImpl::policy(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
  return head_->forward(base->head_input(x, sigma, c), x, sigma, integration);
}

std::vector<torch::Tensor> LoRAStudentImpl::main_parameters() {
  std::vector<torch::Tensor> out = lora_parameters(base->module());
  if (config.train_norm_out)
    for (auto& p : base->module().named_parameters())
      if (starts_with(p.key(), base->final_norm_module() + ".")) out.push_back(p.value());
  for (const auto& p : head_->main_parameters()) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> LoRAStudentImpl::log_gamma_parameters() { return head_->slow_parameters(); }

int64_t LoRAStudentImpl::trainable_count() {
  int64_t n = 0;
  for (const auto& p : main_parameters()) n += p.numel();
  for (const auto& p : log_gamma_parameters()) n += p.numel();
  return n;
}

int64_t LoRAStudentImpl::total_count() { return count_parameters(*this); }

void LoRAStudentImpl::fuse_lora() { arcflow::fuse_lora(base->module()); }

io::TensorMap LoRAStudentImpl::adapter_tensors() {
  const std::string norm = config.train_norm_out ? kBase + base->final_norm_module() + "." : std::string();
  std::vector<std::string> heads;
  for (const auto& n : head_->module_names()) heads.push_back(n + ".");
  io::TensorMap out;
  for (const auto& [k, v] : state_dict(*this)) {
    if (starts_with(k, kBase)) {
      if (is_lora_key(k) || (!norm.empty() && starts_with(k, norm))) out[k.substr(kBase.size())] = v;
      continue;
    }
    for (const auto& h : heads)
      if (starts_with(k, h)) out[k] = v;
  }
  return out;
}

void LoRAStudentImpl::load_adapter_tensors(const io::TensorMap& t, const std::string& source) {
  const io::TensorMap want = adapter_tensors();
  for (const auto& [k, v] : t)
    if (want.count(k) == 0) throw std::runtime_error(source + ": unexpected tensor '" + k + "' for this student");
  io::TensorMap full = state_dict(*this);
  for (const auto& [k, v] : want) {
    const auto it = t.find(k);
    if (it == t.end()) throw std::runtime_error(source + ": missing tensor '" + k + "'");
    full[full.count(k) ? k : kBase + k] = it->second;
  }
  load_state(*this, full, source);
}

void save_adapter(LoRAStudent& s, const std::string& path, const io::Metadata& extra) {
  io::Metadata meta = extra;
  meta["model"] = "arcflow-adapter";
  meta["base_model"] = s->base->kind();
  meta["config"] = s->config.to_json().dump();
  meta["teacher_config"] = s->base->config_json().dump();
  meta["lora_rank"] = std::to_string(s->config.lora.rank);
  meta["lora_alpha"] = std::to_string(s->config.lora.alpha);
  io::save_safetensors(path, s->adapter_tensors(), meta);
}

LoRAStudent load_adapter(const NetworkPtr& teacher, const std::string& path, io::Metadata* metadata) {
  if (is_reference_adapter(path)) return load_reference_adapter(teacher, path, metadata);  // pnotp/ArcFlow's folder
  if (struct stat st {}; ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw std::runtime_error(not_an_adapter_folder(path));
  const io::SafetensorsFile f = io::load_safetensors(path);
  const auto model = f.metadata.find("model");
  if (model == f.metadata.end() || model->second != "arcflow-adapter")
    throw std::runtime_error(path + ": not an arcflow adapter (metadata \"model\" is not \"arcflow-adapter\")");
  torch::NoGradGuard g;
  LoRAStudent s{nullptr};
  try {  // every error below is prefixed with the file's path once, here
    const auto kind = f.metadata.find("base_model");
    const std::string base_model = kind == f.metadata.end() ? "dit" : kind->second;
    if (base_model != teacher->kind())
      throw std::invalid_argument("made for a '" + base_model + "' teacher, this teacher is '" + teacher->kind() + "'");
    const auto cfg_text = f.metadata.find("config"), tc_text = f.metadata.find("teacher_config");
    if (cfg_text == f.metadata.end() || tc_text == f.metadata.end())
      throw std::invalid_argument("the metadata lacks \"config\" or \"teacher_config\"");
    StudentConfig cfg = StudentConfig::from_json(nlohmann::json::parse(cfg_text->second));
    const nlohmann::json tc = nlohmann::json::parse(tc_text->second);
    if (tc != teacher->config_json())
      throw std::invalid_argument("made for a teacher with config " + tc.dump() + ", this teacher has " +
                                  teacher->config_json().dump());
    // K and the LoRA rank size what gets built: check them against the file's tensors first, so a
    // config that promises more than the file holds is refused instead of allocated.
    const HeadLayout layout = teacher->head_layout();
    const int64_t rows = cfg.K * layout.pixels * layout.channels;
    const auto means = f.tensors.find("proj_out_means.weight");
    if (means == f.tensors.end() || means->second.dim() != 2 || means->second.size(0) != rows ||
        means->second.size(1) != layout.feature_dim)
      throw std::invalid_argument("tensor 'proj_out_means.weight' is missing or not (" + std::to_string(rows) + ", " +
                                  std::to_string(layout.feature_dim) + ") as K = " + std::to_string(cfg.K) +
                                  " in the config says");
    if (cfg.policy == "gmflow") {  // the logstd MLP's width is the file's (older files: the embedding width)
      const auto hidden = f.tensors.find("proj_out_logstds.1.weight");
      if (hidden == f.tensors.end() || hidden->second.dim() != 2 || hidden->second.size(1) != layout.embed_dim)
        throw std::invalid_argument("tensor 'proj_out_logstds.1.weight' is missing or not (H, " +
                                    std::to_string(layout.embed_dim) + ")");
      cfg.logstd_hidden = hidden->second.size(0);
      cfg.validate();
    }
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
    s = LoRAStudent(teacher, cfg);  // a LoRA target matching no layer of this teacher throws here
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  s->load_adapter_tensors(f.tensors, path);
  if (metadata != nullptr) *metadata = f.metadata;
  return s;
}

}  // namespace arcflow
