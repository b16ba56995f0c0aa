// Tests for arcflow/evaluation/fid.h and the classifier-free parts of image_metrics.h: the Frechet
// distance against closed forms and an independent eigenvalue route, feature statistics against a
// direct float64 computation, accuracy and diversity on hand-built inputs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "arcflow/evaluation/fid.h"
#include "arcflow/evaluation/image_metrics.h"

using namespace arcflow;

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// A random rotation: the Q factor of a Gaussian matrix.
torch::Tensor random_rotation(int64_t d) {
  return std::get<0>(torch::linalg::qr(torch::randn({d, d}, kF64), "reduced"));
}

// A random symmetric positive definite matrix (well conditioned).
torch::Tensor random_spd(int64_t d) {
  const torch::Tensor a = torch::randn({d, d}, kF64);
  return a.mm(a.t()) / d + 0.1 * torch::eye(d, kF64);
}

}  // namespace

TEST(Fid, OneDimensionalByHand) {
  // N(1, 4) vs N(3, 9): (1 - 3)^2 + (sqrt 4 - sqrt 9)^2 = 4 + 1 = 5.
  const double fd = frechet_distance(torch::tensor({1.0}, kF64), torch::tensor({{4.0}}, kF64),
                                     torch::tensor({3.0}, kF64), torch::tensor({{9.0}}, kF64));
  EXPECT_NEAR(fd, 5.0, 1e-12);
}

TEST(Fid, CommutingCovariancesClosedForm) {
  torch::manual_seed(1);
  const int64_t d = 6;
  const torch::Tensor r = random_rotation(d);
  const torch::Tensor d1 = torch::rand({d}, kF64) * 3 + 0.01, d2 = torch::rand({d}, kF64) * 3 + 0.01;
  const torch::Tensor s1 = r.mm(torch::diag(d1)).mm(r.t()), s2 = r.mm(torch::diag(d2)).mm(r.t());
  const torch::Tensor mu1 = torch::randn({d}, kF64), mu2 = torch::randn({d}, kF64);
  // FD = |mu1 - mu2|^2 + sum_i (sqrt(d1_i) - sqrt(d2_i))^2
  const double expected = (mu1 - mu2).pow(2).sum().item<double>() + (d1.sqrt() - d2.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance(mu1, s1, mu2, s2), expected, 1e-9 * std::max(1.0, expected));
  // float32 inputs are promoted to float64.
  EXPECT_NEAR(frechet_distance(mu1.to(torch::kFloat32), s1.to(torch::kFloat32), mu2.to(torch::kFloat32),
                               s2.to(torch::kFloat32)),
              expected, 1e-4 * std::max(1.0, expected));
}

TEST(Fid, IdenticalStatsGiveZeroEvenWhenSingular) {
  torch::manual_seed(2);
  const torch::Tensor a = torch::randn({8, 3}, kF64);
  const torch::Tensor s = a.mm(a.t());  // rank 3: eigenvalues ~0 that rounding may make negative
  const torch::Tensor mu = torch::randn({8}, kF64);
  const double fd = frechet_distance(mu, s, mu, s);
  EXPECT_GE(fd, 0.0);
  EXPECT_LT(fd, 1e-6);
  const torch::Tensor spd = random_spd(8);
  EXPECT_LT(frechet_distance(mu, spd, mu, spd), 1e-9);
}

TEST(Fid, SymmetricAndMatchesEigenvaluesOfProduct) {
  torch::manual_seed(3);
  const int64_t d = 7;
  const torch::Tensor s1 = random_spd(d), s2 = random_spd(d);  // do not commute
  const torch::Tensor mu1 = torch::randn({d}, kF64), mu2 = torch::randn({d}, kF64);
  const double fd12 = frechet_distance(mu1, s1, mu2, s2), fd21 = frechet_distance(mu2, s2, mu1, s1);
  EXPECT_NEAR(fd12, fd21, 1e-9 * fd12);
  // Independent route: tr((S1 S2)^{1/2}) = sum of sqrt of the (real, positive) eigenvalues of S1 S2.
  const torch::Tensor ev = torch::real(torch::linalg::eigvals(s1.mm(s2)));
  const double expected = (mu1 - mu2).pow(2).sum().item<double>() + s1.trace().item<double>() +
                          s2.trace().item<double>() - 2 * ev.sqrt().sum().item<double>();
  EXPECT_NEAR(fd12, expected, 1e-8 * std::max(1.0, expected));
  EXPECT_GT(fd12, 0.0);
}

TEST(Fid, SqrtmPsdSquaresBack) {
  torch::manual_seed(4);
  const torch::Tensor a = random_spd(5);
  const torch::Tensor r = sqrtm_psd(a);
  EXPECT_TRUE(torch::allclose(r.mm(r), a, 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(r, r.t(), 0, 1e-12));
}

TEST(Fid, ShapeMismatchThrows) {
  const torch::Tensor mu = torch::zeros({3}, kF64), s = torch::eye(3, kF64);
  EXPECT_THROW(frechet_distance(mu, s, torch::zeros({4}, kF64), torch::eye(4, kF64)), std::invalid_argument);
  EXPECT_THROW(frechet_distance(mu, torch::eye(2, kF64), mu, s), std::invalid_argument);
  EXPECT_THROW(feature_stats(torch::zeros({1, 3})), std::invalid_argument);
}

TEST(Fid, FeatureStatsMatchDirectComputation) {
  torch::manual_seed(5);
  const int64_t n = 37, d = 4;
  const torch::Tensor x = torch::randn({n, d}) * 2 + 1;  // float32 input
  const FeatureStats s = feature_stats(x);
  EXPECT_EQ(s.n, n);
  EXPECT_EQ(s.mean.scalar_type(), torch::kFloat64);
  EXPECT_EQ(s.cov.scalar_type(), torch::kFloat64);
  const auto xa = x.accessor<float, 2>();
  std::vector<double> mean(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[j] += xa[i][j] / static_cast<double>(n);
  for (int64_t j = 0; j < d; ++j) EXPECT_NEAR(s.mean[j].item<double>(), mean[j], 1e-12);
  for (int64_t j = 0; j < d; ++j)
    for (int64_t k = 0; k < d; ++k) {
      double c = 0;
      for (int64_t i = 0; i < n; ++i) c += (xa[i][j] - mean[j]) * (xa[i][k] - mean[k]);
      EXPECT_NEAR(s.cov[j][k].item<double>(), c / (n - 1), 1e-11);
    }
  // FD of a sample set with itself is 0; with a shifted copy it is |shift|^2.
  EXPECT_LT(frechet_distance(s, s), 1e-9);
  EXPECT_NEAR(frechet_distance(s, feature_stats(x + 0.5)), d * 0.25, 1e-5);
}

TEST(Fid, ClassAccuracyByHand) {
  const torch::Tensor logits = torch::tensor({{2.0, 1.0, 0.0}, {0.0, 3.0, 1.0}, {0.0, 0.0, 5.0}, {1.0, 0.0, 0.0}});
  const torch::Tensor labels = torch::tensor({0, 1, 1, 0}, torch::kLong);
  EXPECT_DOUBLE_EQ(class_accuracy(logits, labels), 0.75);
  const std::vector<double> pc = per_class_accuracy(logits, labels, 3);
  ASSERT_EQ(pc.size(), 3u);
  EXPECT_DOUBLE_EQ(pc[0], 1.0);
  EXPECT_DOUBLE_EQ(pc[1], 0.5);
  EXPECT_TRUE(std::isnan(pc[2]));  // no samples of class 2
  EXPECT_THROW(class_accuracy(logits, torch::tensor({0, 1}, torch::kLong)), std::invalid_argument);
  EXPECT_THROW(per_class_accuracy(logits, torch::tensor({0, 1, 3, 0}, torch::kLong), 3), std::invalid_argument);
}

TEST(Fid, DiversityByHand) {
  // class 0: (0,0), (3,4) -> 5; class 1: (0,0), (1,0), (0,1) -> (1 + 1 + sqrt 2) / 3; class 2: one sample.
  const torch::Tensor f = torch::tensor({{0.0, 0.0}, {0.0, 0.0}, {3.0, 4.0}, {1.0, 0.0}, {0.0, 1.0}, {7.0, 7.0}});
  const torch::Tensor y = torch::tensor({0, 1, 0, 1, 1, 2}, torch::kLong);
  const Diversity d = class_diversity(f, y, 4);
  ASSERT_EQ(d.per_class.size(), 4u);
  const double c1 = (2 + std::sqrt(2.0)) / 3;
  EXPECT_NEAR(d.per_class[0], 5.0, 1e-12);
  EXPECT_NEAR(d.per_class[1], c1, 1e-12);
  EXPECT_TRUE(std::isnan(d.per_class[2]));
  EXPECT_TRUE(std::isnan(d.per_class[3]));
  EXPECT_NEAR(d.mean, (5.0 + c1) / 2, 1e-12);
}

TEST(Fid, DiversityBlocksMatchBruteForce) {
  torch::manual_seed(6);
  const int64_t n = 700;  // more than one row block
  const torch::Tensor f = torch::randn({n, 3}, kF64);
  const torch::Tensor y = torch::zeros({n}, torch::kLong);
  const torch::Tensor dist = (f.unsqueeze(1) - f.unsqueeze(0)).pow(2).sum(-1).sqrt();
  const double expected = dist.sum().item<double>() / (n * (n - 1.0));
  const Diversity d = class_diversity(f, y, 1);
  EXPECT_NEAR(d.per_class[0], expected, 1e-10);
  EXPECT_NEAR(d.mean, expected, 1e-10);
}
