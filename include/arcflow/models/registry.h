// The model registry: every architecture by the name its weights file carries in its "model"
// metadata. Everything that loads or builds a teacher goes through here, so a new architecture is
// a Network implementation (models/network.h) plus one line in src/models/registry.cpp.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/network.h"
#include "arcflow/models/student.h"
#include "arcflow/models/teacher_options.h"

namespace arcflow {

class Pipeline;
struct PipelineOptions;

struct ModelEntry {
  const char* kind;  // the weights file's "model" metadata
  const char* description;
  // The network a file describes, with its weights (errors name `path`).
  NetworkPtr (*load)(const io::SafetensorsFile& f, const std::string& path, torch::Device device);
  // A freshly initialised network from its config JSON (std::invalid_argument naming the field).
  NetworkPtr (*create)(const nlohmann::json& config);
  // Published model folders (diffusers layout): the `_class_name` of the transformer's config.json
  // and the loader of such a folder, weights in the given dtype; null for file-only architectures.
  const char* diffusers_class = nullptr;
  NetworkPtr (*load_folder)(const std::string& dir, torch::Device device, torch::ScalarType dtype) = nullptr;
  // Such a folder set up as a teacher (sample size, condition source; see load_teacher); null:
  // the folder's network as load_folder gives it.
  NetworkPtr (*load_folder_teacher)(const std::string& dir, const FolderTeacherOptions& options,
                                    torch::Device device) = nullptr;
  // Writes an ArcFlow student of this architecture in the reference's adapter layout (pnotp/ArcFlow),
  // which `distill` adds for a published model folder; null where the reference has none.
  void (*save_reference_adapter)(LoRAStudent& student, const std::string& dir) = nullptr;
  // Reading such an adapter folder back: the `_class_name` its config.json carries, and the loader
  // (student.h's load_adapter picks it by that name).
  const char* reference_adapter_class = nullptr;
  LoRAStudent (*load_reference_adapter)(const NetworkPtr& teacher, const std::string& dir,
                                        io::Metadata* metadata) = nullptr;
  // `train-teacher` (training/teacher.h): the architecture's training config JSON with every field
  // filled in (so two runs' configs compare equal), and a freshly initialised class-conditional
  // network for images of (C, H, W); both throw std::invalid_argument naming the field or the shape.
  // Null: the architecture is not trained here.
  nlohmann::json (*image_teacher_config)(const nlohmann::json& config) = nullptr;
  NetworkPtr (*create_image_teacher)(const nlohmann::json& config, const std::vector<int64_t>& image_shape) = nullptr;
  // A model folder as a pipeline (models/pipeline.h: network, prompt conditions, decoder,
  // scheduler); null for file-only architectures.
  std::unique_ptr<Pipeline> (*load_pipeline)(const std::string& dir, const PipelineOptions& options,
                                             torch::Device device) = nullptr;
};

struct LoadOptions {
  // Compute dtype of a model folder's weights (float32, bfloat16, float16); unset: bfloat16 on
  // CUDA, float32 elsewhere. Weights files keep their own dtype unless this is set.
  std::optional<torch::ScalarType> dtype;
};

// The table, in display order.
const std::vector<ModelEntry>& model_registry();
// The entry for `kind`; throws std::invalid_argument listing the known kinds.
const ModelEntry& find_model(const std::string& kind);

// Loads a teacher from a weights file, whose "model" metadata picks the architecture (files without
// it are DiTs, as written before the registry), or from a model folder in the diffusers layout
// (MODEL_DIR/transformer/config.json, or a transformer folder itself), whose config.json
// `_class_name` picks it. Throws std::runtime_error naming `path`.
NetworkPtr load_network(const std::string& path, torch::Device device = torch::kCPU, const LoadOptions& opts = {});
// The teacher `path` names: a weights file as load_network reads it (it carries its own settings),
// or a model folder set up by its architecture's load_folder_teacher with `options` (sample size,
// prompts, dtype, checked before the weights are read). Throws std::runtime_error naming `path`,
// std::invalid_argument naming the flags of `options`.
NetworkPtr load_teacher(const std::string& path, const FolderTeacherOptions& options, torch::Device device = torch::kCPU);
// The registry entry of the model folder `dir` (its transformer config.json's _class_name).
const ModelEntry& folder_model(const std::string& dir);
// True when `path` is a folder (a model folder, for load_network).
bool is_model_folder(const std::string& path);
// The folder holding a model folder's transformer config.json: DIR/transformer when it has one,
// else DIR itself (a transformer folder). Throws std::runtime_error naming `dir` when neither holds
// a config.json.
std::string transformer_folder(const std::string& dir);
NetworkPtr create_network(const std::string& kind, const nlohmann::json& config);
// Writes the network's weights with {"model": kind, "config": config JSON} and the network's
// extra_metadata() (atomically; entries of `extra` win). Throws
// std::invalid_argument for a network carrying LoRA adapters (save those as an adapter).
void save_network(Network& net, const std::string& path, const io::Metadata& extra = {});

}  // namespace arcflow
