// `arcflow sample --teacher MODEL_DIR --prompts FILE`: a published model folder (diffusers layout;
// FLUX.1, ARCFLOW.md section 7) sampled from pre-encoded prompts, decoded to a PNG grid, through
// its pipeline (models/pipeline.h) alone: no model family is named here.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "arcflow/models/teacher_options.h"  // parse_compute_dtype
#include "arcflow/sampling/generate.h"
#include "common.h"

namespace arcflow::cli {

struct FolderSampleOptions {
  std::string model_dir;     // --teacher
  std::string prompts;       // --prompts: prompt-embeddings file (scripts/encode_prompts.py)
  std::string output;        // -o: PNG grid ("" = none)
  std::string save_tensors;  // --save-tensors: noise, prompt indices (as labels), latents
  std::string dtype = "auto";
  int64_t n = -1;            // images; -1: one per prompt
  uint64_t seed = 0;
  TeacherSampling sampling;  // steps, shift, sampler, batch (cfg_scale must stay 1)
  bool cfg_given = false;
  double guidance = 3.5;     // distilled guidance (models with a guidance embedding)
  bool guidance_given = false;
  int64_t height = 1024, width = 1024;
  int nrow = 10;
  bool quiet = false;
  std::string adapter;  // a student (from `arcflow distill --teacher MODEL_DIR`): sampled instead
  int nfe = 2;
  std::optional<double> temperature{};  // --temperature (unset: auto)
  bool nfe_given = false, shift_given = false;
};

int run_folder_sample(const FolderSampleOptions& o, const GlobalOptions& global);

}  // namespace arcflow::cli
