// Building a large model whose weights are about to be read from a file (or filled at random on the
// accelerator): while a ParamInitGuard lives on this thread, LoRALinear and the FLUX RMSNorm
// allocate their weights uninitialised, directly on the guard's device, instead of drawing
// torch::nn::Linear's default initialisation on the CPU. Full-size FLUX.1 (11.9B parameters) would
// otherwise draw 11.9B random numbers before the file's values overwrite them.
#pragma once

#include <c10/core/DefaultDtype.h>
#include <torch/torch.h>

namespace arcflow {

// Sets the default dtype for the scope, so that modules are built straight in the compute dtype
// (with a ParamInitGuard: no float32 copy of the weights ever exists). Process-wide state: do not
// build models on other threads meanwhile.
class DefaultDtypeGuard {
 public:
  explicit DefaultDtypeGuard(torch::ScalarType t) : saved_(c10::get_default_dtype()) {
    c10::set_default_dtype(c10::scalarTypeToTypeMeta(t));
  }
  ~DefaultDtypeGuard() { c10::set_default_dtype(saved_); }
  DefaultDtypeGuard(const DefaultDtypeGuard&) = delete;
  DefaultDtypeGuard& operator=(const DefaultDtypeGuard&) = delete;

 private:
  caffe2::TypeMeta saved_;
};

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
