#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "arcflow/evaluation/metrics.h"
#include "arcflow/core/momentum.h"
#include "arcflow/models/student.h"
#include "arcflow/models/toy_mlp/toy_mlp.h"
#include "arcflow/toy/data.h"
#include "arcflow/toy/pipeline.h"

using namespace arcflow;

TEST(ToyData, ShapesRangesAndCheckerboardSquares) {
  at::Generator gen = at::detail::createCPUGenerator(0);
  for (const auto& name : toy_dataset_names()) {
    const torch::Tensor x = sample_toy(name, 5000, gen);
    EXPECT_EQ(x.sizes(), torch::IntArrayRef({5000, 2})) << name;
    EXPECT_TRUE(torch::isfinite(x).all().item<bool>()) << name;
    EXPECT_LT(x.abs().max().item<double>(), 3.0) << name;
    EXPECT_GT(x.std().item<double>(), 0.5) << name;
  }
  const torch::Tensor cb = sample_toy("checkerboard", 5000, gen);
  // Every point lies in a filled square: floor(x) + floor(y) even, inside [-2, 2]^2.
  const torch::Tensor parity = torch::remainder(torch::floor(cb.select(1, 0)) + torch::floor(cb.select(1, 1)), 2);
  EXPECT_EQ(parity.abs().max().item<double>(), 0.0);
  EXPECT_LE(cb.abs().max().item<double>(), 2.0);
  // 8 gaussians: every point within 0.6 of radius 2.
  const torch::Tensor g8 = sample_toy("8gaussians", 5000, gen);
  EXPECT_LT((g8.norm(2, 1) - 2.0).abs().max().item<double>(), 0.6);
  try {
    sample_toy("swissroll", 1, gen);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("checkerboard"), std::string::npos);
  }
}

TEST(Metrics, SlicedWasserstein) {
  at::Generator gen = at::detail::createCPUGenerator(1);
  const torch::Tensor a = torch::randn({4000, 2}, gen);
  EXPECT_EQ(sliced_wasserstein(a, a, 64, gen), 0.0);
  // Shifting by d moves every projection by d.theta: SW2 = sqrt(E[(d.theta)^2]) = |d| / sqrt(2) in 2-D.
  const torch::Tensor b = a + torch::tensor({3.0f, 4.0f});
  EXPECT_NEAR(sliced_wasserstein(a, b, 2000, gen), 5.0 / std::sqrt(2.0), 0.25);
}

TEST(ToyStudent, StartsAsTheTeacher) {
  torch::manual_seed(0);
  ToyMLP teacher(ToyMLPConfig{64, 4, 16});
  const torch::Tensor x = torch::randn({32, 2}), sigma = torch::rand({32});
  const torch::Tensor u = teacher->forward(x, sigma);
  for (int64_t K : {1, 4, 16}) {
    StudentConfig cfg;
    cfg.K = K;
    cfg.head_bias_noise = 0.0;
    LoRAStudent exact(teacher.ptr(), cfg);
    exact->eval();
    // Before training the mixture velocity at the source sigma is the teacher's output.
    const MomentumMixture p = dynamic_cast<const MomentumPolicy&>(*exact->policy(x, sigma, {})).mixture();
    EXPECT_EQ(p.means.sizes(), torch::IntArrayRef({32, K, 2}));
    EXPECT_TRUE(torch::allclose(velocity(p, sigma), u, 1e-5, 1e-5)) << "K=" << K;
    // With the documented bias noise (std 0.05 per component, averaged by uniform weights).
    cfg.head_bias_noise = 0.05;
    LoRAStudent noisy(teacher.ptr(), cfg);
    noisy->eval();
    EXPECT_LT((noisy->policy(x, sigma, {})->velocity(x, sigma) - u).abs().max().item<double>(), 0.25);
    // Log-gammas start evenly spaced from ln 0.2 to ln 4, the same at every input.
    if (K > 1) {
      const torch::Tensor g = p.log_gammas[0].flatten();
      EXPECT_NEAR(g[1].item<double>(), std::log(0.2), 1e-6);
      EXPECT_NEAR(g[K - 1].item<double>(), std::log(4.0), 1e-6);
    }
  }
}

TEST(ToyStudent, TrainsOnlyAdaptersAndHead) {
  ToyMLP teacher(ToyMLPConfig{});
  LoRAStudent s(teacher.ptr(), StudentConfig{});
  int64_t trainable = 0, total = 0;
  for (const auto& p : s->parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  int64_t listed = 0;
  for (const auto& p : s->main_parameters()) listed += p.numel();
  for (const auto& p : s->log_gamma_parameters()) listed += p.numel();
  EXPECT_EQ(trainable, listed);
  EXPECT_GT(trainable, 0);
  EXPECT_LT(trainable, total);
}

TEST(ToyPipeline, ReproducibleWithASeed) {
  ToyConfig cfg;
  cfg.teacher_iters = 20;
  cfg.teacher_batch = 128;
  cfg.distill_iters = 3;
  cfg.distill.batch_size = 32;
  cfg.eval_samples = 64;
  cfg.plot_paths = 4;
  cfg.progress = false;
  const ToyResult a = run_toy(cfg), b = run_toy(cfg);
  ASSERT_EQ(a.rows.size(), 5u);  // reference, teacher-euler, linear, gmflow, arcflow
  for (size_t i = 0; i < a.rows.size(); ++i) {
    EXPECT_EQ(a.rows[i].endpoint_mse, b.rows[i].endpoint_mse) << a.rows[i].method;
    EXPECT_EQ(a.rows[i].path_mse, b.rows[i].path_mse) << a.rows[i].method;
  }
  for (const char* name : {"linear", "gmflow", "arcflow"})
    EXPECT_EQ(a.student(name).losses, b.student(name).losses) << name;
}

// The seeded end-to-end check: distillation must bring both students' endpoints far closer to the
// teacher's fine solution than the teacher's own 2 Euler steps get.
TEST(ToyPipeline, DistillationBeatsTwoEulerSteps) {
  ToyConfig cfg;
  cfg.data = "checkerboard";
  cfg.shift = 3.0;
  cfg.teacher_iters = 600;
  cfg.teacher_batch = 512;
  cfg.distill_iters = 150;
  cfg.distill.batch_size = 256;
  cfg.distill.num_decay_iters = 50;
  cfg.distill.warmup_iters = 30;
  cfg.distill.ema_start = 30;
  cfg.eval_samples = 1024;
  cfg.progress = false;
  const ToyResult r = run_toy(cfg);
  auto row = [&](const std::string& m) {
    for (const auto& x : r.rows)
      if (x.method == m) return x;
    ADD_FAILURE() << "no row " << m;
    return ToyRow{};
  };
  for (const auto& x : r.rows)
    std::printf("  %-18s endpoint_mse %.5f path_mse %.5f swd %.4f\n", x.method.c_str(), x.endpoint_mse, x.path_mse, x.swd);
  const double euler = row("teacher-euler-2").endpoint_mse;
  EXPECT_LT(row("linear-2").endpoint_mse, 0.5 * euler);
  EXPECT_LT(row("arcflow-2").endpoint_mse, 0.25 * euler);
  EXPECT_LT(row("arcflow-2").path_mse, row("teacher-euler-2").path_mse);
  EXPECT_EQ(row("teacher-euler-128").endpoint_mse, 0.0);
  // Losses fell: the last 20 iterations' mean is below the first 20's.
  double first = 0, last = 0;
  const std::vector<double>& losses = r.student("arcflow").losses;
  for (int i = 0; i < 20; ++i) first += losses[i], last += losses[losses.size() - 1 - i];
  EXPECT_LT(last, first);
}
