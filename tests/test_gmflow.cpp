// pi-Flow's GMFlow policy (ARCFLOW.md section 2b) against independent computations: the posterior
// mean of x0 by brute-force quadrature of prior x likelihood ratio on a grid (1-D and 2-D), the
// policy's velocity at its own source, and the order of its Euler sub-steps against RK4.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <vector>

#include "arcflow/core/gmflow.h"
#include "arcflow/core/schedule.h"

using namespace arcflow;

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// A one-sample, one-pixel mixture with C channels: means (1, K, C, 1, 1).
GaussianMixture one_pixel(const std::vector<std::vector<double>>& mu, const std::vector<double>& logits,
                          double logstd, const std::vector<double>& x_s, double sigma_s) {
  const int64_t K = static_cast<int64_t>(mu.size()), C = static_cast<int64_t>(x_s.size());
  GaussianMixture g;
  g.means = torch::zeros({1, K, C, 1, 1}, kF64);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) g.means[0][k][c][0][0] = mu[k][c];
  g.logweights = torch::tensor(logits, kF64).reshape({1, K, 1, 1, 1});
  g.logstd = torch::full({1}, logstd, kF64);
  g.x_src = torch::tensor(x_s, kF64).reshape({1, C, 1, 1});
  g.sigma_src = torch::full({1}, sigma_s, kF64);
  return g;
}

// E[x0 | x_t] by quadrature on a grid: prior q(x0) = sum_k w_k N(x0; x_s - sigma_s mu_k, v I) times
// the likelihood ratio N(x_t; a_t x0, s_t^2) / N(x_s; a_s x0, s_s^2), written out with std::exp.
std::vector<double> brute_force_x0(const std::vector<std::vector<double>>& mu, const std::vector<double>& logits,
                                   double logstd, const std::vector<double>& x_s, double s_s,
                                   const std::vector<double>& x_t, double s_t) {
  const size_t K = mu.size(), C = x_s.size();
  const double v = std::exp(2 * logstd) * s_s * s_s, a_s = 1 - s_s, a_t = 1 - s_t;
  double zmax = -1e300;
  for (double l : logits) zmax = std::max(zmax, l);
  std::vector<double> w(K);
  double wsum = 0;
  for (size_t k = 0; k < K; ++k) wsum += (w[k] = std::exp(logits[k] - zmax));
  const double lo = -8, hi = 8;
  const int n = C == 1 ? 40001 : 801;
  const double h = (hi - lo) / (n - 1);
  std::vector<double> num(C, 0.0);
  double den = 0;
  std::vector<int> idx(C, 0);
  const size_t total = C == 1 ? n : static_cast<size_t>(n) * n;
  for (size_t it = 0; it < total; ++it) {
    std::vector<double> x0(C);
    x0[0] = lo + h * static_cast<double>(it % n);
    if (C == 2) x0[1] = lo + h * static_cast<double>(it / n);
    double prior = 0;
    for (size_t k = 0; k < K; ++k) {
      double d2 = 0;
      for (size_t c = 0; c < C; ++c) {
        const double m = x_s[c] - s_s * mu[k][c];
        d2 += (x0[c] - m) * (x0[c] - m);
      }
      prior += w[k] / wsum * std::exp(-d2 / (2 * v));
    }
    double lr = 0;
    for (size_t c = 0; c < C; ++c)
      lr += -std::pow(x_t[c] - a_t * x0[c], 2) / (2 * s_t * s_t) + std::pow(x_s[c] - a_s * x0[c], 2) / (2 * s_s * s_s);
    const double p = prior * std::exp(lr);
    den += p;
    for (size_t c = 0; c < C; ++c) num[c] += p * x0[c];
  }
  for (size_t c = 0; c < C; ++c) num[c] /= den;
  return num;
}

}  // namespace

TEST(GMFlow, VelocityIsThePosteriorMeanByQuadrature1D) {
  const std::vector<std::vector<double>> mu = {{1.2}, {-0.7}, {0.1}};
  const std::vector<double> logits = {0.3, -0.5, 0.9}, x_s = {0.4};
  const double logstd = -0.8, s_s = 0.8;
  const GMFlowPolicy p(one_pixel(mu, logits, logstd, x_s, s_s), {});
  for (const auto& [xt, st] : std::vector<std::pair<double, double>>{{0.5, 0.6}, {-0.2, 0.35}, {0.9, 0.1}}) {
    const std::vector<double> x0 = brute_force_x0(mu, logits, logstd, x_s, s_s, {xt}, st);
    const double u_ref = (xt - x0[0]) / st;
    const double u = p.velocity(torch::full({1, 1, 1, 1}, xt, kF64), torch::full({1}, st, kF64)).item<double>();
    EXPECT_NEAR(u, u_ref, 1e-6 * std::max(1.0, std::abs(u_ref))) << "sigma_t " << st;
  }
}

TEST(GMFlow, VelocityIsThePosteriorMeanByQuadrature2D) {
  // Two channels of one pixel share the logits: the channel sum in l' couples them.
  const std::vector<std::vector<double>> mu = {{1.0, -0.5}, {-0.6, 0.8}};
  const std::vector<double> logits = {0.2, -0.1}, x_s = {0.3, -0.2};
  const double logstd = -0.5, s_s = 0.9;
  const GMFlowPolicy p(one_pixel(mu, logits, logstd, x_s, s_s), {});
  const std::vector<double> xt = {0.1, 0.25};
  const double st = 0.5;
  const std::vector<double> x0 = brute_force_x0(mu, logits, logstd, x_s, s_s, xt, st);
  const torch::Tensor u =
      p.velocity(torch::tensor(xt, kF64).reshape({1, 2, 1, 1}), torch::full({1}, st, kF64)).reshape({2});
  for (int c = 0; c < 2; ++c) EXPECT_NEAR(u[c].item<double>(), (xt[c] - x0[c]) / st, 1e-5) << "channel " << c;
}

TEST(GMFlow, AtTheSourceTheVelocityIsTheWeightedMean) {
  const int64_t B = 3, K = 5;
  GaussianMixture g;
  g.means = torch::randn({B, K, 2, 4, 4}, kF64);
  g.logweights = torch::randn({B, K, 1, 4, 4}, kF64);
  g.logstd = torch::randn({B}, kF64);
  g.x_src = torch::randn({B, 2, 4, 4}, kF64);
  g.sigma_src = torch::tensor({1.0, 0.7, 0.3}, kF64);
  const GMFlowPolicy p(g, {});
  const torch::Tensor want = (torch::softmax(g.logweights, 1) * g.means).sum(1);
  EXPECT_LT((p.velocity(g.x_src, g.sigma_src) - want).abs().max().item<double>(), 1e-10);
}

TEST(GMFlow, EulerSubstepsConvergeAtFirstOrder) {
  const int64_t B = 2;
  GaussianMixture g;
  g.means = torch::randn({B, 3, 1, 2, 2}, kF64);
  g.logweights = torch::randn({B, 3, 1, 2, 2}, kF64);
  g.logstd = torch::full({B}, -1.0, kF64);
  g.x_src = torch::randn({B, 1, 2, 2}, kF64);
  g.sigma_src = torch::full({B}, 0.9, kF64);
  const double shift = 2.0, sa = 0.9, sb = 0.2;
  // Reference: classical RK4 in raw time with 4096 steps on the same velocity field.
  const GMFlowPolicy ref_p(g, {shift, 1});
  torch::Tensor x = g.x_src.clone();
  const double ta = unwarp(sa, shift), tb = unwarp(sb, shift);
  const int n = 4096;
  const double h = (ta - tb) / n;
  // dx/dtau = u * dsigma/dtau, dsigma/dtau = s / (1 + (s - 1) tau)^2.
  auto f = [&](const torch::Tensor& xx, double tau) {
    const double dsig = shift / std::pow(1 + (shift - 1) * tau, 2);
    return ref_p.velocity(xx, torch::full({B}, warp(tau, shift), kF64)) * dsig;
  };
  for (int i = 0; i < n; ++i) {
    const double t = ta - h * i;
    const torch::Tensor k1 = f(x, t), k2 = f(x - 0.5 * h * k1, t - 0.5 * h), k3 = f(x - 0.5 * h * k2, t - 0.5 * h),
                        k4 = f(x - h * k3, t - h);
    x = x - h / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
  }
  std::vector<double> err;
  for (int total : {64, 128, 256, 512}) {
    const GMFlowPolicy p(g, {shift, total});
    const torch::Tensor got = p.integrate(g.x_src, torch::full({B}, sa, kF64), torch::full({B}, sb, kF64));
    err.push_back((got - x).abs().max().item<double>());
  }
  for (size_t i = 1; i < err.size(); ++i) {
    const double ratio = err[i - 1] / err[i];
    EXPECT_GT(ratio, 1.8) << "error " << err[i - 1] << " -> " << err[i];
    EXPECT_LT(ratio, 2.2) << "error " << err[i - 1] << " -> " << err[i];
  }
}

TEST(GMFlow, PerSampleSpansMatchSeparateIntegrations) {
  const int64_t B = 2;
  GaussianMixture g;
  g.means = torch::randn({B, 2, 1, 3, 3}, kF64);
  g.logweights = torch::randn({B, 2, 1, 3, 3}, kF64);
  g.logstd = torch::zeros({B}, kF64);
  g.x_src = torch::randn({B, 1, 3, 3}, kF64);
  g.sigma_src = torch::ones({B}, kF64);
  const GMFlowPolicy both(g, {1.0, 32});
  const torch::Tensor sa = torch::tensor({1.0, 0.8}, kF64), sb = torch::tensor({0.5, 0.0}, kF64);
  const torch::Tensor got = both.integrate(g.x_src, sa, sb);
  for (int64_t i = 0; i < B; ++i) {
    GaussianMixture gi{g.means.narrow(0, i, 1), g.logweights.narrow(0, i, 1), g.logstd.narrow(0, i, 1),
                       g.x_src.narrow(0, i, 1), g.sigma_src.narrow(0, i, 1)};
    const GMFlowPolicy one(gi, {1.0, 32});
    const torch::Tensor want = one.integrate(gi.x_src, sa.narrow(0, i, 1), sb.narrow(0, i, 1));
    EXPECT_LT((got.narrow(0, i, 1) - want).abs().max().item<double>(), 1e-12) << "sample " << i;
  }
}

TEST(GMFlow, TemperatureScalesLogitsAndVariance) {
  GaussianMixture g = one_pixel({{1.0}, {-1.0}}, {0.4, -0.2}, -0.3, {0.2}, 0.8);
  const GMFlowPolicy p(g, {});
  const PolicyPtr t = p.with_temperature(0.5);
  const auto& gt = dynamic_cast<const GMFlowPolicy&>(*t).mixture();
  EXPECT_TRUE(torch::allclose(gt.logweights, g.logweights / 0.5));
  // variance * T: logstd + log(T) / 2.
  EXPECT_NEAR(gt.logstd.item<double>(), -0.3 + 0.5 * std::log(0.5), 1e-12);
  EXPECT_THROW(p.with_temperature(0.0), std::invalid_argument);
}

// pi-Flow's "auto" rule, min(max(0.1 (nfe - 1), 0), 1), written out: 0.1 at 2 NFE, 0.3 at 4 (its
// 4-step evaluation configs), 1 from 11 on; 1 NFE has no non-final step (1).
TEST(GMFlow, AutoTemperatureIsPiFlowsRule) {
  EXPECT_DOUBLE_EQ(GMFlowPolicy::auto_temperature(1), 1.0);
  EXPECT_NEAR(GMFlowPolicy::auto_temperature(2), 0.1, 1e-15);
  EXPECT_NEAR(GMFlowPolicy::auto_temperature(3), 0.2, 1e-15);
  EXPECT_NEAR(GMFlowPolicy::auto_temperature(4), 0.3, 1e-15);
  EXPECT_NEAR(GMFlowPolicy::auto_temperature(10), 0.9, 1e-15);
  EXPECT_DOUBLE_EQ(GMFlowPolicy::auto_temperature(11), 1.0);
  EXPECT_DOUBLE_EQ(GMFlowPolicy::auto_temperature(50), 1.0);
}

TEST(GMFlow, DropoutAndHalfPrecision) {
  const int64_t B = 64, K = 4;
  GaussianMixture g;
  g.means = torch::randn({B, K, 1, 2, 2}).to(torch::kBFloat16);
  g.logweights = torch::zeros({B, K, 1, 2, 2}).to(torch::kBFloat16);
  g.logstd = torch::zeros({B}).to(torch::kBFloat16);
  g.x_src = torch::randn({B, 1, 2, 2});
  g.sigma_src = torch::ones({B});
  const GMFlowPolicy p(g, {});
  EXPECT_EQ(p.mixture().means.scalar_type(), torch::kFloat32);  // integrated in float32
  at::Generator gen = at::detail::createCPUGenerator(3);
  const PolicyPtr d = p.dropout(0.5, gen);
  const auto& lw = dynamic_cast<const GMFlowPolicy&>(*d).mixture().logweights;
  EXPECT_TRUE(torch::isfinite(lw).any(1).all().item<bool>());  // never all K
  const torch::Tensor u = d->integrate(g.x_src, g.sigma_src, torch::zeros({B}));
  EXPECT_TRUE(torch::isfinite(u).all().item<bool>());
}

// pi-Flow's prediction at a walk state (section 2b): the mean velocity over an Euler rollout of the
// policy. The reference rollout here is written out independently: round(span * total) sub-steps,
// uniform in raw time tau, warped to sigma with s*tau / (1 + (s-1)*tau), each x -= dsigma * u.
namespace {

GaussianMixture random_mixture(int64_t B, int64_t K, double sigma_s, bool grad) {
  GaussianMixture g;
  g.means = torch::randn({B, K, 1, 2, 2}, kF64).requires_grad_(grad);
  g.logweights = torch::randn({B, K, 1, 2, 2}, kF64).requires_grad_(grad);
  g.logstd = torch::full({B}, -0.7, kF64).requires_grad_(grad);
  g.x_src = torch::randn({B, 1, 2, 2}, kF64);
  g.sigma_src = torch::full({B}, sigma_s, kF64);
  return g;
}

torch::Tensor euler_by_hand(const GMFlowPolicy& p, torch::Tensor x, double sa, double sb, double shift, int total) {
  const auto to_tau = [&](double s) { return s / (shift - (shift - 1) * s); };
  const auto to_sigma = [&](double t) { return shift * t / (1 + (shift - 1) * t); };
  const double ta = to_tau(sa), tb = to_tau(sb);
  const int n = std::max(1, static_cast<int>(std::lround((ta - tb) * total)));
  const int64_t B = x.size(0);
  for (int j = 0; j < n; ++j) {
    const double s0 = to_sigma(ta - (ta - tb) * j / n), s1 = to_sigma(ta - (ta - tb) * (j + 1) / n);
    x = x - (s0 - s1) * p.velocity(x, torch::full({B}, s0, kF64));
  }
  return x;
}

}  // namespace

TEST(GMFlow, ImitationVelocityIsTheMeanOverAnEulerRollout) {
  const int64_t B = 3;
  const double shift = 3.2, sa = 0.85, se = 0.4;
  const int total = 128;
  const GaussianMixture g = random_mixture(B, 3, 0.95, false);
  const GMFlowPolicy p(g, {shift, total});
  const torch::Tensor x_a = g.x_src + 0.1 * torch::randn_like(g.x_src);
  const torch::Tensor got = p.imitation_velocity(x_a, torch::full({B}, sa, kF64), torch::full({B}, se, kF64));
  const torch::Tensor want = (x_a - euler_by_hand(p, x_a, sa, se, shift, total)) / (sa - se);
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-12);
  // Not the instantaneous velocity: the rollout bends.
  EXPECT_GT((got - p.velocity(x_a, torch::full({B}, sa, kF64))).abs().max().item<double>(), 1e-3);
}

TEST(GMFlow, ImitationVelocityIsInstantaneousWhereTheSpanIsEmpty) {
  const int64_t B = 2;
  const GaussianMixture g = random_mixture(B, 2, 0.9, false);
  const GMFlowPolicy p(g, {2.0, 64});
  const torch::Tensor x_a = g.x_src.clone();
  // Sample 0 has an empty span (the distiller's choice below 2 sub-steps); sample 1 a real one.
  const torch::Tensor sa = torch::tensor({0.8, 0.8}, kF64), se = torch::tensor({0.8, 0.3}, kF64);
  const torch::Tensor got = p.imitation_velocity(x_a, sa, se);
  EXPECT_TRUE(torch::isfinite(got).all().item<bool>());
  const torch::Tensor inst = p.velocity(x_a, sa);
  EXPECT_LT((got[0] - inst[0]).abs().max().item<double>(), 1e-14);
  const torch::Tensor x1 = x_a.narrow(0, 1, 1);
  GaussianMixture g1{g.means.narrow(0, 1, 1), g.logweights.narrow(0, 1, 1), g.logstd.narrow(0, 1, 1),
                     g.x_src.narrow(0, 1, 1), g.sigma_src.narrow(0, 1, 1)};
  const GMFlowPolicy p1(g1, {2.0, 64});
  const torch::Tensor want1 = (x1 - euler_by_hand(p1, x1, 0.8, 0.3, 2.0, 64)) / 0.5;
  EXPECT_LT((got.narrow(0, 1, 1) - want1).abs().max().item<double>(), 1e-12);
}

TEST(GMFlow, ImitationVelocityGradientMatchesFiniteDifferences) {
  // A rollout of 40 sub-steps, recomputed in backward in 5 chunks (min_elements 0) or kept whole;
  // d(sum(w * pred)) / d(every parameter) by central differences in float64.
  for (const int64_t min_elements : {int64_t{0}, int64_t{1} << 30}) {
    SCOPED_TRACE(min_elements == 0 ? "checkpointed rollout" : "plain rollout");
    const int64_t B = 2;
    GaussianMixture g = random_mixture(B, 2, 0.9, true);
    const double shift = 1.5, sa = 0.8, se = 0.3;
    const int total = 80;
    const torch::Tensor x_a = g.x_src + 0.05;
    const torch::Tensor w = torch::randn({B, 1, 2, 2}, kF64);
    const auto objective = [&](const GaussianMixture& gm) {
      const GMFlowPolicy p(gm, {shift, total, min_elements});
      return (w * p.imitation_velocity(x_a, torch::full({B}, sa, kF64), torch::full({B}, se, kF64))).sum();
    };
    objective(g).backward();
    const double h = 1e-6;
    for (torch::Tensor* t : {&g.means, &g.logweights, &g.logstd}) {
      const torch::Tensor grad = t->grad().clone();
      const torch::Tensor base = t->detach().clone();
      const torch::Tensor flat = base.flatten();
      for (int64_t i = 0; i < flat.numel(); i += 3) {
        torch::NoGradGuard ng;
        GaussianMixture gp{g.means.detach(), g.logweights.detach(), g.logstd.detach(), g.x_src, g.sigma_src};
        GaussianMixture gm = gp;
        torch::Tensor* slot_p = t == &g.means ? &gp.means : t == &g.logweights ? &gp.logweights : &gp.logstd;
        torch::Tensor* slot_m = t == &g.means ? &gm.means : t == &g.logweights ? &gm.logweights : &gm.logstd;
        *slot_p = base.clone();
        *slot_m = base.clone();
        slot_p->view(-1)[i] += h;
        slot_m->view(-1)[i] -= h;
        const double fd = (objective(gp).item<double>() - objective(gm).item<double>()) / (2 * h);
        EXPECT_NEAR(grad.view(-1)[i].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd))) << "element " << i;
      }
    }
  }
}
