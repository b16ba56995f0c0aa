// A published model folder as one object (diffusers' split: models / pipelines / schedulers): the
// teacher network set up at an image size, the conditions of a prompts file, the decoder of its
// latents, and its scheduler's shift rule. `arcflow sample` takes a folder through this alone; each
// family's implementation is in its models/ folder (FLUX: models/flux/flux_pipeline.cpp), reached
// by its registry line's load_pipeline.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "arcflow/core/schedule.h"
#include "arcflow/models/condition.h"
#include "arcflow/models/network.h"
#include "arcflow/models/teacher_options.h"

namespace arcflow {

struct PipelineOptions : FolderTeacherOptions {  // prompts (required here), size, dtype, batch, flags
  int64_t samples = 0;          // images to be made (0: one per prompt); the memory check's batch is
                                // at most this many, at most `batch`
  bool decoder = true;          // also load the decoder (false: latents only)
  std::string decoder_note;     // said after a missing decoder's error (e.g. how to do without)
  bool guidance_given = false;  // a distilled guidance value was asked for (refused by models without one)
  std::string guidance_flag = "--guidance";
};

class Pipeline {
 public:
  virtual ~Pipeline() = default;

  NetworkPtr network;    // the teacher, at the options' size
  ShiftRule shift_rule;  // the folder's scheduler (a fixed 1 without one)
  std::string dir;       // the folder

  // The prompts file: its conditions by row, with distilled guidance `guidance` where the model
  // reads one (guidance_kind distilled); the prompt texts when the file holds them.
  virtual int64_t num_prompts() const = 0;
  virtual std::string prompt_text(int64_t row) const = 0;  // "" when the file has none
  virtual Condition conditions(const std::vector<int64_t>& rows, double guidance) const = 0;

  // Images (B, C, H, W) in [-1, 1], float32 on the CPU, from sampled latents (B, ...) on any
  // device. std::logic_error when loaded without the decoder.
  virtual bool has_decoder() const = 0;
  virtual torch::Tensor decode(const torch::Tensor& latents) const = 0;
};
using PipelinePtr = std::unique_ptr<Pipeline>;

// The pipeline of model folder `dir` (its registry entry's load_pipeline). Throws
// std::runtime_error naming the file, std::invalid_argument naming the flag of `options`.
PipelinePtr load_pipeline(const std::string& dir, const PipelineOptions& options, torch::Device device = torch::kCPU);

}  // namespace arcflow
