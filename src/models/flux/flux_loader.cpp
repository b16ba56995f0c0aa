// Implementation of arcflow/models/flux/flux_loader.h.
#include "arcflow/models/flux/flux_loader.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/json_file.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/param_init.h"
#include "arcflow/util/text.h"

namespace arcflow {
namespace {

std::string shape_str(const std::vector<int64_t>& s) { return c10::str(c10::IntArrayRef(s)); }

bool is_float_dtype(torch::ScalarType t) {
  return t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16;
}

void check_compute_dtype(torch::ScalarType dtype, const std::string& what) {
  if (!is_float_dtype(dtype))
    throw std::invalid_argument(what + ": compute dtype must be float32, bfloat16 or float16, got " +
                                std::string(c10::toString(dtype)));
}

// Reads every parameter and buffer of `m` from `dir`, then freezes it, sets eval mode and moves it.
void fill(torch::nn::Module& m, const io::SafetensorsDir& dir, torch::Device device) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters(true)) {
    torch::Tensor t = p.value();
    dir.read_into(p.key(), t);
    t.set_requires_grad(false);
  }
  for (auto& b : m.named_buffers(true)) {
    torch::Tensor t = b.value();
    dir.read_into(b.key(), t);
  }
  m.eval();
  m.to(device);
}

// The keys the built module holds must be those the shape table promised (a programming error otherwise).
void check_module_keys(torch::nn::Module& m, const std::map<std::string, std::vector<int64_t>>& expected,
                       const std::string& what) {
  size_t n = 0;
  for (const auto& p : m.named_parameters(true)) {
    const auto it = expected.find(p.key());
    if (it == expected.end() || it->second != p.value().sizes().vec())
      throw std::logic_error(what + ": module tensor '" + p.key() + "' is not in the shape table");
    ++n;
  }
  if (n != expected.size()) throw std::logic_error(what + ": the module and the shape table differ in size");
}

}  // namespace

FluxConfig read_flux_config(const std::string& path) {
  const nlohmann::json j = io::read_json_file(path);
  try {
    return FluxConfig::from_json(j);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

FluxVaeConfig read_flux_vae_config(const std::string& path) {
  const nlohmann::json j = io::read_json_file(path);
  try {
    return FluxVaeConfig::from_json(j);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

void check_tensor_set(const io::SafetensorsDir& dir, const std::map<std::string, std::vector<int64_t>>& expected,
                      bool (*ignore)(const std::string&)) {
  for (const auto& [name, t] : dir.tensors()) {
    if (ignore != nullptr && ignore(name)) continue;
    const auto it = expected.find(name);
    if (it == expected.end())
      throw std::runtime_error(t.file + ": unexpected tensor '" + name + "' (the model its config.json describes has no such weight)");
    if (t.shape != it->second)
      throw std::runtime_error(t.file + ": tensor '" + name + "' has shape " + shape_str(t.shape) +
                               ", config.json implies " + shape_str(it->second));
    if (!is_float_dtype(t.dtype))
      throw std::runtime_error(t.file + ": tensor '" + name + "' has dtype " + io::safetensors_dtype_name(t.dtype) +
                               "; expected F32, F16 or BF16");
  }
  for (const auto& [name, shape] : expected)
    if (!dir.contains(name))
      throw std::runtime_error(dir.source() + ": missing tensor '" + name + "' (shape " + shape_str(shape) +
                               ", required by config.json)");
}

FluxTransformer load_flux_transformer(const std::string& folder, torch::ScalarType dtype, torch::Device device) {
  check_compute_dtype(dtype, "load_flux_transformer(" + folder + ")");
  const FluxConfig cfg = read_flux_config(join_path(folder, "config.json"));
  const io::SafetensorsDir dir = io::SafetensorsDir::open(folder);
  const auto expected = flux_state_shapes(cfg);
  check_tensor_set(dir, expected);
  FluxTransformer m{nullptr};
  {
    // Built straight in the compute dtype on the device, uninitialised: every value comes from the files.
    DefaultDtypeGuard guard(dtype);
    ParamInitGuard uninitialised(device);
    m = FluxTransformer(cfg);
  }
  check_module_keys(*m, expected, "FLUX transformer");
  fill(*m, dir, device);
  return m;
}

FluxVaeDecoder load_flux_vae_decoder(const std::string& folder, torch::ScalarType dtype, torch::Device device) {
  check_compute_dtype(dtype, "load_flux_vae_decoder(" + folder + ")");
  const FluxVaeConfig cfg = read_flux_vae_config(join_path(folder, "config.json"));
  const io::SafetensorsDir dir = io::SafetensorsDir::open(folder);
  const auto expected = flux_vae_state_shapes(cfg);
  check_tensor_set(dir, expected, &is_vae_encoder_key);
  FluxVaeDecoder m{nullptr};
  {
    DefaultDtypeGuard guard(dtype);
    m = FluxVaeDecoder(cfg);
  }
  check_module_keys(*m, expected, "VAE decoder");
  fill(*m, dir, device);
  return m;
}

// ----------------------------------------------------------------------------------- prompts

FluxPromptEmbeddings load_flux_prompt_embeddings(const std::string& path, const FluxConfig& cfg) {
  const io::SafetensorsDir f = io::SafetensorsDir::open_file(path);
  for (const char* key : {"prompt_embeds", "pooled_prompt_embeds"})
    if (!f.contains(key)) throw std::runtime_error(path + ": missing tensor '" + key + "'");
  for (const auto& [name, t] : f.tensors()) {
    if (name != "prompt_embeds" && name != "pooled_prompt_embeds")
      throw std::runtime_error(path + ": unexpected tensor '" + name +
                               "' (a prompt-embeddings file holds prompt_embeds and pooled_prompt_embeds)");
    if (!is_float_dtype(t.dtype))
      throw std::runtime_error(path + ": tensor '" + name + "' has dtype " + io::safetensors_dtype_name(t.dtype) +
                               "; expected F32, F16 or BF16");
  }
  const io::StoredTensor& pe = f.at("prompt_embeds");
  const io::StoredTensor& pp = f.at("pooled_prompt_embeds");
  if (pe.shape.size() != 3 || pe.shape[2] != cfg.joint_attention_dim || pe.shape[1] < 1)
    throw std::runtime_error(path + ": tensor 'prompt_embeds' has shape " + shape_str(pe.shape) + ", expected (N, L, " +
                             std::to_string(cfg.joint_attention_dim) + ") for this transformer (joint_attention_dim)");
  if (pp.shape.size() != 2 || pp.shape[1] != cfg.pooled_projection_dim)
    throw std::runtime_error(path + ": tensor 'pooled_prompt_embeds' has shape " + shape_str(pp.shape) +
                             ", expected (N, " + std::to_string(cfg.pooled_projection_dim) +
                             ") for this transformer (pooled_projection_dim)");
  if (pp.shape[0] != pe.shape[0])
    throw std::runtime_error(path + ": tensor 'pooled_prompt_embeds' has " + std::to_string(pp.shape[0]) +
                             " rows but 'prompt_embeds' has " + std::to_string(pe.shape[0]));
  FluxPromptEmbeddings e;
  const io::Metadata& meta = f.metadata().at(path);
  if (const auto it = meta.find("prompts"); it != meta.end()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& ex) {
      throw std::runtime_error(path + ": metadata 'prompts' is not JSON: " + ex.what());
    }
    if (!j.is_array() || static_cast<int64_t>(j.size()) != pe.shape[0])
      throw std::runtime_error(path + ": metadata 'prompts' must be a JSON list of " + std::to_string(pe.shape[0]) +
                               " strings");
    for (const auto& s : j) {
      if (!s.is_string()) throw std::runtime_error(path + ": metadata 'prompts' holds a non-string: " + s.dump());
      e.prompts.push_back(s.get<std::string>());
    }
  }
  e.prompt_embeds = f.read("prompt_embeds");
  e.pooled_prompt_embeds = f.read("pooled_prompt_embeds");
  return e;
}

void save_flux_prompt_embeddings(const std::string& path, const FluxPromptEmbeddings& e) {
  if (!e.prompt_embeds.defined() || !e.pooled_prompt_embeds.defined() || e.prompt_embeds.dim() != 3 ||
      e.pooled_prompt_embeds.dim() != 2 || e.pooled_prompt_embeds.size(0) != e.prompt_embeds.size(0))
    throw std::invalid_argument("saving " + path + ": prompt_embeds must be (N, L, J) and pooled_prompt_embeds (N, P)");
  if (!e.prompts.empty() && static_cast<int64_t>(e.prompts.size()) != e.prompt_embeds.size(0))
    throw std::invalid_argument("saving " + path + ": " + std::to_string(e.prompts.size()) + " prompts for " +
                                std::to_string(e.prompt_embeds.size(0)) + " embeddings");
  io::Metadata meta;
  if (!e.prompts.empty()) meta["prompts"] = nlohmann::json(e.prompts).dump();
  io::save_safetensors(path, {{"prompt_embeds", e.prompt_embeds}, {"pooled_prompt_embeds", e.pooled_prompt_embeds}},
                       meta);
}

}  // namespace arcflow
