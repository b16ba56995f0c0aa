// What a published model folder needs beyond its weights to be a teacher (models/registry.h,
// load_teacher): where its conditions come from, the size it samples at, its dtype. Weights files
// carry all of this themselves.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

namespace arcflow {

struct FolderTeacherOptions {
  std::string prompts;                  // prompt-embeddings file conditions are drawn from ("" = none)
  int64_t height = 1024, width = 1024;  // image size in pixels
  double guidance = 3.5;                // distilled guidance of the drawn conditions (models that read one)
  int64_t batch = 1;                    // samples per forward pass, for the memory check
  // Text tokens per condition, for the memory check when `prompts` is empty (0 = the prompts
  // file's, or the model's longest).
  int64_t text_tokens = 0;
  std::optional<torch::ScalarType> dtype;  // unset: bfloat16 on CUDA, float32 elsewhere
  // Flag names the errors give: the image size's, and the memory check's.
  std::string size_flags = "--height and --width";
  std::string memory_flags = "--height, --width and --batch";
  // Said after the memory check's figure, e.g. "training needs more".
  std::string memory_note;
};

// "auto" -> bfloat16 on CUDA, float32 elsewhere; else float32 / bfloat16 / float16
// (std::invalid_argument naming `flag` otherwise).
torch::ScalarType parse_compute_dtype(const std::string& name, torch::Device device, const std::string& flag = "--dtype");

}  // namespace arcflow
