// Sampling with a distilled student (any architecture, any policy): N steps of the shifted schedule,
// one student call per step (1 NFE, no guidance pass: the student learned the guided teacher) and
// the policy followed to the step's end (core/step_loop.h: closed form for ArcFlow, Euler sub-steps
// for GMFlow). LoRA should be fused for speed (fuse_lora); the result is the same up to rounding.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "arcflow/core/schedule.h"
#include "arcflow/core/step_loop.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/condition.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/samplers.h"

namespace arcflow {

// The schedule (core/schedule.h: nfe, shift, timestep_ratio, GMFlow's sub-steps) and how to sample it.
struct StudentSampling : StepSchedule {
  // Divides the logits of all but the last step; unset: "auto", the student's policy's own rule
  // (Student::auto_temperature: pi-Flow's 0.1 at 2 NFE for GMFlow, 1 for ArcFlow).
  std::optional<double> temperature;
  int64_t max_batch = 256;
  void validate() const;  // std::invalid_argument naming the field
  // The temperature `student` samples with at this nfe: the one given, else its "auto" value.
  double temperature_for(const Student& student) const;
};

// "auto" (unset) or a number > 0, as a flag takes it; std::invalid_argument naming `flag`.
std::optional<double> parse_temperature(const std::string& text, const std::string& flag);
// "auto" or the number as %g writes it (0.1, 1).
std::string temperature_text(const std::optional<double>& t);
// How a sample's temperature was chosen, as eval.json, bench.json and the server record it:
// "auto" (the policy's rule) or "given"; temperature_rule_is_auto reads it back.
std::string temperature_rule(bool is_auto);
bool temperature_rule_is_auto(const std::string& rule);

// The schedule an adapter was distilled for, from its metadata (the keys `arcflow distill` writes:
// "nfe", "shift", "timestep_ratio", "total_substeps"); absent keys keep `defaults`' values. Throws
// std::runtime_error naming `source` and the key for a value that is not a number.
StudentSampling distilled_sampling(const io::Metadata& meta, const std::string& source,
                                   const StudentSampling& defaults = {});

// What a command sets over an adapter's distilled schedule; unset fields keep the adapter's.
// The temperature is never read from an adapter: unset means the policy's "auto" rule.
struct SamplingOverrides {
  std::optional<int> nfe;
  std::optional<double> shift, timestep_ratio;
  std::optional<double> temperature;
  std::optional<int64_t> max_batch;
};

// An adapter ready to sample (the one way every command loads one): built on `teacher`, moved to
// its device, in eval mode with LoRA fused, and the schedule it was distilled for (distilled_sampling
// with `defaults` for keys its metadata lacks) after `overrides`, validated.
struct SamplingStudent {
  LoRAStudent student{nullptr};
  StudentSampling sampling;
  io::Metadata metadata;
};
SamplingStudent load_sampling_student(const NetworkPtr& teacher, const std::string& path,
                                      const SamplingOverrides& overrides = {}, const StudentSampling& defaults = {});

// Raw outputs (B, ...) float32 on the CPU from `noise` (at sigma 1) and the condition (B samples,
// or empty). `cb` (may be empty) is called after every step of every batch, with step counted over
// the run. The student runs in eval mode without gradients; its training flag is restored
// afterwards, also when an error is thrown. `observe` (may be empty) sees every step's policy with
// its batch's start and end states (e.g. to collect the mixture weights a student emits).
torch::Tensor sample_student(Student& student, const torch::Tensor& noise, const Condition& cond,
                             const StudentSampling& opt, const SamplerCallback& cb = nullptr,
                             const StepObserver& observe = nullptr);

}  // namespace arcflow
