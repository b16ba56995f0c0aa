#include "arcflow/models/registry.h"

#include <stdexcept>

#include "arcflow/models/dit.h"
#include "arcflow/models/toy_mlp.h"
#include "arcflow/models/weights.h"

namespace arcflow {

const std::vector<ModelEntry>& model_registry() {
  static const std::vector<ModelEntry> table = {
      {"dit", "class-conditional DiT with adaLN-Zero (images)", load_dit_network, create_dit_network},
      {"toy_mlp", "MLP velocity model for 2-D distributions", load_toy_network, create_toy_network},
  };
  return table;
}

const ModelEntry& find_model(const std::string& kind) {
  std::string names;
  for (const auto& e : model_registry()) {
    if (kind == e.kind) return e;
    names += (names.empty() ? "" : ", ") + std::string(e.kind);
  }
  throw std::invalid_argument("unknown model '" + kind + "' (known: " + names + ")");
}

NetworkPtr load_network(const std::string& path, torch::Device device) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  const auto it = f.metadata.find("model");
  const std::string kind = it == f.metadata.end() ? "dit" : it->second;
  const ModelEntry* entry = nullptr;
  try {
    entry = &find_model(kind);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return entry->load(f, path, device);
}

NetworkPtr create_network(const std::string& kind, const nlohmann::json& config) {
  return find_model(kind).create(config);
}

void save_network(Network& net, const std::string& path, const io::Metadata& extra) {
  for (const auto& item : net.module().named_modules("", false))
    if (auto* l = item.value()->as<LoRALinearImpl>(); l != nullptr && l->has_lora())
      throw std::invalid_argument("saving " + path + ": layer '" + item.key() +
                                  "' carries a LoRA adapter; save adapters separately");
  save_described(net.module(), path, net.kind(), net.config_json(), extra);
}

}  // namespace arcflow
