// Feature statistics and the Frechet distance (see arcflow/evaluation/fid.h).
#include "arcflow/evaluation/fid.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace arcflow {

namespace {

torch::Tensor f64(const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat64); }

}  // namespace

FeatureStats feature_stats(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(0) < 2)
    throw std::invalid_argument("feature_stats: need (n, D) features with n >= 2, got shape " +
                                c10::str(features.sizes()));
  const torch::Tensor x = f64(features);
  FeatureStats s;
  s.n = x.size(0);
  s.mean = x.mean(0);
  // S = (X - mu)^T (X - mu) / (n - 1)
  const torch::Tensor c = x - s.mean;
  s.cov = c.t().mm(c) / static_cast<double>(s.n - 1);
  return s;
}

torch::Tensor sqrtm_psd(const torch::Tensor& a) {
  const torch::Tensor sym = (f64(a) + f64(a).t()) * 0.5;
  const auto [evals, evecs] = torch::linalg_eigh(sym, "L");
  // A = V diag(l) V^T  ->  A^{1/2} = V diag(sqrt(max(l, 0))) V^T
  return (evecs * evals.clamp_min(0).sqrt().unsqueeze(0)).mm(evecs.t());
}

double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& s1, const torch::Tensor& mu2,
                        const torch::Tensor& s2) {
  if (mu1.dim() != 1 || mu2.sizes() != mu1.sizes())
    throw std::invalid_argument("frechet_distance: means must be (D) vectors of equal size, got " +
                                c10::str(mu1.sizes()) + " and " + c10::str(mu2.sizes()));
  const int64_t D = mu1.size(0);
  for (const torch::Tensor* s : {&s1, &s2})
    if (s->dim() != 2 || s->size(0) != D || s->size(1) != D)
      throw std::invalid_argument("frechet_distance: covariances must be (" + std::to_string(D) + ", " +
                                  std::to_string(D) + "), got " + c10::str(s->sizes()));
  const torch::Tensor a = f64(s1), b = f64(s2);
  // |mu1 - mu2|^2
  const double mean_term = (f64(mu1) - f64(mu2)).pow(2).sum().item<double>();
  // tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = sum of the square roots of the eigenvalues of the symmetric
  // PSD matrix M = S1^{1/2} S2 S1^{1/2} (symmetrised against rounding, negatives clamped).
  const torch::Tensor r = sqrtm_psd(a);
  torch::Tensor m = r.mm(b).mm(r);
  m = (m + m.t()) * 0.5;
  const torch::Tensor ev = torch::linalg_eigvalsh(m, "L");
  const double tr_sqrt = ev.clamp_min(0).sqrt().sum().item<double>();
  const double fd = mean_term + a.trace().item<double>() + b.trace().item<double>() - 2 * tr_sqrt;
  return std::max(fd, 0.0);
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  return frechet_distance(a.mean, a.cov, b.mean, b.cov);
}

}  // namespace arcflow
