#include "arcflow/training/distill.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "arcflow/core/schedule.h"

namespace arcflow {

namespace {

std::vector<int64_t> batch_shape(int64_t b, const std::vector<int64_t>& sample_shape) {
  std::vector<int64_t> s{b};
  s.insert(s.end(), sample_shape.begin(), sample_shape.end());
  return s;
}

// Splits `total` (B) at n sorted uniform points per sample into n + 1 intervals, (B, n + 1).
torch::Tensor random_intervals(int64_t batch, int64_t n, const torch::Tensor& total, at::Generator& gen) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor points = std::get<0>(torch::sort(torch::rand({batch, n}, gen, f64), 1));
  torch::Tensor edges = torch::cat({torch::zeros({batch, 1}, f64), points, torch::ones({batch, 1}, f64)}, 1);
  return (edges.narrow(1, 1, n + 1) - edges.narrow(1, 0, n + 1)) * total.reshape({batch, 1});
}

}  // namespace

Distiller::Distiller(DistillProblem problem, DistillConfig cfg)
    : problem_(std::move(problem)), cfg_(cfg), gen_(at::detail::createCPUGenerator(cfg.seed)) {
  if (cfg_.nfe < 1) throw std::invalid_argument("nfe must be >= 1");
  if (cfg_.num_intermediate_states < 1) throw std::invalid_argument("num_intermediate_states must be >= 1");
  if (cfg_.total_substeps < 1 || cfg_.window_substeps < 0) throw std::invalid_argument("bad substep counts");
  if (cfg_.batch_size < 1) throw std::invalid_argument("batch size must be >= 1");
  using torch::optim::AdamWOptions;
  auto opts = [&](double lr) {
    return std::make_unique<AdamWOptions>(
        AdamWOptions(lr).betas({cfg_.beta1, cfg_.beta2}).weight_decay(cfg_.weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(problem_.params, opts(cfg_.lr));
  if (!problem_.log_gamma_params.empty())
    groups.emplace_back(problem_.log_gamma_params, opts(cfg_.lr * cfg_.log_gamma_lr_mult));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, *opts(cfg_.lr));
  all_params_ = problem_.params;
  all_params_.insert(all_params_.end(), problem_.log_gamma_params.begin(), problem_.log_gamma_params.end());
  for (const auto& p : all_params_) ema_.push_back(p.detach().clone());
}

double Distiller::teacher_ratio() const {
  if (cfg_.num_decay_iters <= 0) return 0.0;
  return std::max(0.0, 1.0 - static_cast<double>(iteration_) / cfg_.num_decay_iters);
}

double Distiller::lr_at(int iteration) const {
  if (cfg_.warmup_iters <= 0) return cfg_.lr;
  return cfg_.lr * std::min(1.0, static_cast<double>(iteration) / cfg_.warmup_iters);
}

DistillStats Distiller::step() {
  const int it = iteration_ + 1;
  DistillStats stats;
  stats.iteration = it;
  stats.teacher_ratio = teacher_ratio();
  stats.lr = lr_at(it);
  const int64_t B = cfg_.batch_size;
  const int64_t M = cfg_.num_intermediate_states;
  const auto dev = problem_.device;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

  optimizer_->zero_grad();
  torch::Tensor cond = problem_.sample_conditions ? problem_.sample_conditions(B, gen_) : torch::Tensor();
  if (cond.defined()) cond = cond.to(dev);
  // Noise is drawn on the CPU so that a seed gives the same samples on every device.
  torch::Tensor x = torch::randn(batch_shape(B, problem_.sample_shape), gen_).to(dev);
  const auto dtype = x.scalar_type();
  auto sig = [&](const torch::Tensor& tau) { return warp(tau, cfg_.shift).to(dev, dtype); };
  const double substep = 1.0 / cfg_.total_substeps;

  for (const Segment& seg : segments(cfg_.nfe, cfg_.shift, cfg_.timestep_ratio)) {
    const double L = seg.length();
    const double W = std::min(cfg_.window_substeps * substep, L);
    const torch::Tensor sigma_src = torch::full({B}, seg.sigma_src, x.options());
    const Policy P = problem_.student(x, sigma_src, cond);
    const Policy Pd = dropout_components(detached(P), cfg_.component_dropout, gen_);

    // Step 3: the walk's student and teacher intervals inside the segment (raw time).
    const torch::Tensor walk = torch::full({B}, L - W, f64);
    const torch::Tensor student_iv = random_intervals(B, M, walk * (1.0 - stats.teacher_ratio), gen_);
    const torch::Tensor teacher_iv = random_intervals(B, M - 1, walk * stats.teacher_ratio, gen_);

    // Step 4: walk M states; collect the student's predictions and the teacher's velocities.
    torch::Tensor tau = torch::full({B}, seg.tau_src, f64);
    torch::Tensor loss = torch::zeros({}, x.options());
    for (int64_t j = 0; j < M; ++j) {
      const torch::Tensor tau_a = tau - student_iv.select(1, j);
      const torch::Tensor sigma_a = sig(tau_a);
      const torch::Tensor x_a = integrate(Pd, x, sig(tau), sigma_a);
      torch::Tensor u_t;
      {
        torch::NoGradGuard no_grad;
        u_t = problem_.teacher(x_a, sigma_a, cond);
      }
      const torch::Tensor tau_b = tau_a - teacher_iv.select(1, j);
      // Mean velocity over [tau_a, tau_b - W], or the instantaneous one when that is < 2 substeps.
      torch::Tensor span_end = tau_b - W;
      span_end = torch::where(tau_a - span_end < 2.0 * substep, tau_a, span_end);
      const torch::Tensor pred = mean_velocity(P, sigma_a, sig(span_end));
      loss = loss + (pred - u_t).pow(2).mean();
      // Move by the teacher interval with one Euler step of the teacher velocity.
      const torch::Tensor sigma_b = sig(tau_b);
      x = x_a - broadcast_sigma(sigma_a - sigma_b, x_a.dim()) * u_t;
      tau = tau_b;
    }
    // Step 5: loss for this student step; no gradient flows between steps.
    loss = loss * (0.5 * cfg_.loss_scale * L / static_cast<double>(M));
    const double value = loss.item<double>();
    stats.step_losses.push_back(value);
    stats.loss += value;
    if (std::isfinite(value)) loss.backward();
    else stats.skipped = true;
    const torch::Tensor sigma_dst = torch::full({B}, seg.sigma_dst, x.options());
    x = integrate(Pd, x, sig(tau), sigma_dst).detach();
  }

  // Step 6: one optimizer step for all student steps; skip it on a non-finite loss or gradient.
  for (auto& g : optimizer_->param_groups()) {
    auto& o = static_cast<torch::optim::AdamWOptions&>(g.options());
    o.lr(&g == &optimizer_->param_groups().front() ? stats.lr : stats.lr * cfg_.log_gamma_lr_mult);
  }
  stats.grad_norm = torch::nn::utils::clip_grad_norm_(all_params_, cfg_.grad_clip);
  if (!std::isfinite(stats.grad_norm)) stats.skipped = true;
  if (stats.skipped) {
    ++skipped_;
    optimizer_->zero_grad();
  } else {
    optimizer_->step();
  }
  iteration_ = it;
  update_ema();
  return stats;
}

void Distiller::update_ema() {
  torch::NoGradGuard no_grad;
  // beta_t = (1 - 1/t)^(gamma + 1) from iteration ema_start on; before it the EMA tracks the weights.
  const double beta = iteration_ < cfg_.ema_start ? 0.0 : std::pow(1.0 - 1.0 / iteration_, cfg_.ema_gamma + 1.0);
  for (size_t i = 0; i < all_params_.size(); ++i) ema_[i].mul_(beta).add_(all_params_[i].detach(), 1.0 - beta);
}

Checkpoint Distiller::checkpoint() {
  Checkpoint c;
  for (size_t i = 0; i < all_params_.size(); ++i) {
    c.model["param." + std::to_string(i)] = all_params_[i].detach().to(torch::kCPU, false, true);
    c.ema["param." + std::to_string(i)] = ema_[i].to(torch::kCPU, false, true);
  }
  c.optimizer = serialize_optimizer(*optimizer_);
  c.rng_state = gen_.get_state();
  at::Generator global = at::detail::getDefaultCPUGenerator();
  c.extra["global_rng"] = global.get_state();
  c.step = iteration_;
  c.metadata["skipped_steps"] = std::to_string(skipped_);
  return c;
}

void Distiller::restore(const Checkpoint& ckpt, const std::string& source) {
  const auto take = [&](const io::TensorMap& m, size_t i, const char* part) {
    const auto it = m.find("param." + std::to_string(i));
    if (it == m.end()) throw std::runtime_error(source + ": checkpoint lacks " + part + " tensor param." + std::to_string(i));
    if (it->second.sizes() != all_params_[i].sizes())
      throw std::runtime_error(source + ": " + part + " tensor param." + std::to_string(i) + " has shape " +
                               c10::str(it->second.sizes()) + ", the student expects " + c10::str(all_params_[i].sizes()));
    return it->second;
  };
  if (ckpt.model.size() != all_params_.size() || ckpt.ema.size() != all_params_.size())
    throw std::runtime_error(source + ": checkpoint holds " + std::to_string(ckpt.model.size()) +
                             " trainable tensors, this student has " + std::to_string(all_params_.size()));
  if (ckpt.optimizer.empty() || !ckpt.rng_state.defined())
    throw std::runtime_error(source + ": checkpoint lacks the optimizer or generator state");
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < all_params_.size(); ++i) {
      all_params_[i].copy_(take(ckpt.model, i, "model"));
      ema_[i].copy_(take(ckpt.ema, i, "ema"));
    }
  }
  deserialize_optimizer(*optimizer_, ckpt.optimizer, source, problem_.device);
  gen_.set_state(ckpt.rng_state);
  if (ckpt.extra.count("global_rng")) {
    at::Generator global = at::detail::getDefaultCPUGenerator();
    global.set_state(ckpt.extra.at("global_rng"));
  }
  iteration_ = static_cast<int>(ckpt.step);
  skipped_ = ckpt.metadata.count("skipped_steps") ? std::stoi(ckpt.metadata.at("skipped_steps")) : 0;
}

void Distiller::load_ema_into_params() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < all_params_.size(); ++i) all_params_[i].copy_(ema_[i]);
}

}  // namespace arcflow
