#include "arcflow/sampling/student_sampling.h"

#include <cstdlib>
#include <stdexcept>

#include "arcflow/core/schedule.h"

namespace arcflow {

void StudentSampling::validate() const {
  if (nfe < 1) throw std::invalid_argument("student sampling: nfe must be >= 1, got " + std::to_string(nfe));
  if (!(shift >= 1)) throw std::invalid_argument("student sampling: shift must be >= 1");
  if (!(timestep_ratio > 0)) throw std::invalid_argument("student sampling: timestep_ratio must be > 0");
  if (!(temperature > 0)) throw std::invalid_argument("student sampling: temperature must be > 0");
  if (max_batch < 1) throw std::invalid_argument("student sampling: max_batch must be >= 1");
}

StudentSampling distilled_sampling(const io::Metadata& meta, const std::string& source) {
  const auto number = [&](const char* key, double fallback) {
    const auto it = meta.find(key);
    if (it == meta.end()) return fallback;
    char* end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    if (end == it->second.c_str())
      throw std::runtime_error(source + ": unreadable '" + key + "' in the adapter metadata: '" + it->second + "'");
    return v;
  };
  StudentSampling s;
  s.nfe = static_cast<int>(number("nfe", s.nfe));
  s.shift = number("shift", s.shift);
  s.timestep_ratio = number("timestep_ratio", s.timestep_ratio);
  return s;
}

torch::Tensor sample_student(DiTStudent& student, const torch::Tensor& noise, const torch::Tensor& labels,
                             const StudentSampling& opt, const SamplerCallback& cb) {
  opt.validate();
  if (noise.size(0) != labels.size(0)) throw std::invalid_argument("sample_student: noise and labels differ in size");
  torch::NoGradGuard no_grad;
  const bool was_training = student->is_training();
  student->eval();
  const auto device = student->proj_out_means->weight.device();
  const std::vector<Segment> segs = segments(opt.nfe, opt.shift, opt.timestep_ratio);
  std::vector<torch::Tensor> out;
  const int64_t n = noise.size(0);
  const int total = static_cast<int>(((n + opt.max_batch - 1) / opt.max_batch) * opt.nfe);
  int done = 0;
  for (int64_t start = 0; start < n; start += opt.max_batch) {
    const int64_t len = std::min(opt.max_batch, n - start);
    const torch::Tensor y = labels.narrow(0, start, len).to(device);
    torch::Tensor x = noise.narrow(0, start, len).to(device, torch::kFloat32);
    for (size_t i = 0; i < segs.size(); ++i) {
      const torch::Tensor s_src = torch::full({len}, segs[i].sigma_src, x.options());
      const torch::Tensor s_dst = torch::full({len}, segs[i].sigma_dst, x.options());
      Policy p = student->forward(x, s_src, y);
      if (opt.temperature != 1.0 && i + 1 < segs.size()) p = with_temperature(p, opt.temperature);
      x = integrate(p, x, s_src, s_dst);  // closed form: no discretisation error inside the step
      if (cb) cb(StepInfo{done++, total, segs[i].sigma_src, segs[i].sigma_dst, &x});
    }
    out.push_back(x.to(torch::kCPU, torch::kFloat32));
  }
  if (was_training) student->train();
  return torch::cat(out, 0);
}

}  // namespace arcflow
