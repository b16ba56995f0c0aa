#include "arcflow/core/schedule.h"

#include <cmath>
#include <cstdio>
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

void StepSchedule::validate(const std::string& what) const {
  if (nfe < 1) throw std::invalid_argument(what + ": nfe must be >= 1, got " + std::to_string(nfe));
  if (!(shift >= 1) || !std::isfinite(shift)) throw std::invalid_argument(what + ": shift must be >= 1");
  if (!(timestep_ratio > 0) || !std::isfinite(timestep_ratio))
    throw std::invalid_argument(what + ": timestep_ratio must be > 0");
  if (total_substeps < 1) throw std::invalid_argument(what + ": total_substeps must be >= 1");
}

double ShiftRule::at(int64_t image_tokens) const {
  if (!dynamic) return shift;
  // In double throughout: the counts come from files and need not be small.
  const double base = static_cast<double>(base_seq_len), span = static_cast<double>(max_seq_len) - base;
  const double mu = base_shift + (max_shift - base_shift) / span * (static_cast<double>(image_tokens) - base);
  return std::exp(mu);
}

std::string ShiftRule::describe() const {
  char buf[160];
  if (dynamic)
    std::snprintf(buf, sizeof buf, "dynamic: exp(%g .. %g over %lld .. %lld tokens)", base_shift, max_shift,
                  static_cast<long long>(base_seq_len), static_cast<long long>(max_seq_len));
  else
    std::snprintf(buf, sizeof buf, "%g", shift);
  return buf;
}

}  // namespace arcflow
