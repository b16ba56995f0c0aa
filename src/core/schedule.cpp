#include "arcflow/core/schedule.h"

#include <stdexcept>
#include <string>

namespace arcflow {

namespace {
void check_shift(double shift) {
  if (!(shift > 0.0)) throw std::invalid_argument("shift must be > 0, got " + std::to_string(shift));
}
}  // namespace

double warp(double tau, double shift) {
  check_shift(shift);
  return shift * tau / (1.0 + (shift - 1.0) * tau);
}

double unwarp(double sigma, double shift) {
  check_shift(shift);
  // Solve sigma (1 + (s - 1) tau) = s tau for tau.
  return sigma / (shift - (shift - 1.0) * sigma);
}

torch::Tensor warp(const torch::Tensor& tau, double shift) {
  check_shift(shift);
  return tau * shift / (tau * (shift - 1.0) + 1.0);
}

torch::Tensor unwarp(const torch::Tensor& sigma, double shift) {
  check_shift(shift);
  return sigma / (shift - sigma * (shift - 1.0));
}

std::vector<Segment> segments(int num_steps, double shift, double timestep_ratio) {
  if (num_steps < 1) throw std::invalid_argument("number of steps must be >= 1, got " + std::to_string(num_steps));
  if (!(timestep_ratio > 0.0))
    throw std::invalid_argument("timestep_ratio must be > 0, got " + std::to_string(timestep_ratio));
  const double base = 1.0 / (num_steps - 1 + timestep_ratio);
  std::vector<Segment> out;
  out.reserve(num_steps);
  for (int i = 0; i < num_steps; ++i) {
    const double a = 1.0 - i * base;
    // The last segment always ends exactly at 0 (no rounding residue).
    const double b = (i == num_steps - 1) ? 0.0 : 1.0 - (i + 1) * base;
    out.push_back({a, b, warp(a, shift), warp(b, shift)});
  }
  return out;
}

std::vector<double> sigmas(int num_steps, double shift, double timestep_ratio) {
  std::vector<double> out;
  for (const auto& s : segments(num_steps, shift, timestep_ratio)) out.push_back(s.sigma_src);
  out.push_back(0.0);
  return out;
}

}  // namespace arcflow
