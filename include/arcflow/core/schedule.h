// Noise schedules (ARCFLOW.md section 1).
//
// Raw time tau in [0, 1] is what schedules are uniform in; the noise level is
//   sigma = warp(tau) = s * tau / (1 + (s - 1) * tau),   shift s >= 1,
// which moves uniformly spaced steps toward high noise. An N-step sampler's step i covers
// tau in [1 - i * base, 1 - (i + 1) * base] with base = 1 / (N - 1 + r); the last step is
// r * base long (timestep_ratio r = 1 gives equal segments).
#pragma once

#include <torch/torch.h>

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

}  // namespace arcflow
