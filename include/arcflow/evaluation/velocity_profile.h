// Where in sigma a student's velocity departs from its teacher's (issue 14's diagnosis). Along the
// student's own rollout from the given noise, at `points` noise levels inside every step
//   sigma_k = sigma_src + (sigma_dst - sigma_src) k / points,   k = 0 .. points-1,
// the state the step's policy reaches there in closed form, x_k = policy.integrate(x_src, sigma_src,
// sigma_k), gives two velocities: the policy's own, policy.velocity(x_k, sigma_k), and the teacher's
// at the same state (the guided teacher the student imitated). The profile is their per-pixel mean
// squared difference at each sigma_k (and the teacher's mean square there, for scale). This is the
// instantaneous error; distillation's loss compares an average over a window (ARCFLOW.md section 4),
// so the two agree in where they are large, not in value.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "arcflow/models/condition.h"
#include "arcflow/models/network.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/student_sampling.h"

namespace arcflow {

struct VelocityProfilePoint {
  int step = 0;           // 0-based student step
  double sigma = 0;       // sigma_k
  double mse = 0;         // mean over samples and pixels of (v_policy - v_teacher)^2
  double teacher_ms = 0;  // mean of v_teacher^2
};

struct VelocityProfile {
  std::string name;
  int64_t n = 0;  // samples
  double guidance = 1.0;
  std::vector<VelocityProfilePoint> points;  // by step, then sigma (decreasing)
};

// The profile of `student` sampled with `so` from `noise` (N, ...) under `cond`, against `teacher`
// (e.g. a GuidedTeacher at the distillation's guidance). points >= 1. No gradients.
VelocityProfile velocity_profile(Student& student, Teacher& teacher, const torch::Tensor& noise, const Condition& cond,
                                 const StudentSampling& so, int points);

nlohmann::json velocity_profiles_json(const std::vector<VelocityProfile>& profiles);

}  // namespace arcflow
