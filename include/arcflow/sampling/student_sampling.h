// Sampling with a distilled student (any architecture, any policy): N steps of the shifted schedule,
// one student call per step (1 NFE, no guidance pass: the student learned the guided teacher) and
// the policy followed to the step's end (core/step_loop.h: closed form for ArcFlow, Euler sub-steps
// for GMFlow). LoRA should be fused for speed (fuse_lora); the result is the same up to rounding.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "arcflow/core/step_loop.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/condition.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/samplers.h"

namespace arcflow {

struct StudentSampling {
  int nfe = 2;
  double shift = 1.0;
  double timestep_ratio = 1.0;
  // Divides the logits of all but the last step; unset: "auto", the student's policy's own rule
  // (Student::auto_temperature: pi-Flow's 0.1 at 2 NFE for GMFlow, 1 for ArcFlow).
  std::optional<double> temperature;
  int total_substeps = 128;  // GMFlow's Euler sub-steps over a whole trajectory
  int64_t max_batch = 256;
  void validate() const;     // std::invalid_argument naming the field
  // The temperature `student` samples with at this nfe: the one given, else its "auto" value.
  double temperature_for(const Student& student) const;
};

// "auto" (unset) or a number > 0, as a flag takes it; std::invalid_argument naming `flag`.
std::optional<double> parse_temperature(const std::string& text, const std::string& flag);
// "auto" or the number as %g writes it (0.1, 1).
std::string temperature_text(const std::optional<double>& t);

// The schedule an adapter was distilled for, from its metadata (the keys `arcflow distill` writes:
// "nfe", "shift", "timestep_ratio", "total_substeps"); absent keys keep the defaults above. Throws std::runtime_error
// naming `source` and the key for a value that is not a number.
StudentSampling distilled_sampling(const io::Metadata& meta, const std::string& source);

// Raw outputs (B, ...) float32 on the CPU from `noise` (at sigma 1) and the condition (B samples,
// or empty). `cb` (may be empty) is called after every step of every batch, with step counted over
// the run. The student runs in eval mode without gradients; its training flag is restored
// afterwards, also when an error is thrown. `observe` (may be empty) sees every step's policy with
// its batch's start and end states (e.g. to collect the mixture weights a student emits).
torch::Tensor sample_student(Student& student, const torch::Tensor& noise, const Condition& cond,
                             const StudentSampling& opt, const SamplerCallback& cb = nullptr,
                             const StepObserver& observe = nullptr);

}  // namespace arcflow
