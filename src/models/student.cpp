#include "arcflow/models/student.h"

#include <cstdlib>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/weights.h"
#include "arcflow/util/text.h"

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

namespace {

// The `_class_name` of DIR/config.json, or why there is none (in `why`).
std::string folder_class_name(const std::string& dir, std::string* why) {
  const std::string cfg = dir + "/config.json";
  if (!io::is_regular_file(cfg)) {
    *why = "the folder has no config.json";
    return "";
  }
  try {
    const nlohmann::json j = nlohmann::json::parse(io::read_file(cfg));
    const auto it = j.is_object() ? j.find("_class_name") : j.end();
    if (it == j.end()) *why = "its config.json has no \"_class_name\"";
    else if (!it->is_string()) *why = "its config.json's \"_class_name\" is not a string";
    else return it->get<std::string>();
  } catch (const std::exception&) {
    *why = "its config.json is not valid JSON";
  }
  return "";
}

// The registry entry whose reference adapter folder `dir` is, or null.
const ModelEntry* adapter_folder_model(const std::string& dir) {
  if (!io::is_directory(dir)) return nullptr;
  std::string why;
  const std::string name = folder_class_name(dir, &why);
  for (const ModelEntry& e : model_registry())
    if (e.reference_adapter_class != nullptr && e.load_reference_adapter != nullptr && name == e.reference_adapter_class)
      return &e;
  return nullptr;
}

}  // namespace

bool is_adapter_folder(const std::string& path) { return adapter_folder_model(path) != nullptr; }

std::string not_an_adapter_folder(const std::string& dir) {
  std::string why;
  const std::string name = folder_class_name(dir, &why);
  if (!name.empty()) why = "its config.json names \"" + name + "\" (a model, not an adapter)";
  std::string layouts;
  for (const ModelEntry& e : model_registry())
    if (e.reference_adapter_class != nullptr)
      layouts += std::string(layouts.empty() ? "" : " or ") + e.reference_adapter_class;
  return dir + ": not an adapter: " + why + "; an adapter is a file (.safetensors from `arcflow distill`)" +
         (layouts.empty() ? std::string()
                          : " or a reference adapter folder (config.json naming " + layouts +
                                " and diffusion_pytorch_model.safetensors)");
}

LoRAStudent load_adapter(const NetworkPtr& teacher, const std::string& path, io::Metadata* metadata) {
  if (io::is_directory(path)) {  // a reference implementation's adapter folder
    const ModelEntry* e = adapter_folder_model(path);
    if (e == nullptr) throw std::runtime_error(not_an_adapter_folder(path));
    return e->load_reference_adapter(teacher, path, metadata);
  }
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

void write_schedule(const StepSchedule& schedule, io::Metadata& meta) {
  meta["nfe"] = std::to_string(schedule.nfe);
  meta["shift"] = format_exact(schedule.shift);
  meta["timestep_ratio"] = format_exact(schedule.timestep_ratio);
  meta["total_substeps"] = std::to_string(schedule.total_substeps);
}

StepSchedule read_schedule(const io::Metadata& meta, const std::string& source, const StepSchedule& defaults) {
  const auto number = [&](const char* key, double fallback) {
    const auto it = meta.find(key);
    if (it == meta.end()) return fallback;
    char* end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    if (end == it->second.c_str())
      throw std::runtime_error(source + ": unreadable '" + key + "' in the adapter metadata: '" + it->second + "'");
    return v;
  };
  StepSchedule s = defaults;
  s.nfe = static_cast<int>(number("nfe", s.nfe));
  s.shift = number("shift", s.shift);
  s.timestep_ratio = number("timestep_ratio", s.timestep_ratio);
  s.total_substeps = static_cast<int>(number("total_substeps", s.total_substeps));
  return s;
}

}  // namespace arcflow
