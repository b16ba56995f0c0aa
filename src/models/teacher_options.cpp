#include "arcflow/models/teacher_options.h"

#include <stdexcept>

namespace arcflow {

torch::ScalarType parse_compute_dtype(const std::string& name, torch::Device device, const std::string& flag) {
  if (name == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  if (name == "float32" || name == "f32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "f16") return torch::kFloat16;
  throw std::invalid_argument(flag + " must be auto, float32, bfloat16 or float16, got '" + name + "'");
}

}  // namespace arcflow
