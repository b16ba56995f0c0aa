// Tests for arcflow/evaluation/velocity_profile.h: a K = 1 student with zero LoRA and no head noise
// is the conditional teacher's Euler, so its profile is written out by hand from the teacher (the
// state at sigma_k on the straight line from the step's start, the teacher's velocity there), for
// the plain teacher (zero error at each step's start) and a guided one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "arcflow/evaluation/velocity_profile.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/sampling/generate.h"
#include "eval_test_util.h"

using namespace arcflow;

TEST(VelocityProfile, LinearStudentAgainstTheTeacherByHand) {
  DiT teacher = test::random_eval_teacher();
  LoRAStudent st = test::zero_lora_student(teacher, 1);
  const int64_t n = 6;
  const torch::Tensor noise = make_noise(n, {1, 28, 28}, 3);
  const torch::Tensor y = torch::arange(n, torch::kLong) % 10;
  StudentSampling so;
  so.nfe = 2;
  so.shift = 1.0;
  so.max_batch = 4;  // two batches

  for (double scale : {1.0, 2.5}) {
    SCOPED_TRACE(scale);
    GuidedTeacher guided(teacher.ptr(), scale);
    const VelocityProfile p = velocity_profile(*st, guided, noise, Condition::labels(y), so, 4);
    ASSERT_EQ(p.points.size(), 8u);
    EXPECT_EQ(p.n, n);

    torch::NoGradGuard g;
    const auto cond_v = [&](const torch::Tensor& x, double s) { return teacher->forward(x, torch::full({n}, s), y); };
    const auto guided_v = [&](const torch::Tensor& x, double s) {
      const torch::Tensor uc = cond_v(x, s);
      if (scale == 1.0) return uc;
      const torch::Tensor un = teacher->forward(x, torch::full({n}, s), torch::full({n}, 10, torch::kLong));
      return un + scale * (uc - un);
    };
    torch::Tensor x_src = noise.clone();
    size_t i = 0;
    for (int step = 0; step < 2; ++step) {
      const double s0 = step == 0 ? 1.0 : 0.5, s1 = step == 0 ? 0.5 : 0.0;
      const torch::Tensor u = cond_v(x_src, s0);  // the student's constant velocity in this step
      for (int k = 0; k < 4; ++k, ++i) {
        const double s = s0 + (s1 - s0) * k / 4.0;
        const torch::Tensor x = x_src + (s - s0) * u;
        const torch::Tensor vt = guided_v(x, s).to(torch::kFloat64);
        const double mse = (u.to(torch::kFloat64) - vt).pow(2).mean().item<double>();
        const double ms = vt.pow(2).mean().item<double>();
        EXPECT_EQ(p.points[i].step, step);
        EXPECT_NEAR(p.points[i].sigma, s, 1e-12);
        EXPECT_NEAR(p.points[i].mse, mse, 1e-5 * ms + 1e-10) << "point " << i;
        EXPECT_NEAR(p.points[i].teacher_ms, ms, 1e-5 * ms);
        if (k == 0 && scale == 1.0) {
          EXPECT_LT(p.points[i].mse, 1e-10 * ms);  // the student starts on the teacher
        } else {
          EXPECT_GT(p.points[i].mse, 0.0);
        }
      }
      x_src = x_src + (s1 - s0) * u;
    }
  }
  GuidedTeacher plain(teacher.ptr(), 1.0);
  EXPECT_THROW(velocity_profile(*st, plain, noise, Condition::labels(y), so, 0), std::invalid_argument);
  const nlohmann::json j = velocity_profiles_json({velocity_profile(*st, plain, noise, Condition::labels(y), so, 2)});
  EXPECT_EQ(j.begin().value()["points"].size(), 4u);
}
