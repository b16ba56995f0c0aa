// Velocity error of a student against its teacher along the student's rollout (see velocity_profile.h).
#include "arcflow/evaluation/velocity_profile.h"

#include <cmath>
#include <stdexcept>

#include "arcflow/core/schedule.h"
#include "arcflow/core/step_loop.h"
#include "arcflow/sampling/student_sampling.h"

namespace arcflow {

VelocityProfile velocity_profile(Student& student, Teacher& teacher, const torch::Tensor& noise, const Condition& cond,
                                 const StudentSampling& so, int points) {
  if (points < 1) throw std::invalid_argument("velocity profile: points must be >= 1, got " + std::to_string(points));
  const int64_t n = noise.size(0);
  if (n < 1) throw std::invalid_argument("velocity profile: no samples");
  const std::vector<Segment> segs = segments(so.nfe, so.shift, so.timestep_ratio);

  VelocityProfile prof;
  prof.n = n;
  std::vector<double> sq(segs.size() * points, 0.0), tsq(sq.size(), 0.0);
  int64_t elements = 0;
  // The student's own sampler, one batch at a time so the observer knows the batch's condition.
  for (int64_t start = 0; start < n; start += so.max_batch) {
    const int64_t len = std::min(so.max_batch, n - start);
    const Condition c = cond.empty() ? cond : cond.narrow(start, len).to(student.device());
    const StepObserver observe = [&](const StepContext& ctx, const PolicyPtr& policy, const torch::Tensor& x_src,
                                     const torch::Tensor&) {
      for (int k = 0; k < points; ++k) {
        const double s = ctx.segment.sigma_src + (ctx.segment.sigma_dst - ctx.segment.sigma_src) * k / points;
        const torch::Tensor sigma = torch::full_like(ctx.sigma_src, s);
        const torch::Tensor x = k == 0 ? x_src : policy->integrate(x_src, ctx.sigma_src, sigma);
        const torch::Tensor vs = policy->velocity(x, sigma).to(torch::kFloat64);
        const torch::Tensor vt = teacher.velocity(x, sigma, c).to(torch::kFloat64);
        const size_t i = ctx.index * points + k;
        sq[i] += (vs - vt).pow(2).sum().item<double>();
        tsq[i] += vt.pow(2).sum().item<double>();
      }
    };
    const torch::Tensor x0 = noise.narrow(0, start, len);
    sample_student(student, x0, c, so, nullptr, observe);
    elements += x0.numel();
  }
  for (size_t s = 0; s < segs.size(); ++s)
    for (int k = 0; k < points; ++k) {
      const size_t i = s * points + k;
      prof.points.push_back({static_cast<int>(s), segs[s].sigma_src + (segs[s].sigma_dst - segs[s].sigma_src) * k / points,
                             sq[i] / static_cast<double>(elements), tsq[i] / static_cast<double>(elements)});
    }
  return prof;
}

nlohmann::json velocity_profiles_json(const std::vector<VelocityProfile>& profiles) {
  nlohmann::json j = nlohmann::json::object();
  for (const VelocityProfile& p : profiles) {
    nlohmann::json pts = nlohmann::json::array();
    for (const VelocityProfilePoint& q : p.points)
      pts.push_back({{"step", q.step}, {"sigma", q.sigma}, {"mse", q.mse}, {"teacher_ms", q.teacher_ms}});
    j[p.name] = {{"n", p.n}, {"guidance", p.guidance}, {"points", pts}};
  }
  return j;
}

}  // namespace arcflow
