// Implementation of arcflow/models/flux/reference_adapter.h.
#include "arcflow/models/flux/reference_adapter.h"

#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/json_file.h"

namespace arcflow {
namespace {

const char* kClass = kReferenceAdapterClass;
const char* kWeights = "diffusion_pytorch_model.safetensors";

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

// Our student's parameter name <-> the reference's tensor name.
std::string to_reference(const std::string& ours) {
  if (ours.rfind("base.", 0) == 0) return ours.substr(5);
  if (ours.rfind("proj_out_log_gammas.", 0) == 0) return "proj_out_loggamma." + ours.substr(20);
  return ours;
}

std::string from_reference(const std::string& theirs) {
  if (theirs.rfind("proj_out_loggamma.", 0) == 0) return "proj_out_log_gammas." + theirs.substr(18);
  if (theirs.rfind("proj_out_", 0) == 0) return theirs;
  return "base." + theirs;
}


}  // namespace

bool is_reference_adapter(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  const std::string cfg = dir + "/config.json";
  if (::stat(cfg.c_str(), &st) != 0) return false;
  try {
    const nlohmann::json j = nlohmann::json::parse(io::read_file(cfg));
    return j.is_object() && j.value("_class_name", std::string()) == kClass;
  } catch (const std::exception&) {
    return false;
  }
}

void save_reference_adapter(LoRAStudent& student, const std::string& dir) {
  if (student->base->kind() != "flux")
    throw std::invalid_argument("reference adapters are FLUX students; this one is on '" + student->base->kind() + "'");
  if (student->config.policy != "arcflow" || student->config.K < 2)
    throw std::invalid_argument("reference adapters hold ArcFlow students (K >= 2); this one is '" +
                                student->config.policy + "' with K " + std::to_string(student->config.K));
  nlohmann::json cfg = student->base->config_json();
  cfg.erase("patch_size");  // the reference's config has none (FLUX.1 uses 1)
  cfg["_class_name"] = kClass;
  cfg["_diffusers_version"] = "0.32.2";
  cfg["num_gaussians"] = student->config.K;
  cfg["logweights_channels"] = 4;
  io::TensorMap tensors;
  for (const auto& p : student->named_parameters()) {
    const std::string& k = p.key();
    const bool lora = ends_with(k, ".lora_A.weight") || ends_with(k, ".lora_B.weight");
    const bool norm = k.rfind("base.norm_out.", 0) == 0 && student->config.train_norm_out;
    const bool head = k.rfind("proj_out_", 0) == 0;
    if (!(lora || norm || head)) continue;
    torch::Tensor t = p.value().detach().to(torch::kCPU, torch::kFloat32);
    // The reference stores no alpha (diffusers then takes alpha = rank, scale 1): fold our scale
    // alpha / rank into B, which leaves the product B A * scale unchanged.
    if (ends_with(k, ".lora_B.weight")) t = t * (student->config.lora.alpha / student->config.lora.rank);
    tensors[to_reference(k)] = t.contiguous();
  }
  io::make_output_dir(dir);
  io::save_safetensors(dir + "/" + kWeights, tensors, {{"policy_config", R"({"type": "ArcFlow"})"}});
  io::write_file_atomic(dir + "/config.json", cfg.dump(2) + "\n");
}

LoRAStudent load_reference_adapter(const NetworkPtr& teacher, const std::string& dir, io::Metadata* metadata) {
  const std::string cfg_path = dir + "/config.json", weights = dir + "/" + kWeights;
  const nlohmann::json cfg = io::read_json_file(cfg_path);
  if (!cfg.is_object() || cfg.value("_class_name", std::string()) != kClass)
    throw std::runtime_error(cfg_path + ": _class_name is not " + std::string(kClass));
  if (teacher->kind() != "flux")
    throw std::runtime_error(dir + ": a FLUX adapter; the teacher is '" + teacher->kind() + "'");
  // The base architecture must be the teacher's: every key both configs have must agree.
  const nlohmann::json base = teacher->config_json();
  for (const auto& [key, value] : base.items()) {
    if (key.rfind("_", 0) == 0 || key == "patch_size" || key == "out_channels" || !cfg.contains(key)) continue;
    if (cfg[key] != value)
      throw std::runtime_error(cfg_path + ": " + key + " " + cfg[key].dump() + " does not match the teacher's " +
                               value.dump() + " (an adapter for another base model)");
  }
  if (cfg.value("logweights_channels", 1) != 4)
    throw std::runtime_error(cfg_path + ": logweights_channels must be 4 (one weight per latent pixel of a 2x2 token)");
  const int64_t K = cfg.value("num_gaussians", int64_t{16});
  if (K < 2) throw std::runtime_error(cfg_path + ": num_gaussians must be >= 2, got " + std::to_string(K));

  const io::SafetensorsFile f = io::load_safetensors(weights);
  const auto pc = f.metadata.find("policy_config");
  if (pc != f.metadata.end()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(pc->second);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(weights + ": policy_config is not JSON: " + e.what());
    }
    const std::string type = j.is_object() ? j.value("type", std::string()) : "";
    if (type != "ArcFlow")
      throw std::runtime_error(weights + ": policy_config names policy '" + type + "', not ArcFlow (unknown policy)");
  }
  // Sort the tensors: LoRA pairs by module, heads, norm_out.
  std::map<std::string, torch::Tensor> named;  // our parameter name -> tensor
  std::map<std::string, int> lora_parts;       // module -> bit 1 (A), bit 2 (B)
  int64_t rank = -1;
  bool norm_out = false;
  for (const auto& [raw, t] : f.tensors) {
    const std::string key = raw.rfind("transformer.", 0) == 0 ? raw.substr(12) : raw;
    const bool a = ends_with(key, ".lora_A.weight"), b = ends_with(key, ".lora_B.weight");
    if (a || b) {
      const std::string module = key.substr(0, key.size() - 14);
      lora_parts[module] |= a ? 1 : 2;
      if (b) {
        if (t.dim() != 2) throw std::runtime_error(weights + ": tensor '" + raw + "' is not a matrix");
        if (rank >= 0 && t.size(1) != rank)
          throw std::runtime_error(weights + ": tensor '" + raw + "' has rank " + std::to_string(t.size(1)) +
                                   ", others " + std::to_string(rank));
        rank = t.size(1);
      }
    } else if (key.rfind("norm_out.linear.", 0) == 0) {
      norm_out = true;
    } else if (key.rfind("proj_out_means.", 0) != 0 && key.rfind("proj_out_logweights.", 0) != 0 &&
               key.rfind("proj_out_loggamma.", 0) != 0) {
      throw std::runtime_error(weights + ": unexpected tensor '" + raw + "' (not LoRA, a head or norm_out)");
    }
    named[from_reference(key)] = t;
  }
  for (const char* h : {"proj_out_means.weight", "proj_out_means.bias", "proj_out_logweights.weight",
                        "proj_out_logweights.bias", "proj_out_loggamma.weight", "proj_out_loggamma.bias"})
    if (named.count(from_reference(h)) == 0) throw std::runtime_error(weights + ": missing head tensor '" + std::string(h) + "'");
  for (const auto& [module, parts] : lora_parts)
    if (parts != 3) throw std::runtime_error(weights + ": LoRA module '" + module + "' lacks its lora_" + (parts == 1 ? "B" : "A"));

  StudentConfig sc;
  sc.policy = "arcflow";
  sc.K = K;
  sc.head_bias_noise = 0.0;
  sc.train_norm_out = norm_out;
  sc.lora.rank = rank > 0 ? static_cast<int>(rank) : 1;
  sc.lora.alpha = static_cast<double>(sc.lora.rank);  // diffusers: alpha = rank when none is stored
  sc.lora.dropout = 0.0;
  for (const auto& [module, parts] : lora_parts) sc.lora.targets.push_back(module);
  if (sc.lora.targets.empty())
    throw std::runtime_error(weights + ": holds no LoRA tensors (the reference's loader would ignore such a folder)");
  LoRAStudent s{nullptr};
  try {
    s = LoRAStudent(teacher, sc);
  } catch (const std::exception& e) {
    throw std::runtime_error(weights + ": " + e.what());
  }
  torch::NoGradGuard no_grad;
  auto params = s->named_parameters();
  for (const auto& [name, t] : named) {
    torch::Tensor* p = params.find(name);
    if (p == nullptr)
      throw std::runtime_error(weights + ": tensor '" + to_reference(name) + "' names no layer of this teacher's student");
    if (p->sizes() != t.sizes())
      throw std::runtime_error(weights + ": tensor '" + to_reference(name) + "' has shape " + c10::str(t.sizes()) +
                               ", this teacher's student needs " + c10::str(p->sizes()) + " (another base model?)");
    p->copy_(t.to(p->scalar_type()));
  }
  if (metadata != nullptr) {  // the reference's sampling: 2 steps at the fixed shift 3.2 (ARCFLOW.md section 7)
    *metadata = {{"format", "pnotp/ArcFlow"}, {"policy", "arcflow"}, {"K", std::to_string(K)}};
    StepSchedule reference;
    reference.nfe = 2;
    reference.shift = 3.2;
    reference.timestep_ratio = 1.0;
    write_schedule(reference, *metadata);
  }
  return s;
}

}  // namespace arcflow
