// Module weights <-> safetensors files, with strict checking on load.
#pragma once

#include <torch/torch.h>

#include <string>

#include "arcflow/io/safetensors.h"

namespace arcflow {

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

}  // namespace arcflow
