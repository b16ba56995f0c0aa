#include "arcflow/sampling/student_sampling.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "arcflow/core/schedule.h"
#include "arcflow/core/step_loop.h"
#include "arcflow/util/text.h"

namespace arcflow {

void StudentSampling::validate() const {
  StepSchedule::validate("student sampling");
  if (temperature && !(*temperature > 0 && std::isfinite(*temperature)))
    throw std::invalid_argument("student sampling: temperature must be > 0 (or auto)");
  if (max_batch < 1) throw std::invalid_argument("student sampling: max_batch must be >= 1");
}

double StudentSampling::temperature_for(const Student& student) const {
  return temperature ? *temperature : student.auto_temperature(nfe);
}

std::optional<double> parse_temperature(const std::string& text, const std::string& flag) {
  if (text == "auto") return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || !std::isfinite(v))
    throw std::invalid_argument(flag + " '" + text + "': expected auto or a number > 0");
  return v;
}

std::string temperature_text(const std::optional<double>& t) {
  return t ? format_number(*t) : "auto";
}

std::string temperature_rule(bool is_auto) { return is_auto ? "auto" : "given"; }

bool temperature_rule_is_auto(const std::string& rule) { return rule == "auto"; }

StudentSampling distilled_sampling(const io::Metadata& meta, const std::string& source,
                                   const StudentSampling& defaults) {
  StudentSampling s = defaults;
  static_cast<StepSchedule&>(s) = read_schedule(meta, source, defaults);
  return s;
}

SamplingStudent load_sampling_student(const NetworkPtr& teacher, const std::string& path,
                                      const SamplingOverrides& overrides, const StudentSampling& defaults) {
  SamplingStudent out;
  out.student = load_adapter(teacher, path, &out.metadata);
  out.student->to(teacher->device());
  out.student->eval();
  out.student->fuse_lora();
  StudentSampling& s = out.sampling;
  s = distilled_sampling(out.metadata, path, defaults);
  if (overrides.nfe) s.nfe = *overrides.nfe;
  if (overrides.shift) s.shift = *overrides.shift;
  if (overrides.timestep_ratio) s.timestep_ratio = *overrides.timestep_ratio;
  if (overrides.max_batch) s.max_batch = *overrides.max_batch;
  s.temperature = overrides.temperature;
  s.validate();
  return out;
}

torch::Tensor sample_student(Student& student, const torch::Tensor& noise, const Condition& cond,
                             const StudentSampling& opt, const SamplerCallback& cb,
                             const StepObserver& observe_policy) {
  opt.validate();
  const int64_t n = noise.size(0);
  student.check_condition(cond, n);
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(student.module());
  student.integration = IntegrationOptions{opt.shift, opt.total_substeps};
  const auto device = student.device();
  const std::vector<Segment> segs = opt.segments();
  const double temperature = opt.temperature_for(student);
  std::vector<torch::Tensor> out;
  const int total = static_cast<int>(((n + opt.max_batch - 1) / opt.max_batch) * opt.nfe);
  int done = 0;
  for (int64_t start = 0; start < n; start += opt.max_batch) {
    const int64_t len = std::min(opt.max_batch, n - start);
    const Condition c = cond.empty() ? cond : cond.narrow(start, len).to(device);
    const PolicyFn model = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
      return student.policy(x, sigma, c);
    };
    StepObserver observe;
    if (cb || observe_policy)
      observe = [&](const StepContext& ctx, const PolicyPtr& policy, const torch::Tensor& x_src,
                    const torch::Tensor& x_dst) {
        if (observe_policy) observe_policy(ctx, policy, x_src, x_dst);
        if (cb) cb(StepInfo{done++, total, ctx.segment.sigma_src, ctx.segment.sigma_dst, &x_dst});
      };
    const torch::Tensor x0 = noise.narrow(0, start, len).to(device, torch::kFloat32);
    out.push_back(run_steps(model, x0, segs, StepLoopOptions{temperature}, observe).to(torch::kCPU, torch::kFloat32));
  }
  return torch::cat(out, 0);
}

}  // namespace arcflow
