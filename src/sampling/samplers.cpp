// Few-step samplers for flow-matching velocity models (see samplers.h for the conventions).
#include "arcflow/sampling/samplers.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace arcflow {

namespace {

// Checks the arguments every sampler shares.
void check_inputs(const torch::Tensor& x, const std::vector<double>& sigmas) {
  if (!x.defined() || x.dim() < 1) throw std::invalid_argument("sampler: x must be a defined tensor with a batch dimension");
  if (sigmas.size() < 2)
    throw std::invalid_argument("sampler: need at least 2 sigmas (1 step), got " + std::to_string(sigmas.size()));
  for (size_t i = 0; i < sigmas.size(); ++i) {
    if (!(sigmas[i] >= 0.0 && sigmas[i] <= 1.0))
      throw std::invalid_argument("sampler: sigma " + std::to_string(sigmas[i]) + " outside [0, 1]");
    if (i > 0 && !(sigmas[i] < sigmas[i - 1]))
      throw std::invalid_argument("sampler: sigmas must be strictly decreasing");
  }
}

// sigma as the (B) tensor the model expects, on x's device and dtype.
torch::Tensor sigma_batch(const torch::Tensor& x, double sigma) { return torch::full({x.size(0)}, sigma, x.options()); }

// Reports step `i` (the state after it) to the callback, if any.
void report(const SamplerCallback& cb, int i, const std::vector<double>& sigmas, const torch::Tensor& x) {
  if (!cb) return;
  StepInfo info{i, static_cast<int>(sigmas.size()) - 1, sigmas[i], sigmas[i + 1], &x};
  cb(info);
}

torch::Tensor finish(torch::Tensor x, const SamplerOptions& opt) {
  if (opt.clamp_final) x = x.clamp(-1.0, 1.0);
  return x;
}

// lambda = log(alpha / sigma) with alpha = 1 - sigma; -inf at sigma = 1, +inf at sigma = 0.
double lambda_of(double sigma) {
  if (sigma >= 1.0) return -INFINITY;
  if (sigma <= 0.0) return INFINITY;
  return std::log1p(-sigma) - std::log(sigma);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Euler: x_{i+1} = x_i - (sigma_i - sigma_{i+1}) u(x_i, sigma_i). 1 NFE per step.
torch::Tensor sample_euler(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                           const SamplerOptions& opt, const SamplerCallback& cb) {
  check_inputs(x, sigmas);
  torch::NoGradGuard no_grad;
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    const torch::Tensor u = model(x, sigma_batch(x, sigmas[i]));
    x = x - (sigmas[i] - sigmas[i + 1]) * u;
    report(cb, i, sigmas, x);
  }
  return finish(x, opt);
}

// ---------------------------------------------------------------------------------------------
// Heun (explicit trapezoid), 2 NFE on every step including the last one to sigma = 0:
//   u1 = u(x_i, sigma_i),  x_pred = x_i - dt u1,  u2 = u(x_pred, sigma_{i+1}),
//   x_{i+1} = x_i - dt (u1 + u2) / 2,   dt = sigma_i - sigma_{i+1}.
// k-diffusion takes a plain Euler step when sigma_{i+1} == 0 because its EDM denoiser is undefined
// there; a flow-matching model is trained on tau in [0, 1], so we keep the corrector (see samplers.h).
torch::Tensor sample_heun(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                          const SamplerOptions& opt, const SamplerCallback& cb) {
  check_inputs(x, sigmas);
  torch::NoGradGuard no_grad;
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    const double dt = sigmas[i] - sigmas[i + 1];
    const torch::Tensor u1 = model(x, sigma_batch(x, sigmas[i]));
    const torch::Tensor x_pred = x - dt * u1;
    const torch::Tensor u2 = model(x_pred, sigma_batch(x, sigmas[i + 1]));
    x = x - (0.5 * dt) * (u1 + u2);
    report(cb, i, sigmas, x);
  }
  return finish(x, opt);
}

// ---------------------------------------------------------------------------------------------
// DPM-Solver++(2M) for the rectified-flow schedule  x = alpha x0 + sigma eps,  alpha = 1 - sigma.
//
// Data prediction:  x0_hat = x - sigma u   (exact when u = eps - x0).
// With lambda = log(alpha / sigma) the ODE has the exact solution (variation of constants)
//   x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0_hat(lambda) dlambda,
// and since e^lambda = alpha / sigma,
//   sigma_t * integral e^lambda dlambda = sigma_t (alpha_t / sigma_t - alpha_s / sigma_s)
//                                       = alpha_t - alpha_s sigma_t / sigma_s = 1 - sigma_t / sigma_s,
// using alpha = 1 - sigma. (In k-diffusion's notation this is -alpha_t expm1(-h), h = lambda_t - lambda_s.)
// Writing rho = sigma_t / sigma_s, every update has the form
//   x_t = rho x_s + (1 - rho) D,
// finite for every 0 <= sigma_t < sigma_s <= 1: no log, no division by alpha.
//   - First order, D = x0_hat_s: x_t = rho x_s + (1 - rho)(x_s - sigma_s u_s) = x_s - (sigma_s - sigma_t) u_s,
//     i.e. exactly Euler. Used on the first step (no history; from sigma_s = 1, where alpha_s = 0 and
//     lambda_s = -inf, it is simply x_t = sigma_t x_s + (1 - sigma_t) x0_hat_s) and on the final step
//     to sigma_t = 0 (rho = 0: x_t = x0_hat_s; lambda_t = +inf would make the 2M ratio r = 0), as in
//     k-diffusion. The step right after sigma = 1 has h_last = +inf, whose 2M limit (r -> inf) is also
//     first order; we take that limit explicitly.
//   - Second order (2M), x0_hat linear in lambda through the previous step:
//       h = lambda_t - lambda_s,  h_last = lambda_s - lambda_prev,  r = h_last / h,
//       D = (1 + 1 / (2 r)) x0_hat_s - (1 / (2 r)) x0_hat_prev.
// 1 NFE per step.
torch::Tensor sample_dpmpp_2m(const VelocityFn& model, torch::Tensor x, const std::vector<double>& sigmas,
                              const SamplerOptions& opt, const SamplerCallback& cb) {
  check_inputs(x, sigmas);
  torch::NoGradGuard no_grad;
  const int n = static_cast<int>(sigmas.size()) - 1;
  torch::Tensor old_x0;  // x0_hat of the previous step (undefined on the first step)
  for (int i = 0; i < n; ++i) {
    const double s = sigmas[i], t = sigmas[i + 1];
    const torch::Tensor u = model(x, sigma_batch(x, s));
    const torch::Tensor x0 = x - s * u;
    const double rho = t / s;  // s > t >= 0, so s > 0
    torch::Tensor d = x0;
    const double lam_prev = (i > 0) ? lambda_of(sigmas[i - 1]) : -INFINITY;
    if (old_x0.defined() && t > 0.0 && std::isfinite(lam_prev)) {
      const double lam_s = lambda_of(s), lam_t = lambda_of(t);
      const double h = lam_t - lam_s, h_last = lam_s - lam_prev;
      const double r = h_last / h;
      d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * old_x0;
    }
    x = rho * x + (1.0 - rho) * d;
    old_x0 = x0;
    report(cb, i, sigmas, x);
  }
  return finish(x, opt);
}

// ---------------------------------------------------------------------------------------------
// Name table.
const std::vector<SamplerEntry>& samplers() {
  static const std::vector<SamplerEntry> table = {
      {"euler", &sample_euler, "Euler, first order, 1 NFE per step"},
      {"heun", &sample_heun, "Heun (Euler predictor, trapezoid corrector), second order, 2 NFE per step"},
      {"dpmpp_2m", &sample_dpmpp_2m,
       "DPM-Solver++(2M) for rectified flow, second order multistep, 1 NFE per step"},
  };
  return table;
}

namespace {
std::string valid_names() {
  std::string names;
  for (const auto& e : samplers()) names += (names.empty() ? "" : ", ") + std::string(e.name);
  return names;
}
}  // namespace

Sampler find_sampler(const std::string& name) {
  for (const auto& e : samplers())
    if (name == e.name) return e.fn;
  throw std::invalid_argument("unknown sampler '" + name + "'; valid samplers: " + valid_names());
}

int sampler_nfe(const std::string& name, int steps) {
  if (steps < 1) throw std::invalid_argument("sampler_nfe: steps must be >= 1, got " + std::to_string(steps));
  const Sampler fn = find_sampler(name);
  if (fn == &sample_heun) return 2 * steps;
  return steps;  // euler, dpmpp_2m
}

}  // namespace arcflow
