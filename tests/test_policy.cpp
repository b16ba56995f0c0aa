// The momentum-mixture policy against independent computations: numerical quadrature of the
// velocity field written out with std::exp, finite differences, and element-wise loops.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <functional>
#include <vector>

#include "arcflow/core/momentum.h"

using namespace arcflow;

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Tensor scalar(double v) { return torch::full({1}, v, kF64); }

// Composite 5-point Gauss-Legendre quadrature of f over [a, b].
double gauss_legendre(const std::function<double(double)>& f, double a, double b, int pieces) {
  static const double x[5] = {0.0, -0.5384693101056831, 0.5384693101056831, -0.9061798459386640, 0.9061798459386640};
  static const double w[5] = {0.5688888888888889, 0.4786286704993665, 0.4786286704993665, 0.2369268850561891,
                              0.2369268850561891};
  double sum = 0;
  const double h = (b - a) / pieces;
  for (int p = 0; p < pieces; ++p) {
    const double lo = a + p * h, mid = lo + h / 2;
    for (int i = 0; i < 5; ++i) sum += w[i] * f(mid + x[i] * h / 2) * h / 2;
  }
  return sum;
}

// A one-sample, one-element policy with the given components (plain doubles).
struct Mix {
  std::vector<double> mu, logit, g;
  MomentumMixture policy(double sigma_s) const {
    const int64_t K = static_cast<int64_t>(mu.size());
    torch::Tensor means = torch::tensor(mu, kF64).reshape({1, K, 1});
    torch::Tensor lw = torch::tensor(logit, kF64).reshape({1, K, 1});
    torch::Tensor lg;
    if (K > 1) lg = torch::tensor(std::vector<double>(g.begin() + 1, g.end()), kF64).reshape({1, K - 1, 1});
    return make_mixture(means, lw, lg, scalar(sigma_s));
  }
  // u(sigma) written out directly.
  double u(double sigma_s, double sigma) const {
    double z = 0, s = 0;
    for (double l : logit) z += std::exp(l);
    for (size_t k = 0; k < mu.size(); ++k) s += std::exp(logit[k]) / z * mu[k] * std::exp(g[k] * (sigma_s - sigma));
    return s;
  }
};

}  // namespace

TEST(Policy, ClosedFormMatchesQuadrature) {
  const std::vector<double> gammas{0.0, 1e-8, -1e-8, 1e-3, -1e-3, 0.7, -0.7, 5.0, -5.0, 20.0, -20.0};
  // (sigma_s, sigma_a, sigma_b): spans including 0, tiny, and the whole range, with and without
  // travel before sigma_a.
  const std::vector<std::array<double, 3>> spans{{1.0, 1.0, 1.0},  {1.0, 1.0, 0.0},   {1.0, 0.6, 0.2},
                                                 {0.75, 0.75, 0.5}, {0.9, 0.3, 0.299}, {0.5, 0.5, 0.5 - 1e-6},
                                                 {1.0, 0.999, 0.0}};
  for (double g : gammas) {
    // Component 0 (linear) carries no mass here so each g is checked on its own...
    Mix single{{0.0, 1.3}, {0.2, -0.4}, {0.0, g}};
    // ...and in a mixture with other components.
    Mix mixed{{0.5, -1.1, 2.0}, {0.3, 1.0, -0.5}, {0.0, g, -0.5 * g + 0.1}};
    for (const Mix& m : {single, mixed}) {
      for (const auto& s : spans) {
        const MomentumMixture p = m.policy(s[0]);
        const double closed = displacement(p, scalar(s[1]), scalar(s[2])).item<double>();
        const double quad = gauss_legendre([&](double sg) { return m.u(s[0], sg); }, s[2], s[1], 2000);
        if (s[1] == s[2]) {
          EXPECT_EQ(closed, 0.0);
          continue;
        }
        EXPECT_LT(std::abs(closed - quad), 1e-5 * std::abs(quad) + 1e-300)
            << "g=" << g << " sigma_s=" << s[0] << " a=" << s[1] << " b=" << s[2] << " closed=" << closed
            << " quad=" << quad;
        // Mean velocity is the displacement over the span.
        const double mv = mean_velocity(p, scalar(s[1]), scalar(s[2])).item<double>();
        EXPECT_NEAR(mv * (s[1] - s[2]), closed, 1e-12 * (1 + std::abs(closed)));
      }
      // Instantaneous velocity matches the formula, and a zero span's mean velocity equals it.
      const MomentumMixture p = m.policy(0.9);
      EXPECT_NEAR(velocity(p, scalar(0.4)).item<double>(), m.u(0.9, 0.4), 1e-12 * (1 + std::abs(m.u(0.9, 0.4))));
      EXPECT_NEAR(mean_velocity(p, scalar(0.4), scalar(0.4)).item<double>(), m.u(0.9, 0.4),
                  1e-12 * (1 + std::abs(m.u(0.9, 0.4))));
    }
  }
}

TEST(Policy, IntegrateSubtractsDisplacementAndComposes) {
  Mix m{{0.5, -1.1, 2.0}, {0.3, 1.0, -0.5}, {0.0, 3.0, -2.0}};
  const MomentumMixture p = m.policy(1.0);
  const torch::Tensor x = torch::full({1, 1}, 0.25, kF64);
  // Integrating 1 -> 0.5 -> 0 equals integrating 1 -> 0 (exact integration composes).
  const torch::Tensor mid = integrate(p, x, scalar(1.0), scalar(0.5));
  const torch::Tensor two = integrate(p, mid, scalar(0.5), scalar(0.0));
  const torch::Tensor one = integrate(p, x, scalar(1.0), scalar(0.0));
  EXPECT_NEAR(two.item<double>(), one.item<double>(), 1e-14);
  EXPECT_NEAR(one.item<double>(), 0.25 - gauss_legendre([&](double s) { return m.u(1.0, s); }, 0.0, 1.0, 2000), 1e-10);
}

TEST(Policy, LinearK1IsOneEulerStep) {
  torch::Tensor v = torch::randn({4, 3, 5, 5}, kF64);
  torch::Tensor x = torch::randn({4, 3, 5, 5}, kF64);
  torch::Tensor sa = torch::tensor({1.0, 0.8, 0.5, 0.3}, kF64), sb = torch::tensor({0.5, 0.2, 0.5, 0.0}, kF64);
  const torch::Tensor euler = x - (sa - sb).reshape({4, 1, 1, 1}) * v;
  EXPECT_TRUE(torch::allclose(integrate(linear_mixture(v, sa), x, sa, sb), euler, 0, 1e-15));
  // The same through make_mixture with K = 1 (a student's linear head): g is 0, weight 1.
  const MomentumMixture p = make_mixture(v.unsqueeze(1), torch::randn({4, 1, 1, 5, 5}, kF64), torch::Tensor(), sa);
  EXPECT_EQ(p.log_gammas.abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose(integrate(p, x, sa, sb), euler, 0, 1e-15));
}

TEST(Policy, ImageShapesShareWeightsAcrossChannels) {
  // (B, K, C, H, W) against an element-wise loop in plain doubles.
  const int64_t B = 2, K = 3, C = 2, H = 2, W = 3;
  torch::Tensor mu = torch::randn({B, K, C, H, W}, kF64), lw = torch::randn({B, K, 1, H, W}, kF64);
  torch::Tensor lg = torch::randn({B, K - 1, 1, H, W}, kF64) * 3;
  torch::Tensor ss = torch::tensor({1.0, 0.7}, kF64), sa = torch::tensor({0.9, 0.7}, kF64),
                sb = torch::tensor({0.2, 0.1}, kF64);
  const MomentumMixture p = make_mixture(mu, lw, lg, ss);
  const torch::Tensor d = displacement(p, sa, sb);
  ASSERT_EQ(d.sizes(), torch::IntArrayRef({B, C, H, W}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          double z = 0, s = 0;
          for (int64_t k = 0; k < K; ++k) z += std::exp(lw[b][k][0][h][w].item<double>());
          for (int64_t k = 0; k < K; ++k) {
            const double g = k == 0 ? 0.0 : lg[b][k - 1][0][h][w].item<double>();
            const double delta = sa[b].item<double>() - sb[b].item<double>();
            const double integral = g == 0.0 ? delta
                                             : std::exp(g * (ss[b].item<double>() - sa[b].item<double>())) *
                                                   std::expm1(g * delta) / g;
            s += std::exp(lw[b][k][0][h][w].item<double>()) / z * mu[b][k][c][h][w].item<double>() * integral;
          }
          EXPECT_NEAR(d[b][c][h][w].item<double>(), s, 1e-12);
        }
}

TEST(Policy, GradientsMatchFiniteDifferences) {
  torch::manual_seed(3);
  const int64_t B = 2, K = 4, D = 3;
  torch::Tensor mu = torch::randn({B, K, D}, kF64), lw = torch::randn({B, K, 1}, kF64);
  // Log-gammas from the series branch (|z| < 1e-4), near 0, and large.
  torch::Tensor lg = torch::tensor({1e-6, -0.3, 4.0, 0.0, 2e-4, -6.0}, kF64).reshape({B, K - 1, 1});
  const torch::Tensor ss = torch::tensor({1.0, 0.8}, kF64), sa = torch::tensor({0.9, 0.8}, kF64),
                      sb = torch::tensor({0.3, 0.35}, kF64);
  const torch::Tensor c = torch::randn({B, D}, kF64);
  auto f = [&](const torch::Tensor& m, const torch::Tensor& l, const torch::Tensor& g) {
    const MomentumMixture p = make_mixture(m, l, g, ss);
    return (c * displacement(p, sa, sb)).sum() + (c * velocity(p, sb)).sum() * 0.3;
  };
  std::vector<torch::Tensor> inputs{mu.clone().requires_grad_(true), lw.clone().requires_grad_(true),
                                    lg.clone().requires_grad_(true)};
  f(inputs[0], inputs[1], inputs[2]).backward();
  const double h = 1e-6;
  for (int which = 0; which < 3; ++which) {
    torch::Tensor base = (which == 0 ? mu : which == 1 ? lw : lg);
    for (int64_t i = 0; i < base.numel(); ++i) {
      auto eval = [&](double step) {
        torch::Tensor t = base.clone();
        t.view({-1})[i] += step;
        return f(which == 0 ? t : mu, which == 1 ? t : lw, which == 2 ? t : lg).item<double>();
      };
      const double fd = (eval(h) - eval(-h)) / (2 * h);
      const double ad = inputs[which].grad().view({-1})[i].item<double>();
      EXPECT_NEAR(ad, fd, 1e-6 * (1 + std::abs(fd))) << "input " << which << " element " << i;
    }
  }
}

TEST(Policy, FiniteForExtremeInputsInsideTheClamp) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto o = torch::TensorOptions().dtype(dtype);
    const int64_t K = 6;
    torch::Tensor mu = (torch::tensor({1e3, -1e3, 0.0, 1.0, -5.0, 7.0}, o)).reshape({1, K, 1}).repeat({8, 1, 2});
    torch::Tensor lw = torch::tensor({50.0, -50.0, 0.0, 30.0, -80.0, 10.0}, o).reshape({1, K, 1}).repeat({8, 1, 1});
    // Raw values far outside the clamp are clamped to +-20; 0 exercises the series branch.
    torch::Tensor lg = torch::tensor({1e6, -1e6, 20.0, -20.0, 0.0}, o).reshape({1, K - 1, 1}).repeat({8, 1, 1});
    lg.requires_grad_(true);
    mu.requires_grad_(true);
    lw.requires_grad_(true);
    torch::Tensor ss = torch::ones({8}, o);
    torch::Tensor sa = torch::tensor({1.0, 1.0, 0.5, 0.0, 1.0, 0.3, 1e-7, 0.9}, o);
    torch::Tensor sb = torch::tensor({0.0, 1.0, 0.5, 0.0, 0.999999, 0.0, 0.0, 0.1}, o);
    const MomentumMixture p = make_mixture(mu, lw, lg, ss);
    EXPECT_LE(p.log_gammas.abs().max().item<double>(), kMaxLogGamma);
    torch::Tensor out = displacement(p, sa, sb) + velocity(p, sb) + mean_velocity(p, sa, sb);
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
    out.sum().backward();
    for (const auto& t : {mu, lw, lg}) EXPECT_TRUE(torch::isfinite(t.grad()).all().item<bool>());
  }
}

// Without gradients the policy takes a shorter path (Kahan's (u - 1) / log(u) for phi, an
// unnormalised softmax, no momentum factor when the step starts at the policy's own sigma tensor).
// It must agree with the autograd path evaluated in float64, for every kind of log-gamma.
TEST(Policy, InferencePathMatchesAutogradPathInFloat64) {
  torch::manual_seed(3);
  const int64_t B = 6, K = 7, C = 3, H = 4, W = 5;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor mu = torch::randn({B, K, C, H, W}, f32);
  torch::Tensor lw = 3 * torch::randn({B, K, 1, H, W}, f32);
  // Every K-1 = 6 log-gammas per pixel drawn from values that stress phi: 0, tiny, small, large.
  const torch::Tensor choices = torch::tensor({0.0, 1e-9, -1e-9, 1e-4, -1e-4, 0.3, -0.3, 4.0, -4.0, 20.0, -20.0}, f32);
  torch::Tensor lg = choices.index({torch::randint(choices.numel(), {B, K - 1, 1, H, W}, torch::kLong)});
  const torch::Tensor ss = torch::tensor({1.0, 0.8, 0.5, 0.3, 1.0, 0.05}, f32);
  for (bool from_source : {true, false}) {
    const torch::Tensor sa = from_source ? ss : ss * torch::tensor({1.0, 0.5, 0.9, 0.1, 0.0, 1.0}, f32);
    const torch::Tensor sb = sa * 0.25;
    torch::Tensor fast;
    {
      torch::NoGradGuard ng;
      fast = integrate(make_mixture(mu, lw, lg, ss), mu.select(1, 0), sa, sb);
    }
    const torch::Tensor mu64 = mu.to(torch::kFloat64).requires_grad_(true);
    const MomentumMixture ref_p = make_mixture(mu64, lw.to(torch::kFloat64), lg.to(torch::kFloat64), ss.to(torch::kFloat64));
    const torch::Tensor ref =
        integrate(ref_p, mu64.select(1, 0), sa.to(torch::kFloat64), sb.to(torch::kFloat64)).detach();
    ASSERT_TRUE(ref.requires_grad() == false && mu64.requires_grad());
    const double err = (fast.to(torch::kFloat64) - ref).abs().max().item<double>();
    EXPECT_LT(err, 1e-5 * (1 + ref.abs().max().item<double>())) << "from_source " << from_source;
  }
}

TEST(Policy, InferencePathFiniteForExtremeInputsAndKeepsNaN) {
  torch::NoGradGuard ng;
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto o = torch::TensorOptions().dtype(dtype);
    const int64_t K = 6;
    torch::Tensor mu = torch::tensor({1e3, -1e3, 0.0, 1.0, -5.0, 7.0}, o).reshape({1, K, 1}).repeat({8, 1, 2});
    torch::Tensor lw = torch::tensor({50.0, -50.0, 0.0, 30.0, -80.0, 10.0}, o).reshape({1, K, 1}).repeat({8, 1, 1});
    torch::Tensor lg = torch::tensor({1e6, -1e6, 20.0, -20.0, 0.0}, o).reshape({1, K - 1, 1}).repeat({8, 1, 1});
    torch::Tensor ss = torch::ones({8}, o);
    torch::Tensor sa = torch::tensor({1.0, 1.0, 0.5, 0.0, 1.0, 0.3, 1e-7, 0.9}, o);
    torch::Tensor sb = torch::tensor({0.0, 1.0, 0.5, 0.0, 0.999999, 0.0, 0.0, 0.1}, o);
    const MomentumMixture p = make_mixture(mu, lw, lg, ss);
    EXPECT_TRUE(torch::isfinite(displacement(p, sa, sb)).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(displacement(p, ss, sb)).all().item<bool>());
    // A NaN log-gamma is not hidden: its sample's result is NaN.
    torch::Tensor bad = lg.clone();
    bad[2][1][0] = std::nan("");
    const torch::Tensor d = displacement(make_mixture(mu, lw, bad, ss), ss, sb);
    EXPECT_TRUE(torch::isnan(d[2]).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(d[3]).all().item<bool>());
  }
}

TEST(Policy, PhiSeriesAndExactBranchesAgree) {
  torch::Tensor z = torch::tensor({-1e-3, -1.01e-4, -0.99e-4, -1e-9, 0.0, 1e-9, 0.99e-4, 1.01e-4, 1e-3}, kF64);
  torch::Tensor ref = torch::empty_like(z);
  for (int64_t i = 0; i < z.numel(); ++i) {
    const double v = z[i].item<double>();
    ref[i] = v == 0 ? 1.0 : std::expm1(v) / v;
  }
  EXPECT_TRUE(torch::allclose(phi(z), ref, 1e-14, 0));
  EXPECT_EQ(phi(torch::zeros({1}, kF64)).item<double>(), 1.0);
}

// Section 4: a component is dropped for a whole sample (every pixel), never all K of a sample.
TEST(Policy, ComponentDropoutDropsWholeSamplesNeverAll) {
  const int64_t B = 256, K = 4;
  const MomentumMixture p = make_mixture(torch::randn({B, K, 1, 8, 8}), torch::zeros({B, K, 1, 8, 8}),
                                         torch::zeros({B, K - 1, 1, 8, 8}), torch::ones({B}));
  at::Generator gen = at::detail::createCPUGenerator(7);
  const MomentumMixture d = dropout_components(p, 0.6, gen);
  const torch::Tensor kept = torch::isfinite(d.logweights).squeeze(2);  // (B, K, 8, 8)
  // The same decision at every pixel of a sample.
  const torch::Tensor first = kept.select(3, 0).select(2, 0);  // (B, K) at pixel (0, 0)
  EXPECT_TRUE(torch::equal(kept, first.reshape({B, K, 1, 1}).expand_as(kept)));
  // Never all K of a sample; samples whose K draws all dropped keep all of them: P = 0.6^4 = 13%,
  // so among 256 samples some keep all K, and the rest keep 1..K-1 with about 40% kept each.
  const torch::Tensor per_sample = first.sum(1);
  EXPECT_GE(per_sample.min().item<int64_t>(), 1);
  const double all_kept = (per_sample == K).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(all_kept, std::pow(0.6, 4) + std::pow(0.4, 4), 0.07);
  // The kept weights still sum to 1 and the velocity is finite.
  EXPECT_TRUE(torch::allclose(torch::softmax(d.logweights, 1).sum(1), torch::ones({B, 1, 8, 8})));
  EXPECT_TRUE(torch::isfinite(velocity(d, torch::full({B}, 0.5))).all().item<bool>());
}

TEST(Policy, ComponentDropoutRateAndReproducibility) {
  const int64_t B = 256, K = 16;
  const MomentumMixture p = make_mixture(torch::randn({B, K, 2}), torch::zeros({B, K, 1}), torch::zeros({B, K - 1, 1}),
                                         torch::ones({B}));
  at::Generator g1 = at::detail::createCPUGenerator(11), g2 = at::detail::createCPUGenerator(11);
  const MomentumMixture a = dropout_components(p, 0.3, g1), b = dropout_components(p, 0.3, g2);
  const double rate = torch::isinf(a.logweights).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(rate, 0.3, 0.03);  // 4096 Bernoulli draws: std ~0.007
  EXPECT_TRUE(torch::equal(torch::isinf(a.logweights), torch::isinf(b.logweights)));
  EXPECT_TRUE(torch::equal(dropout_components(p, 0.0, g1).logweights, p.logweights));
  EXPECT_THROW(dropout_components(p, 1.0, g1), std::invalid_argument);
  EXPECT_THROW(dropout_components(p, -0.1, g1), std::invalid_argument);
}

// The policy object: float16/bfloat16 network outputs are integrated in float32. (The inference
// path's phi adds 1e-30, which is 0 in float16: phi(0) would be 0/0 there.)
TEST(Policy, HalfPrecisionOutputsIntegrateInFloat32) {
  const int64_t B = 3, K = 4;
  const torch::Tensor mu = torch::randn({B, K, 1, 4, 4});
  const torch::Tensor lw = torch::randn({B, K, 1, 4, 4});
  torch::Tensor lg = torch::randn({B, K - 1, 1, 4, 4});
  lg.select(1, 0).zero_();  // g = 0 exactly: phi(0), the 0/0 case in half precision
  const torch::Tensor s = torch::ones({B});
  const torch::Tensor x = torch::randn({B, 1, 4, 4});
  for (auto dt : {torch::kFloat16, torch::kBFloat16}) {
    torch::NoGradGuard ng;
    const MomentumPolicy half(make_mixture(mu.to(dt), lw.to(dt), lg.to(dt), s));
    EXPECT_EQ(half.mixture().means.scalar_type(), torch::kFloat32);
    const torch::Tensor got = half.integrate(x, s, torch::zeros({B}));
    const MomentumMixture ref =
        make_mixture(mu.to(dt).to(torch::kFloat64), lw.to(dt).to(torch::kFloat64), lg.to(dt).to(torch::kFloat64),
                     s.to(torch::kFloat64));
    const torch::Tensor want = integrate(ref, x.to(torch::kFloat64), s.to(torch::kFloat64), torch::zeros({B}, kF64));
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::isfinite(got).all().item<bool>());
    EXPECT_LT((got.to(torch::kFloat64) - want).abs().max().item<double>(), 1e-5);
  }
}

TEST(Policy, TemperatureDividesLogits) {
  const MomentumMixture p = make_mixture(torch::randn({2, 3, 2}, kF64), torch::randn({2, 3, 1}, kF64),
                               torch::randn({2, 2, 1}, kF64), torch::ones({2}, kF64));
  const MomentumMixture t = with_temperature(p, 0.5);
  EXPECT_TRUE(torch::allclose(t.logweights, p.logweights * 2.0));
  // The velocity at sigma_s is the softmax(l / T)-weighted mean of the means.
  const torch::Tensor w = torch::softmax(p.logweights * 2.0, 1);
  EXPECT_TRUE(torch::allclose(velocity(t, torch::ones({2}, kF64)), (w * p.means).sum(1), 1e-12, 1e-12));
  EXPECT_THROW(with_temperature(p, 0.0), std::invalid_argument);
}

TEST(Policy, DetachedCutsTheGraph) {
  torch::Tensor mu = torch::randn({1, 2, 2}, torch::requires_grad());
  const MomentumMixture p = make_mixture(mu * 2, torch::zeros({1, 2, 1}), torch::zeros({1, 1, 1}), torch::ones({1}));
  EXPECT_TRUE(p.means.requires_grad());
  const MomentumMixture d = detached(p);
  EXPECT_FALSE(d.means.requires_grad());
  EXPECT_TRUE(torch::equal(d.means, p.means.detach()));
}

TEST(Policy, RejectsBadShapes) {
  EXPECT_THROW(make_mixture(torch::zeros({2, 3}), torch::zeros({2, 3}), torch::Tensor(), torch::ones({2})),
               std::invalid_argument);
  EXPECT_THROW(make_mixture(torch::zeros({2, 3, 2}), torch::zeros({2, 3, 2}), torch::zeros({2, 2, 1}), torch::ones({2})),
               std::invalid_argument);
  EXPECT_THROW(make_mixture(torch::zeros({2, 3, 2}), torch::zeros({2, 3, 1}), torch::Tensor(), torch::ones({2})),
               std::invalid_argument);
}
