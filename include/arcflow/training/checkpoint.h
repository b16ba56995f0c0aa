// Training checkpoints: everything needed to continue a run exactly where it stopped, in one
// safetensors file written atomically (a crash leaves the previous checkpoint intact).
//
// Layout: tensors "model/<key>" (weights), "ema/<key>" (EMA weights), "optimizer" (U8: the
// optimizer's state as LibTorch serialises it), "rng" (U8: the CPU generator's state);
// __metadata__ holds "step" and the caller's entries (e.g. the config as JSON).
#pragma once

#include <torch/torch.h>

#include <string>

#include "arcflow/io/safetensors.h"

namespace arcflow {

struct Checkpoint {
  io::TensorMap model;
  io::TensorMap ema;
  std::string optimizer;    // serialize_optimizer() bytes; may be empty
  torch::Tensor rng_state;  // at::Generator::get_state(); may be undefined
  int64_t step = 0;
  io::Metadata metadata;    // caller's entries; "step" is reserved
  io::TensorMap extra;      // other state (e.g. further generator states), stored as "extra/<key>"
};

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws std::runtime_error naming the file when it is not a checkpoint or is damaged.
Checkpoint load_checkpoint(const std::string& path);

// The optimizer's state (moments, step counts) as bytes, and back. Loading requires an optimizer
// built over the same parameters in the same order.
std::string serialize_optimizer(torch::optim::Optimizer& opt);
// Restores `opt` (Adam or AdamW) from serialize_optimizer's bytes and moves its moments to `device`
// (LibTorch loads them on the CPU). Errors name `source`.
void deserialize_optimizer(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& source,
                           torch::Device device);

// The tensors as one contiguous byte string (and back): for RNG states and other byte blobs.
torch::Tensor bytes_to_tensor(const std::string& bytes);
std::string tensor_to_bytes(const torch::Tensor& t);

}  // namespace arcflow
