// Building a large model whose weights are about to be read from a file (or filled at random on the
// accelerator): while a ParamInitGuard lives on this thread, LoRALinear and the FLUX RMSNorm
// allocate their weights uninitialised, directly on the guard's device, instead of drawing
// torch::nn::Linear's default initialisation on the CPU. Full-size FLUX.1 (11.9B parameters) would
// otherwise draw 11.9B random numbers before the file's values overwrite them.
#pragma once

#include <torch/torch.h>

namespace arcflow {

class ParamInitGuard {
 public:
  explicit ParamInitGuard(torch::Device device);
  ~ParamInitGuard();
  ParamInitGuard(const ParamInitGuard&) = delete;
  ParamInitGuard& operator=(const ParamInitGuard&) = delete;

  // True while a guard lives on this thread.
  static bool active();
  // Options for a new parameter: the default dtype, and the guard's device when active (else the CPU).
  static torch::TensorOptions options();

 private:
  bool saved_active_;
  torch::Device saved_device_;
};

}  // namespace arcflow
