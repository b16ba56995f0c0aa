// Noise schedules (ARCFLOW.md section 1).
//
// Raw time tau in [0, 1] is what schedules are uniform in; the noise level is
//   sigma = warp(tau) = s * tau / (1 + (s - 1) * tau),   shift s >= 1,
// which moves uniformly spaced steps toward high noise. An N-step sampler's step i covers
// tau in [1 - i * base, 1 - (i + 1) * base] with base = 1 / (N - 1 + r); the last step is
// r * base long (timestep_ratio r = 1 gives equal segments).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace arcflow {

// sigma = warp(tau). Valid for tau in [0, 1], shift >= 1 (shift 1 is the identity).
double warp(double tau, double shift);
// tau = unwarp(sigma), the inverse of warp.
double unwarp(double sigma, double shift);
// Element-wise versions for tensors of tau or sigma (any shape, any floating dtype/device).
torch::Tensor warp(const torch::Tensor& tau, double shift);
torch::Tensor unwarp(const torch::Tensor& sigma, double shift);

// One step of an N-step schedule, in raw time and in sigma. tau_src > tau_dst.
struct Segment {
  double tau_src, tau_dst;
  double sigma_src, sigma_dst;
  double length() const { return tau_src - tau_dst; }  // L, in raw time
};

// The N segments from tau = 1 to tau = 0. Throws std::invalid_argument for N < 1 or r <= 0.
std::vector<Segment> segments(int num_steps, double shift, double timestep_ratio = 1.0);

// The N + 1 sigmas of an N-step sampler (1 ... 0), i.e. the segments' boundaries.
std::vector<double> sigmas(int num_steps, double shift, double timestep_ratio = 1.0);

// A few-step schedule: the one value students, the student sampler, the distiller and GMFlow's
// integration take (an adapter's metadata records it; models/student.h reads and writes it).
struct StepSchedule {
  int nfe = 2;                 // steps N (one network call each)
  double shift = 1.0;          // s of warp()
  double timestep_ratio = 1.0;  // r: the last step's length over the others'
  int total_substeps = 128;    // Euler sub-steps over a whole trajectory, for policies without a closed form
  std::vector<Segment> segments() const { return arcflow::segments(nfe, shift, timestep_ratio); }
  // std::invalid_argument naming `what` and the field for nfe < 1, shift < 1, ratio <= 0, sub-steps < 1.
  void validate(const std::string& what) const;
};

// The shift a model folder's scheduler asks for (diffusers' FlowMatchEulerDiscreteScheduler):
// a fixed s, or with use_dynamic_shifting the pipelines' calculate_shift rule for n image tokens,
//   mu = base_shift + (n - base_seq_len) (max_shift - base_shift) / (max_seq_len - base_seq_len),
//   s = exp(mu)   (ARCFLOW.md sections 7 and 8: FLUX.1-dev 0.5 / 1.15 over 256 / 4096 tokens).
// mu is extrapolated linearly outside [base_seq_len, max_seq_len], as the pipelines do.
struct ShiftRule {
  double shift = 1.0;  // the fixed shift (dynamic false)
  bool dynamic = false;
  double base_shift = 0.5, max_shift = 1.15;
  int64_t base_seq_len = 256, max_seq_len = 4096;
  double at(int64_t image_tokens) const;  // s for a sample of that many image tokens
  std::string describe() const;           // "3.2", or "dynamic: exp(0.5 .. 1.15 over 256 .. 4096 tokens)"
};

}  // namespace arcflow
