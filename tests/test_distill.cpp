// The generic distiller on problems whose answer is known.
#include <gtest/gtest.h>

#include <cmath>

#include "arcflow/training/distill.h"

using namespace arcflow;

namespace {

// A student whose policy is one learnable velocity (K = 1) or a learnable mixture shared by all
// samples, independent of x and sigma.
struct FreePolicy {
  torch::Tensor means, logweights, log_gammas;
  FreePolicy(int64_t K, int64_t D) {
    means = torch::zeros({1, K, D}, torch::requires_grad());
    logweights = torch::zeros({1, K, 1}, torch::requires_grad());
    if (K > 1) log_gammas = torch::zeros({1, K - 1, 1}, torch::requires_grad());
  }
  Policy operator()(const torch::Tensor& x, const torch::Tensor& sigma) const {
    const int64_t B = x.size(0);
    return make_policy(means.expand({B, -1, -1}), logweights.expand({B, -1, -1}),
                       log_gammas.defined() ? log_gammas.expand({B, -1, -1}) : torch::Tensor(), sigma);
  }
};

DistillConfig small_config() {
  DistillConfig c;
  c.nfe = 2;
  c.batch_size = 8;
  c.lr = 0.05;
  c.warmup_iters = 10;
  c.num_decay_iters = 20;
  c.ema_start = 10;
  c.seed = 5;
  return c;
}

}  // namespace

TEST(Distiller, LearnsAConstantTeacherField) {
  // Teacher u = c everywhere: the exact student policy is the constant velocity c, loss 0.
  const torch::Tensor c = torch::tensor({0.7f, -1.3f, 0.2f});
  auto student = std::make_shared<FreePolicy>(1, 3);
  DistillProblem prob;
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor&) { return (*student)(x, s); };
  prob.teacher = [c](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) { return c.expand({x.size(0), 3}); };
  prob.sample_shape = {3};
  prob.params = {student->means, student->logweights};
  Distiller d(prob, small_config());
  DistillStats first, last;
  for (int i = 0; i < 400; ++i) {
    last = d.step();
    if (i == 0) first = last;
  }
  EXPECT_EQ(first.teacher_ratio, 1.0);
  EXPECT_NEAR(first.lr, 0.05 / 10, 1e-12);  // warm-up: iteration 1 of 10
  EXPECT_EQ(last.teacher_ratio, 0.0);
  EXPECT_EQ(last.step_losses.size(), 2u);
  EXPECT_LT(last.loss, 1e-4 * first.loss);
  EXPECT_TRUE(torch::allclose(student->means.detach().flatten(), c, 5e-3, 5e-3)) << student->means;
  // The EMA follows the weights once they settle.
  EXPECT_TRUE(torch::allclose(d.ema()[0].flatten(), c, 1e-2, 1e-2)) << d.ema()[0];
}

TEST(Distiller, LearnsAnExponentialTeacherField) {
  // Teacher u(sigma) = a * exp(g * (1 - sigma)) along every path: one momentum component with
  // log-gamma g reproduces it exactly over the whole first step (the policy is emitted at sigma 1).
  const double g = 1.2;
  DistillProblem prob;
  auto student = std::make_shared<FreePolicy>(2, 2);
  {
    torch::NoGradGuard ng;
    student->means.fill_(0.5);
  }
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor&) { return (*student)(x, s); };
  prob.teacher = [g](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) {
    return torch::exp(g * (1 - sigma)).reshape({-1, 1}).expand({x.size(0), 2}) * 0.8;
  };
  prob.sample_shape = {2};
  prob.params = {student->means, student->logweights};
  prob.log_gamma_params = {student->log_gammas};
  DistillConfig cfg = small_config();
  cfg.nfe = 1;
  cfg.component_dropout = 0.0;
  cfg.log_gamma_lr_mult = 1.0;
  Distiller d(prob, cfg);
  for (int i = 0; i < 600; ++i) d.step();
  // The mixture's velocity matches the teacher's along the step.
  d.load_ema_into_params();
  const Policy p = (*student)(torch::zeros({1, 2}), torch::ones({1}));
  for (double s : {1.0, 0.7, 0.4, 0.1}) {
    const double want = 0.8 * std::exp(g * (1 - s));
    EXPECT_NEAR(velocity(p, torch::full({1}, s))[0][0].item<double>(), want, 0.05 * want) << "sigma " << s;
  }
}

TEST(Distiller, NonFiniteTeacherSkipsTheUpdateThenGivesUp) {
  // The teacher returns NaN while `poisoned` is set: those iterations change nothing and are
  // counted; max_bad_steps of them in a row stop with an error.
  auto student = std::make_shared<FreePolicy>(2, 3);
  auto poisoned = std::make_shared<bool>(true);
  DistillProblem prob;
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor&) { return (*student)(x, s); };
  prob.teacher = [poisoned](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) {
    return torch::full({x.size(0), 3}, *poisoned ? std::nan("") : 0.5);
  };
  prob.sample_shape = {3};
  prob.params = {student->means, student->logweights};
  prob.log_gamma_params = {student->log_gammas};
  DistillConfig cfg = small_config();
  cfg.max_bad_steps = 4;
  Distiller d(prob, cfg);
  const torch::Tensor before = student->means.detach().clone();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(d.step().skipped);
  EXPECT_EQ(d.skipped_steps(), 3);
  EXPECT_TRUE(torch::equal(student->means.detach(), before)) << "a skipped step changed the weights";
  *poisoned = false;
  EXPECT_FALSE(d.step().skipped);
  EXPECT_FALSE(torch::equal(student->means.detach(), before));
  *poisoned = true;
  for (int i = 0; i < 3; ++i) d.step();  // 3 in a row: still below the limit of 4
  try {
    d.step();
    ADD_FAILURE() << "no error after 4 non-finite iterations in a row";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("4 non-finite"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(torch::isfinite(student->means).all().item<bool>());
}
