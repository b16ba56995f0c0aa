// Few-step ODE samplers for flow-matching velocity models, in the style of k-diffusion's
// sampling.py: every sampler is a free function with one signature, and a name table gives the
// CLI its list.
//
// Conventions (ARCFLOW.md section 1): sigma = 1 is noise, sigma = 0 is data,
//   x_sigma = (1 - sigma) x0 + sigma eps,  u = dx/dsigma = eps - x0,
// and sampling integrates dx/dsigma = u(x, sigma) from sigmas.front() down to sigmas.back()
// (normally 1 -> 0, e.g. the output of arcflow::sigmas(N, shift, ratio)).
//
// Samplers
//   euler      first order, 1 NFE per step:  x_b = x_a - (sigma_a - sigma_b) u(x_a, sigma_a).
//   heun       second order, 2 NFE per step on EVERY step, the last one included: Euler predictor,
//              trapezoid corrector. A flow-matching model is defined (and trained) at sigma = 0, so
//              unlike k-diffusion (whose EDM denoiser is not) we do not fall back to Euler on the
//              final step to sigma = 0: that would make the step first order for just one NFE saved.
//              Measured consequence (README): with 1-2 steps on the Fashion-MNIST teacher the
//              corrector's velocity at sigma = 0, taken on the predictor's blurry image, keeps about
//              half of the starting noise, so Heun is for many steps, not few.
//   dpmpp_2m   DPM-Solver++(2M) with the rectified-flow schedule alpha = 1 - sigma, 1 NFE per step
//              (first and final steps first order); formulas in samplers.cpp.
//
// All samplers run without gradients (torch::NoGradGuard), like k-diffusion's @torch.no_grad().
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace arcflow {

// A velocity model: u(x, sigma) with sigma of shape (B) (B = x.size(0)), on x's device and dtype.
// (Same type as rollout.h's VelocityModel.)
using VelocityFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma /*(B)*/)>;

// Options shared by all samplers; room for future ones.
struct SamplerOptions {
  // Clamp the final sample to [-1, 1] (the pixel range of the image models).
  bool clamp_final = false;
};

// What a callback sees after each step: step index (0-based) of `total`, the step's sigmas, and the
// state at sigma_next (the state the step produced). `x` points at a tensor owned by the sampler and
// is valid only during the call.
struct StepInfo {
  int step, total;
  double sigma, sigma_next;
  const torch::Tensor* x;
};

// Called exactly once per step, after the step. May be empty.
using SamplerCallback = std::function<void(const StepInfo&)>;

// The common signature. `sigmas` holds the N + 1 step boundaries, strictly decreasing, in [0, 1]
// (N >= 1); x is the state at sigmas.front(). Returns the state at sigmas.back().
// Throws std::invalid_argument for fewer than 2 sigmas, sigmas outside [0, 1] or not decreasing.
using Sampler = torch::Tensor (*)(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                                  const SamplerOptions& opt, const SamplerCallback& cb);

// Explicit Euler (order 1, 1 NFE per step).
torch::Tensor sample_euler(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                           const SamplerOptions& opt = {}, const SamplerCallback& cb = nullptr);

// Heun's method (order 2, 2 NFE per step, final step included).
torch::Tensor sample_heun(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                          const SamplerOptions& opt = {}, const SamplerCallback& cb = nullptr);

// DPM-Solver++(2M) for the rectified-flow schedule (order 2, 1 NFE per step).
torch::Tensor sample_dpmpp_2m(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                              const SamplerOptions& opt = {}, const SamplerCallback& cb = nullptr);

// The name table (in display order: euler, heun, dpmpp_2m).
struct SamplerEntry {
  const char* name;
  Sampler fn;
  const char* description;
};
const std::vector<SamplerEntry>& samplers();

// The sampler called `name`; throws std::invalid_argument listing the valid names.
Sampler find_sampler(const std::string& name);

// The exact number of model calls `name` makes for `steps` steps (euler N, heun 2N, dpmpp_2m N).
// Throws std::invalid_argument for an unknown name or steps < 1. With guided() at a scale other than
// 0 and 1, each model call is one batched call over 2B samples (ARCFLOW.md counts it as 2 NFE).
int sampler_nfe(const std::string& name, int steps);

}  // namespace arcflow
