#include "arcflow/training/image_distill.h"

#include "arcflow/sampling/guidance.h"

namespace arcflow {

DistillProblem make_dit_distill_problem(DiTStudent student, DiT teacher, double guidance, torch::Device device) {
  teacher->eval();
  freeze(*teacher);
  student->train();
  const DiTConfig& t = teacher->config;
  DistillProblem p;
  p.student = [student](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y) mutable {
    return student->forward(x, sigma, y);
  };
  const int64_t null_class = t.num_classes;
  p.teacher = [teacher, guidance, null_class](const torch::Tensor& x, const torch::Tensor& sigma,
                                              const torch::Tensor& y) {
    const ConditionalVelocityFn model = [teacher](const torch::Tensor& xx, const torch::Tensor& s,
                                                  const torch::Tensor& yy) mutable { return teacher->forward(xx, s, yy); };
    return guided(model, y, null_class, guidance)(x, sigma);
  };
  const int64_t classes = t.num_classes;
  p.sample_conditions = [classes](int64_t batch, at::Generator& gen) {
    return torch::randint(classes, {batch}, gen, torch::kLong);
  };
  p.sample_shape = {t.in_channels, t.image_size, t.image_size};
  p.params = student->main_parameters();
  p.log_gamma_params = student->log_gamma_parameters();
  p.device = device;
  return p;
}

}  // namespace arcflow
