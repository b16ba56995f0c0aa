// Sampling with a distilled DiT student: N steps of the shifted schedule, one student call (1 NFE,
// no guidance pass: the student learned the guided teacher) and one closed-form integration of its
// policy per step (sampling/rollout.h). LoRA should be fused for speed (fuse_lora); the result is
// the same up to float rounding.
#pragma once

#include <torch/torch.h>

#include <string>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/dit_student.h"
#include "arcflow/sampling/samplers.h"

namespace arcflow {

struct StudentSampling {
  int nfe = 2;
  double shift = 1.0;
  double timestep_ratio = 1.0;
  double temperature = 1.0;  // divides the logits of all but the last step
  int64_t max_batch = 256;
  void validate() const;     // std::invalid_argument naming the field
};

// The schedule an adapter was distilled for, from its metadata (the keys `arcflow distill` writes:
// "nfe", "shift", "timestep_ratio"); absent keys keep the defaults above. Throws std::runtime_error
// naming `source` and the key for a value that is not a number.
StudentSampling distilled_sampling(const io::Metadata& meta, const std::string& source);

// Raw outputs (B, C, H, W) float32 on the CPU from `noise` (at sigma 1) and labels (B) int64.
// `cb` (may be empty) is called after every step of every batch, with step counted over the run.
torch::Tensor sample_student(DiTStudent& student, const torch::Tensor& noise, const torch::Tensor& labels,
                             const StudentSampling& opt, const SamplerCallback& cb = nullptr);

}  // namespace arcflow
