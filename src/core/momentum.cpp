// The momentum-mixture integration (ARCFLOW.md section 2): everything ArcFlow integrates goes
// through velocity, mean_velocity and displacement below; MomentumPolicy at the end puts them
// behind the Policy interface.
#include "arcflow/core/momentum.h"

#include <stdexcept>

namespace arcflow {

MomentumMixture make_mixture(const torch::Tensor& means_in, const torch::Tensor& logweights_in,
                             const torch::Tensor& log_gammas_rest_in, const torch::Tensor& sigma_src) {
  // Policies compute in float32 whatever the network ran in (float64 stays float64).
  const torch::Tensor means = policy_precision(means_in), logweights = policy_precision(logweights_in);
  const torch::Tensor log_gammas_rest = policy_precision(log_gammas_rest_in);
  if (means.dim() < 3) throw std::invalid_argument("policy means must be (B, K, ...), got rank " +
                                                   std::to_string(means.dim()));
  if (logweights.dim() != means.dim() || logweights.size(0) != means.size(0) ||
      logweights.size(1) != means.size(1) || logweights.size(2) != 1)
    throw std::invalid_argument("policy logweights must be (B, K, 1, ...) matching means");
  const int64_t K = means.size(1);
  torch::Tensor g0 = torch::zeros_like(logweights.narrow(1, 0, 1));
  torch::Tensor log_gammas = g0;
  if (K > 1) {
    if (!log_gammas_rest.defined() || log_gammas_rest.dim() != means.dim() || log_gammas_rest.size(1) != K - 1)
      throw std::invalid_argument("policy log_gammas must be (B, K-1, 1, ...)");
    log_gammas = torch::cat({g0, log_gammas_rest.clamp(-kMaxLogGamma, kMaxLogGamma).to(g0.scalar_type())}, 1);
  }
  torch::Tensor s = sigma_src.to(means.scalar_type());
  if (s.dim() == 0) s = s.expand({means.size(0)});
  return {means, logweights, log_gammas, s};
}

MomentumMixture linear_mixture(const torch::Tensor& velocity, const torch::Tensor& sigma_src) {
  torch::Tensor means = velocity.unsqueeze(1);  // (B, 1, ...)
  std::vector<int64_t> lw_shape = means.sizes().vec();
  lw_shape[2] = 1;
  return make_mixture(means, torch::zeros(lw_shape, velocity.options()), torch::Tensor(), sigma_src);
}

torch::Tensor phi(const torch::Tensor& z) {
  // For |z| < 1e-4 the series 1 + z/2 + z^2/6 + z^3/24 is exact to ~z^4/120 < 1e-18. Elsewhere
  // expm1(z)/z has no cancellation. The division uses a safe denominator so that neither branch
  // produces NaN (torch::where would otherwise propagate a 0/0 gradient from the unused branch).
  const torch::Tensor small = z.abs() < 1e-4;
  const torch::Tensor z_safe = torch::where(small, torch::ones_like(z), z);
  const torch::Tensor series = 1.0 + z * (0.5 + z * (1.0 / 6.0 + z / 24.0));
  return torch::where(small, series, torch::expm1(z_safe) / z_safe);
}

namespace {

// Softmax over K: the mixture weights w_k, (B, K, 1, ...).
torch::Tensor weights(const MomentumMixture& p) { return torch::softmax(p.logweights, 1); }

}  // namespace

torch::Tensor velocity(const MomentumMixture& p, const torch::Tensor& sigma) {
  const int64_t rank = p.means.dim();
  const torch::Tensor travelled = broadcast_sigma(p.sigma_src, rank) - broadcast_sigma(sigma, rank);
  // u = sum_k w_k mu_k exp(g_k (sigma_s - sigma)); the per-pixel factors broadcast over channels.
  const torch::Tensor factor = weights(p) * torch::exp(p.log_gammas * travelled);
  return (p.means * factor).sum(1);
}

namespace {

// The factor w_k exp(g_k (sigma_s - sigma_a)) phi(g_k delta) of every component, (B, K, 1, ...).
torch::Tensor mixture_factor(const MomentumMixture& p, const torch::Tensor& sa, const torch::Tensor& delta) {
  const int64_t rank = p.means.dim();
  const torch::Tensor travelled = broadcast_sigma(p.sigma_src, rank) - sa;
  return weights(p) * torch::exp(p.log_gammas * travelled) * phi(p.log_gammas * delta);
}

// phi(z) for inference, in passes that are all vectorised (torch's expm1 is not): Kahan's
// (u - 1) / log(u) with u = exp(z) rounded. The rounding error of u cancels between numerator and
// denominator, so the quotient is accurate to a few ulps for every z; u == 1 (|z| < ~6e-8) gives
// 0/0, which the tiny addend turns into the limit 1: where u != 1, |log u| >= ~6e-8, far above it.
// NaN in z stays NaN. (The autograd path keeps phi(), whose series branch keeps gradients finite.)
torch::Tensor phi_inference(const torch::Tensor& z) {
  constexpr double kTiny = 1e-30;
  const torch::Tensor u = torch::exp(z);
  return (u - 1.0).add_(kTiny).div_(torch::log(u).add_(kTiny));
}

// Inference (nothing needs a gradient): the same mixture mean velocity in fewer passes over the
// (B, K, 1, ...) elements. The softmax is left unnormalised, e_k = exp(l_k - max_j l_j), and the
// sum over components is divided by sum_k e_k at the end, on K times fewer elements. The
// momentum factor exp(g (sigma_s - sigma_a)) is 1 when the step starts where the policy was
// emitted (the sampler's case: the same sigma tensor) and is skipped then.
torch::Tensor mean_velocity_inference(const MomentumMixture& p, const torch::Tensor& sigma_a, const torch::Tensor& sa,
                                      const torch::Tensor& delta) {
  torch::Tensor f = phi_inference(p.log_gammas * delta);
  if (!sigma_a.is_same(p.sigma_src))
    f.mul_(torch::exp(p.log_gammas * (broadcast_sigma(p.sigma_src, p.means.dim()) - sa)));
  const torch::Tensor e = (p.logweights - p.logweights.amax(1, /*keepdim=*/true)).exp_();
  f.mul_(e);
  const torch::Tensor num = f.sizes() == p.means.sizes() ? f.mul_(p.means).sum(1) : (p.means * f).sum(1);
  return num.div_(e.sum(1));
}

bool needs_grad(const MomentumMixture& p) {
  return torch::GradMode::is_enabled() &&
         (p.means.requires_grad() || p.logweights.requires_grad() || p.log_gammas.requires_grad());
}

}  // namespace

torch::Tensor mean_velocity(const MomentumMixture& p, const torch::Tensor& sigma_a, const torch::Tensor& sigma_b) {
  const int64_t rank = p.means.dim();
  const torch::Tensor sa = broadcast_sigma(sigma_a, rank);
  const torch::Tensor delta = sa - broadcast_sigma(sigma_b, rank);
  // (1/delta) * integral_{sigma_b}^{sigma_a} mu exp(g (sigma_s - sigma)) dsigma
  //   = mu exp(g (sigma_s - sigma_a)) phi(g delta).
  if (needs_grad(p)) return (p.means * mixture_factor(p, sa, delta)).sum(1);
  return mean_velocity_inference(p, sigma_a, sa, delta);
}

torch::Tensor displacement(const MomentumMixture& p, const torch::Tensor& sigma_a, const torch::Tensor& sigma_b) {
  const torch::Tensor delta = broadcast_sigma(sigma_a, p.means.dim() - 1) - broadcast_sigma(sigma_b, p.means.dim() - 1);
  if (needs_grad(p)) return mean_velocity(p, sigma_a, sigma_b) * delta;
  return mean_velocity(p, sigma_a, sigma_b).mul_(delta);
}

torch::Tensor integrate(const MomentumMixture& p, const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                        const torch::Tensor& sigma_b) {
  return x_a - displacement(p, sigma_a, sigma_b);
}

MomentumMixture detached(const MomentumMixture& p) {
  return {p.means.detach(), p.logweights.detach(), p.log_gammas.detach(), p.sigma_src.detach()};
}

MomentumMixture dropout_components(const MomentumMixture& p, double prob, at::Generator gen) {
  MomentumMixture out = p;
  out.logweights = drop_components(p.logweights, prob, gen);
  return out;
}

MomentumMixture with_temperature(const MomentumMixture& p, double temperature) {
  if (!(temperature > 0.0)) throw std::invalid_argument("temperature must be > 0");
  MomentumMixture out = p;
  out.logweights = p.logweights / temperature;
  return out;
}

torch::Tensor MomentumPolicy::velocity(const torch::Tensor& /*x_t*/, const torch::Tensor& sigma_t) const {
  return arcflow::velocity(m_, sigma_t);
}

torch::Tensor MomentumPolicy::integrate(const torch::Tensor& x_a, const torch::Tensor& sigma_a,
                                        const torch::Tensor& sigma_b) const {
  return arcflow::integrate(m_, x_a, sigma_a, sigma_b);
}

torch::Tensor MomentumPolicy::imitation_velocity(const torch::Tensor& /*x_a*/, const torch::Tensor& sigma_a,
                                                 const torch::Tensor& sigma_end) const {
  return mean_velocity(m_, sigma_a, sigma_end);
}

PolicyPtr MomentumPolicy::detached() const { return std::make_shared<MomentumPolicy>(arcflow::detached(m_)); }

PolicyPtr MomentumPolicy::dropout(double prob, at::Generator gen) const {
  return std::make_shared<MomentumPolicy>(dropout_components(m_, prob, std::move(gen)));
}

PolicyPtr MomentumPolicy::with_temperature(double temperature) const {
  return std::make_shared<MomentumPolicy>(arcflow::with_temperature(m_, temperature));
}

PolicyPtr linear_policy(const torch::Tensor& velocity, const torch::Tensor& sigma_src) {
  return std::make_shared<MomentumPolicy>(linear_mixture(velocity, sigma_src));
}

}  // namespace arcflow
