// Module weights <-> safetensors files, with strict checking on load.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

#include "arcflow/io/safetensors.h"

namespace arcflow {

// Number of elements of all parameters of `m` (trainable or not).
int64_t count_parameters(torch::nn::Module& m);

// The module's parameters and buffers by checkpoint key: CPU copies (never aliases), in the module's dtype.
io::TensorMap state_dict(torch::nn::Module& m);

// Writes the module's parameters and buffers (atomically), with `metadata` in `__metadata__`.
void save_weights(torch::nn::Module& m, const std::string& path, const io::Metadata& metadata = {});

// Copies tensors into the module's same-named parameters/buffers. Strict: a tensor the module
// lacks, a module tensor the map lacks, or a shape mismatch throws std::runtime_error whose
// message names `source` and the tensor; nothing is changed unless every check passes.
void load_state(torch::nn::Module& m, const io::TensorMap& tensors, const std::string& source);

// load_safetensors + load_state; returns the file's metadata.
io::Metadata load_weights(torch::nn::Module& m, const std::string& path);

// Self-describing weights: the metadata names the model kind ("model") and holds its config as
// JSON ("config"), so a model can be rebuilt from its file alone (the DiT, the classifier).
// Writes m's weights (atomically) with {"model": kind, "config": config.dump()} plus `extra`;
// "model" or "config" in `extra` throws std::invalid_argument.
void save_described(torch::nn::Module& m, const std::string& path, const std::string& kind,
                    const nlohmann::json& config, const io::Metadata& extra = {});

// The "config" JSON of a described file, after checking its "model" entry is `kind` (a file
// without the entry passes when `kind_optional`). Throws std::runtime_error naming `path`.
nlohmann::json described_config(const io::SafetensorsFile& f, const std::string& path, const std::string& kind,
                                bool kind_optional = false);

// Throws std::runtime_error naming `path` when `state_size` (the values of the model the config
// describes) is far above what the file's tensors hold (more than twice, plus 2^20): a corrupt or
// hostile config is refused before the model is built instead of allocating what it claims. Smaller
// mismatches are left to load_state(), whose errors name the tensor.
void check_state_size(const io::SafetensorsFile& f, const std::string& path, double state_size);

// described_config parsed by Config::from_json, then check_state_size(f, path, config.state_size());
// errors are std::runtime_error naming `path`.
template <typename Config>
Config read_described_config(const io::SafetensorsFile& f, const std::string& path, const std::string& kind,
                             bool kind_optional = false) {
  const nlohmann::json j = described_config(f, path, kind, kind_optional);
  Config c;
  try {
    c = Config::from_json(j);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": invalid config metadata: " + e.what());
  }
  check_state_size(f, path, c.state_size());
  return c;
}

}  // namespace arcflow
