// The generic distiller on problems whose answer is known.
#include <gtest/gtest.h>

#include <cmath>

#include "arcflow/core/momentum.h"
#include "arcflow/core/schedule.h"
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
  MomentumMixture mixture(const torch::Tensor& x, const torch::Tensor& sigma) const {
    const int64_t B = x.size(0);
    return make_mixture(means.expand({B, -1, -1}), logweights.expand({B, -1, -1}),
                       log_gammas.defined() ? log_gammas.expand({B, -1, -1}) : torch::Tensor(), sigma);
  }
  PolicyPtr operator()(const torch::Tensor& x, const torch::Tensor& sigma) const {
    return std::make_shared<MomentumPolicy>(mixture(x, sigma));
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

// The problem of a K = 1 free student imitating the teacher u = c (3 values) everywhere.
DistillProblem constant_field_problem(const std::shared_ptr<FreePolicy>& student, const torch::Tensor& c) {
  DistillProblem prob;
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const Condition&) { return (*student)(x, s); };
  prob.teacher = [c](const torch::Tensor& x, const torch::Tensor&, const Condition&) { return c.expand({x.size(0), 3}); };
  prob.sample_shape = {3};
  prob.params = {student->means, student->logweights};
  return prob;
}

}  // namespace

TEST(Distiller, LearnsAConstantTeacherField) {
  // Teacher u = c everywhere: the exact student policy is the constant velocity c, loss 0.
  const torch::Tensor c = torch::tensor({0.7f, -1.3f, 0.2f});
  auto student = std::make_shared<FreePolicy>(1, 3);
  const DistillProblem prob = constant_field_problem(student, c);
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
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const Condition&) { return (*student)(x, s); };
  prob.teacher = [g](const torch::Tensor& x, const torch::Tensor& sigma, const Condition&) {
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
  const MomentumMixture p = student->mixture(torch::zeros({1, 2}), torch::ones({1}));
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
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const Condition&) { return (*student)(x, s); };
  prob.teacher = [poisoned](const torch::Tensor& x, const torch::Tensor&, const Condition&) {
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

namespace {

// Records every teacher call of a walk: (x_a, sigma_a) and the velocity returned.
struct Recorder {
  std::vector<torch::Tensor> x, sigma, u;
};

// The teacher field u(x, sigma) = 0.5 x + sigma (known, x-dependent), recorded.
DistillProblem recorded_problem(const std::shared_ptr<FreePolicy>& student, const std::shared_ptr<Recorder>& rec) {
  DistillProblem prob;
  prob.student = [student](const torch::Tensor& x, const torch::Tensor& s, const Condition&) { return (*student)(x, s); };
  prob.teacher = [rec](const torch::Tensor& x, const torch::Tensor& sigma, const Condition&) {
    const torch::Tensor u = 0.5 * x + sigma.reshape({-1, 1});
    rec->x.push_back(x.clone());
    rec->sigma.push_back(sigma.clone());
    rec->u.push_back(u.clone());
    return u;
  };
  prob.sample_shape = {3};
  prob.params = {student->means, student->logweights};
  return prob;
}

}  // namespace

// With teacher_ratio = 1 the walk is the teacher's own Euler trajectory: M teacher calls per step,
// each state the previous one moved by one Euler step of the teacher, over L - W in all; the
// student's policy then covers the window W to the step's end. The loss of a step is
// 0.5 * scale * L * (mean over the M states of the squared error of the student's prediction).
TEST(Distiller, WalkWithTeacherRatioOneVisitsTheTeachersEulerStates) {
  auto student = std::make_shared<FreePolicy>(1, 3);
  {
    torch::NoGradGuard ng;
    student->means.copy_(torch::tensor({0.3, -0.2, 0.1}).reshape({1, 1, 3}));  // constant velocity c
  }
  auto rec = std::make_shared<Recorder>();
  DistillConfig cfg = small_config();
  cfg.num_decay_iters = 1000000;  // teacher_ratio 1 on the first iteration
  cfg.num_intermediate_states = 3;
  cfg.total_substeps = 16;
  cfg.window_substeps = 2;
  cfg.shift = 2.0;
  cfg.component_dropout = 0.0;
  const torch::Tensor c = student->means.detach().reshape({1, 3}).clone();  // before the update
  Distiller d(recorded_problem(student, rec), cfg);
  const DistillStats st = d.step();
  const int64_t M = cfg.num_intermediate_states;
  ASSERT_EQ(rec->x.size(), static_cast<size_t>(cfg.nfe * M));  // M teacher states per student step
  const auto segs = segments(cfg.nfe, cfg.shift, cfg.timestep_ratio);
  const double W = static_cast<double>(cfg.window_substeps) / cfg.total_substeps;
  for (int i = 0; i < cfg.nfe; ++i) {
    const Segment& seg = segs[i];
    const size_t first = static_cast<size_t>(i * M);
    // The first state of the step is its source.
    EXPECT_TRUE(torch::allclose(rec->sigma[first], torch::full({cfg.batch_size}, seg.sigma_src), 0, 1e-6));
    // Each next state is one Euler step of the teacher from the previous one.
    for (int64_t j = 1; j < M; ++j) {
      const size_t k = first + static_cast<size_t>(j);
      const torch::Tensor ds = (rec->sigma[k - 1] - rec->sigma[k]).reshape({-1, 1});
      EXPECT_TRUE((ds > 0).all().item<bool>());
      EXPECT_TRUE(torch::allclose(rec->x[k], rec->x[k - 1] - ds * rec->u[k - 1], 1e-5, 1e-6)) << "state " << k;
    }
    // The last Euler step ends at tau_src - (L - W); the student covers the window to the end.
    const double sigma_end_walk = warp(seg.tau_src - (seg.length() - W), cfg.shift);
    const size_t last = first + static_cast<size_t>(M - 1);
    const torch::Tensor x_walk =
        rec->x[last] - (rec->sigma[last] - sigma_end_walk).reshape({-1, 1}) * rec->u[last];
    const torch::Tensor x_end = x_walk - (sigma_end_walk - seg.sigma_dst) * c;
    if (i + 1 < cfg.nfe) {
      EXPECT_TRUE(torch::allclose(rec->x[first + static_cast<size_t>(M)], x_end, 1e-5, 1e-6))
          << "the next step does not start where the walk and the window end";
    }
    // The loss on this known field.
    double mse = 0;
    for (int64_t j = 0; j < M; ++j) mse += (c - rec->u[first + static_cast<size_t>(j)]).pow(2).mean().item<double>();
    mse /= static_cast<double>(M);
    EXPECT_NEAR(st.step_losses[static_cast<size_t>(i)], 0.5 * cfg.loss_scale * seg.length() * mse, 1e-4)
        << "step " << i;
  }
}

// With teacher_ratio = 0 the teacher never moves the walk: every state is the student's policy
// followed from the step's source, and the states advance by the student's intervals.
TEST(Distiller, WalkWithTeacherRatioZeroFollowsTheStudent) {
  auto student = std::make_shared<FreePolicy>(1, 3);
  {
    torch::NoGradGuard ng;
    student->means.copy_(torch::tensor({0.3, -0.2, 0.1}).reshape({1, 1, 3}));
  }
  auto rec = std::make_shared<Recorder>();
  DistillConfig cfg = small_config();
  cfg.num_decay_iters = 0;  // teacher_ratio 0 from the start
  cfg.num_intermediate_states = 4;
  cfg.component_dropout = 0.0;
  const torch::Tensor c = student->means.detach().reshape({1, 3}).clone();  // before the update
  Distiller d(recorded_problem(student, rec), cfg);
  d.step();
  const auto segs = segments(cfg.nfe, cfg.shift, cfg.timestep_ratio);
  const int64_t M = cfg.num_intermediate_states;
  ASSERT_EQ(rec->x.size(), static_cast<size_t>(cfg.nfe * M));
  // Step 1 starts at the noise x(1); every state is x(1) - (1 - sigma_a) c along the student's line.
  const torch::Tensor x1 = rec->x[0] + (segs[0].sigma_src - rec->sigma[0]).reshape({-1, 1}) * c;
  for (int64_t j = 0; j < M; ++j) {
    const torch::Tensor want = x1 - (segs[0].sigma_src - rec->sigma[j]).reshape({-1, 1}) * c;
    EXPECT_TRUE(torch::allclose(rec->x[j], want, 1e-5, 1e-6)) << "state " << j;
    if (j > 0) {
      EXPECT_TRUE((rec->sigma[j] < rec->sigma[j - 1]).all().item<bool>());
    }
  }
  // The walk stays at least the window W above the step's end.
  const double W = static_cast<double>(cfg.window_substeps) / cfg.total_substeps;
  EXPECT_TRUE((rec->sigma[M - 1] >= warp(segs[0].tau_dst + W, cfg.shift) - 1e-6).all().item<bool>());
}

// Section 4's recipe: gradients clipped from iteration 100 (not before), the EMA copying the weights
// before iteration 100 and averaging from it on the clock t = iteration + 1 - 100.
TEST(Distiller, RecipeDefaultsStartClippingAndTheEmaAtIteration100) {
  const DistillConfig c;
  EXPECT_EQ(c.grad_clip_start, 100);
  EXPECT_EQ(c.ema_start, 100);
  EXPECT_TRUE(c.ema_clock_from_start);
}

TEST(Distiller, ClippingStartsAtGradClipStart) {
  // Teacher u = 50 everywhere: gradients far above the clip of 1 at every iteration. After step()
  // the parameters' .grad holds what the optimizer used (clipped or not).
  const torch::Tensor c = torch::full({3}, 50.0f);
  auto student = std::make_shared<FreePolicy>(1, 3);
  const DistillProblem prob = constant_field_problem(student, c);
  DistillConfig cfg = small_config();
  cfg.lr = 1e-4;
  cfg.grad_clip = 1.0;
  cfg.grad_clip_start = 4;
  Distiller d(prob, cfg);
  for (int it = 1; it <= 6; ++it) {
    const DistillStats st = d.step();
    double used = 0;
    for (const auto& p : prob.params) used += p.grad().pow(2).sum().item<double>();
    used = std::sqrt(used);
    ASSERT_GT(st.grad_norm, 10.0) << "iteration " << it;
    if (it < 4) EXPECT_NEAR(used, st.grad_norm, 1e-3 * st.grad_norm) << "iteration " << it << " was clipped";
    else EXPECT_NEAR(used, 1.0, 1e-4) << "iteration " << it << " was not clipped";
  }
}

TEST(Distiller, EmaCopiesBeforeEmaStartThenAveragesOnItsOwnClock) {
  const torch::Tensor c = torch::tensor({0.7f, -1.3f, 0.2f});
  auto student = std::make_shared<FreePolicy>(1, 3);
  const DistillProblem prob = constant_field_problem(student, c);
  DistillConfig cfg = small_config();
  cfg.ema_start = 5;
  cfg.ema_gamma = 7.0;
  Distiller d(prob, cfg);
  torch::Tensor ema;  // written out from section 4
  for (int it = 1; it <= 9; ++it) {
    d.step();
    const torch::Tensor w = student->means.detach().clone();
    if (it < 5) {
      ema = w;
    } else {
      const double t = it + 1 - 5;  // 1 at ema_start: a copy
      const double beta = std::pow(1.0 - 1.0 / t, 8.0);
      ema = beta * ema + (1.0 - beta) * w;
    }
    EXPECT_TRUE(torch::allclose(d.ema()[0], ema, 1e-6, 1e-7)) << "iteration " << it;
  }
}
