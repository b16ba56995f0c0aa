// Frechet distance between Gaussians fitted to feature sets (the FID formula), in float64.
//
// For features fitted as N(mu1, S1) and N(mu2, S2) the Frechet (Wasserstein-2) distance is
//   FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}).
// (S1^{1/2} S2 S1^{1/2} is symmetric positive semi-definite and has the eigenvalues of S1 S2, so its
// square root's trace equals tr((S1 S2)^{1/2}) of the usual formula.) Both square roots are taken
// through symmetric eigendecompositions (linalg eigh), with eigenvalues that rounding made slightly
// negative clamped to zero.
#pragma once

#include <torch/torch.h>

namespace arcflow {

struct FeatureStats {
  torch::Tensor mean;  // (D) float64, CPU
  torch::Tensor cov;   // (D, D) float64, CPU; unbiased (divided by n - 1)
  int64_t n = 0;
};

// Mean and unbiased covariance of the rows of `features` (n, D), n >= 2, computed in float64 on
// the CPU (the input may be on any device and of any floating dtype).
FeatureStats feature_stats(const torch::Tensor& features);

// Square root of a symmetric positive semi-definite matrix (float64): V diag(sqrt(max(l, 0))) V^T
// from the eigendecomposition of (A + A^T) / 2.
torch::Tensor sqrtm_psd(const torch::Tensor& a);

// The Frechet distance above; mu (D), S (D, D), any floating dtype (computed in float64 on the CPU).
// Tiny negative results from rounding are returned as 0. Throws std::invalid_argument on
// mismatched shapes.
double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& s1, const torch::Tensor& mu2,
                        const torch::Tensor& s2);
double frechet_distance(const FeatureStats& a, const FeatureStats& b);

}  // namespace arcflow
