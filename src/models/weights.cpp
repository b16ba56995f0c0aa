#include "arcflow/models/weights.h"

#include <cstdio>
#include <stdexcept>

namespace arcflow {

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters(true)) n += p.numel();
  return n;
}

io::TensorMap state_dict(torch::nn::Module& m) {
  io::TensorMap out;
  for (const auto& p : m.named_parameters(true)) out[p.key()] = p.value().detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
  for (const auto& b : m.named_buffers(true)) out[b.key()] = b.value().detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
  return out;
}

void check_state_size(const io::SafetensorsFile& f, const std::string& path, double state_size) {
  double held = 0;
  for (const auto& [name, t] : f.tensors) held += static_cast<double>(t.numel());
  // A bound on what gets built, not the validation: a few missing or misshapen tensors pass here
  // and get load_state()'s precise message naming them.
  if (state_size > 2 * held + (1 << 20)) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "the config in its metadata describes a model of %.17g values, far more than the %.17g the file holds",
                  state_size, held);
    throw std::runtime_error(path + ": " + buf + " (a truncated file or a wrong config); not building it");
  }
}

void save_weights(torch::nn::Module& m, const std::string& path, const io::Metadata& metadata) {
  io::save_safetensors(path, state_dict(m), metadata);
}

void load_state(torch::nn::Module& m, const io::TensorMap& tensors, const std::string& source) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : m.named_parameters(true)) targets[p.key()] = p.value();
  for (const auto& b : m.named_buffers(true)) targets[b.key()] = b.value();
  for (const auto& [name, t] : tensors) {
    auto it = targets.find(name);
    if (it == targets.end()) throw std::runtime_error(source + ": unexpected tensor '" + name + "' (the model has no such weight)");
    if (it->second.sizes() != t.sizes())
      throw std::runtime_error(source + ": tensor '" + name + "' has shape " + c10::str(t.sizes()) +
                               ", the model expects " + c10::str(it->second.sizes()));
  }
  for (const auto& [name, t] : targets)
    if (tensors.find(name) == tensors.end())
      throw std::runtime_error(source + ": missing tensor '" + name + "'");
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) targets[name].copy_(t);
}

io::Metadata load_weights(torch::nn::Module& m, const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  load_state(m, f.tensors, path);
  return f.metadata;
}

void save_described(torch::nn::Module& m, const std::string& path, const std::string& kind,
                    const nlohmann::json& config, const io::Metadata& extra) {
  io::Metadata meta = extra;
  for (const char* reserved : {"model", "config"})
    if (meta.count(reserved) != 0)
      throw std::invalid_argument("saving " + path + ": metadata entry '" + reserved + "' is reserved");
  meta["model"] = kind;
  meta["config"] = config.dump();
  save_weights(m, path, meta);
}

nlohmann::json described_config(const io::SafetensorsFile& f, const std::string& path, const std::string& kind,
                                bool kind_optional) {
  const auto model = f.metadata.find("model");
  if (model == f.metadata.end() && !kind_optional)
    throw std::runtime_error(path + ": no \"model\" entry in the safetensors metadata (not a " + kind +
                             " weights file from arcflow)");
  if (model != f.metadata.end() && model->second != kind)
    throw std::runtime_error(path + ": metadata says model \"" + model->second + "\", expected \"" + kind + "\"");
  const auto config = f.metadata.find("config");
  if (config == f.metadata.end())
    throw std::runtime_error(path + ": no \"config\" entry in the safetensors metadata (not a " + kind +
                             " weights file from arcflow)");
  try {
    return nlohmann::json::parse(config->second);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": invalid config metadata: " + e.what());
  }
}

}  // namespace arcflow
