#include "arcflow/sampling/rollout.h"

#include <stdexcept>

#include "arcflow/core/momentum.h"

namespace arcflow {

PolicyFn euler_policy(VelocityModel model) {
  return [model = std::move(model)](const torch::Tensor& x, const torch::Tensor& sigma) {
    return linear_policy(model(x, sigma), sigma);
  };
}

Rollout rollout(const PolicyFn& model, const torch::Tensor& noise, const std::vector<Segment>& segs,
                double temperature) {
  torch::NoGradGuard no_grad;
  Rollout r;
  r.segments = segs;
  r.final = run_steps(model, noise, segs, StepLoopOptions{temperature},
                      [&r](const StepContext&, const PolicyPtr& p, const torch::Tensor& x_src, const torch::Tensor&) {
                        r.sources.push_back(x_src);
                        r.policies.push_back(p);
                      });
  return r;
}

torch::Tensor state_at(const Rollout& r, size_t step, double sigma) {
  if (step >= r.policies.size()) throw std::out_of_range("state_at: no such step");
  torch::NoGradGuard no_grad;
  const torch::Tensor& x = r.sources[step];
  const auto opts = x.options();
  return r.policies[step]->integrate(x, torch::full({x.size(0)}, r.segments[step].sigma_src, opts),
                                     torch::full({x.size(0)}, sigma, opts));
}

std::vector<Segment> subdivide(const std::vector<Segment>& segs, int per_segment, double shift) {
  if (per_segment < 1) throw std::invalid_argument("subdivide: per_segment must be >= 1");
  std::vector<Segment> out;
  for (const auto& s : segs) {
    for (int j = 0; j < per_segment; ++j) {
      const double a = s.tau_src - s.length() * j / per_segment;
      const double b = j + 1 == per_segment ? s.tau_dst : s.tau_src - s.length() * (j + 1) / per_segment;
      out.push_back({a, b, warp(a, shift), warp(b, shift)});
    }
  }
  return out;
}

}  // namespace arcflow
