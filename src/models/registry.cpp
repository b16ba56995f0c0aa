#include "arcflow/models/registry.h"

#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/json_file.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/pipeline.h"
#include "arcflow/models/flux/reference_adapter.h"
#include "arcflow/models/toy_mlp/toy_mlp.h"
#include "arcflow/models/weights.h"

namespace arcflow {

const std::vector<ModelEntry>& model_registry() {
  static const std::vector<ModelEntry> table = {
      {"dit", "class-conditional DiT with adaLN-Zero (images)", load_dit_network, create_dit_network, nullptr,
       nullptr, nullptr, nullptr, nullptr, nullptr, dit_image_teacher_config, create_dit_image_teacher},
      {"toy_mlp", "MLP velocity model for 2-D distributions", load_toy_network, create_toy_network},
      {"flux", "FLUX.1 transformer (diffusers layout; latents of its VAE)", load_flux_network, create_flux_network,
       "FluxTransformer2DModel", load_flux_folder, load_flux_folder_teacher, save_reference_adapter,
       kReferenceAdapterClass, load_reference_adapter, flux_image_teacher_config, create_flux_image_teacher,
       load_flux_pipeline},
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

bool is_model_folder(const std::string& path) { return io::is_directory(path); }

std::string transformer_folder(const std::string& dir) {
  using io::is_regular_file;
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  if (is_regular_file(base + "transformer/config.json")) return base + "transformer";
  if (is_regular_file(base + "config.json")) return dir;
  throw std::runtime_error(dir + ": not a model folder (neither transformer/config.json nor config.json)");
}

const ModelEntry& folder_model(const std::string& dir) {
  const std::string config = transformer_folder(dir) + "/config.json";
  const nlohmann::json j = io::read_json_file(config);
  const std::string cls = j.is_object() && j.contains("_class_name") && j["_class_name"].is_string()
                              ? j["_class_name"].get<std::string>() : "";
  std::string known;
  for (const auto& e : model_registry()) {
    if (e.diffusers_class == nullptr) continue;
    if (cls == e.diffusers_class) return e;
    known += (known.empty() ? "" : ", ") + std::string(e.diffusers_class);
  }
  throw std::runtime_error(config + ": _class_name '" + cls + "' is not a model arcflow reads (known: " + known + ")");
}

namespace {

NetworkPtr load_from_folder(const std::string& dir, torch::Device device, const LoadOptions& opts) {
  const ModelEntry& e = folder_model(dir);
  return e.load_folder(dir, device, opts.dtype ? *opts.dtype : device.is_cuda() ? torch::kBFloat16 : torch::kFloat32);
}

}  // namespace

NetworkPtr load_network(const std::string& path, torch::Device device, const LoadOptions& opts) {
  if (!path.empty() && is_model_folder(path)) return load_from_folder(path, device, opts);
  const io::SafetensorsFile f = io::load_safetensors(path);
  const auto it = f.metadata.find("model");
  const std::string kind = it == f.metadata.end() ? "dit" : it->second;
  const ModelEntry* entry = nullptr;
  try {
    entry = &find_model(kind);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  NetworkPtr net = entry->load(f, path, device);
  if (opts.dtype) net->module().to(*opts.dtype);
  return net;
}

NetworkPtr load_teacher(const std::string& path, const FolderTeacherOptions& options, torch::Device device) {
  if (path.empty() || !is_model_folder(path)) return load_network(path, device);
  const ModelEntry& e = folder_model(path);
  if (e.load_folder_teacher != nullptr) return e.load_folder_teacher(path, options, device);
  LoadOptions lo;
  lo.dtype = options.dtype;
  return load_network(path, device, lo);
}

NetworkPtr create_network(const std::string& kind, const nlohmann::json& config) {
  return find_model(kind).create(config);
}

void save_network(Network& net, const std::string& path, const io::Metadata& extra) {
  for (const auto& item : net.module().named_modules("", false))
    if (auto* l = item.value()->as<LoRALinearImpl>(); l != nullptr && l->has_lora())
      throw std::invalid_argument("saving " + path + ": layer '" + item.key() +
                                  "' carries a LoRA adapter; save adapters separately");
  io::Metadata meta = net.extra_metadata();
  for (const auto& [key, value] : extra) meta[key] = value;
  save_described(net.module(), path, net.kind(), net.config_json(), meta);
}

PipelinePtr load_pipeline(const std::string& dir, const PipelineOptions& options, torch::Device device) {
  const ModelEntry& e = folder_model(dir);
  if (e.load_pipeline == nullptr)
    throw std::runtime_error(dir + ": a " + e.kind + " model folder, which arcflow samples no pipeline of");
  return e.load_pipeline(dir, options, device);
}

}  // namespace arcflow
